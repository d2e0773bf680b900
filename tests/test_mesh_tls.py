"""Mesh CA, cell certificates and the mutual-TLS transport (host/mesh/tls.py)."""
import asyncio
import json
import os
import stat

import pytest

from becomingone.cli import main
from becomingone.mesh.tls import MeshServer, MeshTLSError, connect, init_mesh


@pytest.fixture(scope="module")
def meshes(tmp_path_factory):
    good = str(tmp_path_factory.mktemp("mesh"))
    other = str(tmp_path_factory.mktemp("other"))
    init_mesh(good, ["cell-a", "cell-b"])
    init_mesh(other, ["cell-b", "evil"])      # same name, foreign CA
    return good, other


def test_files_and_key_modes(meshes):
    good, _ = meshes
    for p in ("ca.key", "cells/cell-a.key", "cells/cell-b.key"):
        assert stat.S_IMODE(os.stat(os.path.join(good, p)).st_mode) == 0o600
    for p in ("ca.pem", "cells/cell-a.pem"):
        assert open(os.path.join(good, p)).read().startswith("-----BEGIN CERTIFICATE-----")
    with pytest.raises(MeshTLSError, match="already has a certificate"):
        init_mesh(good, ["cell-a"])
    with pytest.raises(MeshTLSError, match="cell name"):
        init_mesh(good, ["bad name"])


def _mixed_folder(good, other, cell, base):
    import shutil
    d = str(base / ("mixed-" + cell))
    os.makedirs(os.path.join(d, "cells"))
    shutil.copy(os.path.join(good, "ca.pem"), d)
    for ext in (".pem", ".key"):
        shutil.copy(os.path.join(other, "cells", cell + ext), os.path.join(d, "cells"))
    return d


def _run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


async def _echo_server(folder, seen):
    async def handler(peer, payload):
        seen.append((peer, payload))
        return b"echo:" + payload
    srv = MeshServer(folder, "cell-a", handler)
    port = await srv.start("127.0.0.1", 0)
    return srv, port


def test_mutual_tls_request_reply_names_the_peer(meshes):
    good, _ = meshes

    async def go():
        seen = []
        srv, port = await _echo_server(good, seen)
        try:
            peer = await connect(good, "cell-b", "127.0.0.1", port, expect="cell-a")
            r1 = await peer.request(b"hello")
            r2 = await peer.request(b"x" * 100000)
            await peer.close()
        finally:
            await srv.close()
        return seen, r1, r2
    seen, r1, r2 = _run(go())
    assert r1 == b"echo:hello" and r2 == b"echo:" + b"x" * 100000
    assert [p for p, _ in seen] == ["cell-b", "cell-b"]


def test_wrongly_certified_peer_is_refused(meshes, tmp_path):
    good, other = meshes

    async def go():
        seen = []
        srv, port = await _echo_server(good, seen)
        errors = []
        try:
            for cell in ("cell-b", "evil"):
                # trusts our CA (so it accepts the server) but presents a foreign certificate
                mixed = _mixed_folder(good, other, cell, tmp_path)
                try:
                    peer = await connect(mixed, cell, "127.0.0.1", port, expect="cell-a")
                    await peer.request(b"let me in")
                    errors.append(None)
                except MeshTLSError as e:
                    errors.append(str(e))
            # a client without any certificate
            import ssl
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            try:
                r, w = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
                w.write(b"\x00\x00\x00\x01x")
                await w.drain()
                got = await r.read(100)
                errors.append("no-cert got %r" % got if got else "closed")
            except (ssl.SSLError, ConnectionError) as e:
                errors.append("refused: %s" % e)
        finally:
            await srv.close()
        return seen, errors
    seen, errors = _run(go())
    assert seen == []                             # the handler never ran
    assert "closed the connection" in errors[0] and "closed the connection" in errors[1]
    assert (errors[2] == "closed" or errors[2].startswith("refused"))


def test_client_refuses_a_foreign_server_and_an_unexpected_name(meshes):
    good, other = meshes

    async def go():
        async def handler(peer, payload):
            return b"?"
        out = []
        srv = MeshServer(other, "evil", handler)
        port = await srv.start("127.0.0.1", 0)
        try:
            await connect(good, "cell-b", "127.0.0.1", port)
        except MeshTLSError as e:
            out.append(str(e))
        await srv.close()
        seen = []
        srv, port = await _echo_server(good, seen)
        try:
            await connect(good, "cell-b", "127.0.0.1", port, expect="cell-z")
        except MeshTLSError as e:
            out.append(str(e))
        await srv.close()
        return out
    out = _run(go())
    assert "not certified by this mesh's CA" in out[0]
    assert "presents cell 'cell-a', expected 'cell-z'" in out[1]


def test_cli_init_adds_cells_with_the_same_ca(tmp_path, capsys):
    d = str(tmp_path / "m")
    assert main(["mesh", "init", "--dir", d, "--cells", "x,y", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert set(first) == {"ca", "ca_key", "x", "y"}
    ca = open(os.path.join(d, "ca.pem")).read()
    assert main(["mesh", "init", "--dir", d, "--cells", "z"]) == 0
    assert open(os.path.join(d, "ca.pem")).read() == ca and os.path.exists(os.path.join(d, "cells", "z.key"))
    assert main(["mesh", "init", "--dir", d, "--cells", "z"]) == 2
    assert "already has a certificate" in capsys.readouterr().err


def test_revoked_certificate_is_refused_and_kept_connections_cut(tmp_path):
    """`mesh revoke` writes a CRL signed by the CA; a server refuses a revoked client after the
    handshake, a client refuses a revoked server, and drop_revoked cuts the connections already
    kept. A CRL not signed by the mesh CA is an error, not an empty list."""
    from becomingone.mesh.tls import ConnectionPool, revoke, revoked
    folder = str(tmp_path / "ca")
    init_mesh(folder, ["cell-a", "cell-b", "cell-c"])

    async def go():
        seen = []
        srv, port = await _echo_server(folder, seen)
        pool = ConnectionPool(folder, "cell-b")
        conn = await pool.connect("127.0.0.1", port, expect="cell-a")
        assert await conn.request(b"x") == b"echo:x"
        await conn.close()
        assert main(["mesh", "revoke", "--dir", folder, "--cell", "cell-b"]) == 0
        assert len(revoked(folder)) == 1
        # the kept connection: cut by the server's drop_revoked, refused when redialled
        assert srv.drop_revoked() == 1
        conn = await pool.connect("127.0.0.1", port, expect="cell-a")
        with pytest.raises(MeshTLSError):
            await conn.request(b"y")
        await conn.close()
        assert srv.refused_revoked >= 1 and [p for p, _ in seen] == ["cell-b"]
        # a client refuses a revoked server, and its pool drops what it kept
        peer = await connect(folder, "cell-c", "127.0.0.1", port)
        await peer.close()
        revoke(folder, "cell-a")
        with pytest.raises(MeshTLSError, match="revoked"):
            await connect(folder, "cell-c", "127.0.0.1", port)
        await pool.close()
        await srv.close()
    _run(go())
    other = str(tmp_path / "other")
    init_mesh(other, ["cell-x"])
    import shutil
    shutil.copy(os.path.join(folder, "crl.pem"), os.path.join(other, "crl.pem"))   # another CA's CRL
    with pytest.raises(MeshTLSError, match="not signed by this mesh's CA"):
        revoked(other)
