"""Kept mutual-TLS connections (host/mesh/tls.py ConnectionPool): one handshake for many
requests, a timed-out request never leaves a half-read connection behind, a restarted peer is
redialled transparently, and a wrong peer is still refused."""
import asyncio

import pytest

from becomingone.mesh.tls import ConnectionPool, MeshServer, MeshTLSError, init_mesh


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("pool"))
    init_mesh(d, ["cell-a", "cell-b", "cell-c"])
    return d


def _run(coro):
    return asyncio.run(coro)


def test_one_handshake_many_requests_and_timeout_drops(tls):
    async def go():
        slow = {"on": False}

        async def handler(peer, payload):
            if slow["on"]:
                await asyncio.sleep(1.0)
            return b"echo:" + payload

        srv = MeshServer(tls, "cell-b", handler)
        port = await srv.start("127.0.0.1", 0)
        pool = ConnectionPool(tls, "cell-a")
        for i in range(20):
            conn = await pool.connect("127.0.0.1", port, expect="cell-b", timeout=5)
            assert await conn.request(b"%d" % i) == b"echo:%d" % i
            await conn.close()
        assert (pool.dials, pool.reuses) == (1, 19)
        # a request cut by a timeout: the connection is dropped, not reused mid-frame
        slow["on"] = True
        conn = await pool.connect("127.0.0.1", port, expect="cell-b", timeout=5)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(conn.request(b"late"), 0.2)
        await conn.close()
        slow["on"] = False
        conn = await pool.connect("127.0.0.1", port, expect="cell-b", timeout=5)
        assert await conn.request(b"next") == b"echo:next"     # not the late reply
        await conn.close()
        assert pool.dials == 2
        await pool.close()
        await srv.close()
    _run(go())


def test_restarted_peer_is_redialled_and_wrong_cell_refused(tls):
    async def go():
        async def handler(peer, payload):
            return payload[::-1]

        srv = MeshServer(tls, "cell-b", handler)
        port = await srv.start("127.0.0.1", 0)
        pool = ConnectionPool(tls, "cell-a")
        conn = await pool.connect("127.0.0.1", port, expect="cell-b", timeout=5)
        assert await conn.request(b"abc") == b"cba"
        await conn.close()
        await srv.close()                     # the peer restarts on the same port
        await asyncio.sleep(0.05)
        srv = MeshServer(tls, "cell-b", handler)
        await srv.start("127.0.0.1", port)
        conn = await pool.connect("127.0.0.1", port, expect="cell-b", timeout=5)
        assert await conn.request(b"xyz") == b"zyx"   # kept connection dead: redialled once
        await conn.close()
        assert pool.dials == 2
        with pytest.raises(MeshTLSError, match="expected 'cell-c'"):
            await pool.connect("127.0.0.1", port, expect="cell-c", timeout=5)
        await pool.close()
        await srv.close()
    _run(go())
