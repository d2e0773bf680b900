"""The NATS JetStream backend (host/mesh/backends/nats.py) against a real nats-server (Debian
package) started on 127.0.0.1 with JetStream and stopped by PID: ledger replication through a
stream of entry blocks (verified, incremental from the middle of a block), a message injected into
a cell's stream is caught, membership and T_global through key-value buckets."""
import asyncio
import os

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from becomingone.ledger import Ledger
from becomingone.ledger import checkpoint as ckpt
from becomingone.mesh.aggregate import VersionedAggregate
from becomingone.mesh.replica import ReplicaError, ReplicaStore

nats = pytest.importorskip("nats")
from becomingone.bench.nats_server import SERVER, nats_server  # noqa: E402
pytestmark = pytest.mark.skipif(SERVER is None, reason="nats-server (Debian package) not installed")


@pytest.fixture
def nats_url(tmp_path):
    with nats_server(tmp_path / "js") as url:
        yield url


def _ledger(path, n):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    led = Ledger(path)
    led.append_many([("action", {"action": "a", "i": i}) for i in range(n)])
    return led


def test_replication_through_jetstream(nats_url, tmp_path):
    from becomingone.mesh.backends.nats import NatsCell
    a = _ledger(str(tmp_path / "a" / "ledger.sqlite"), 1233)
    mid_note = a.checkpoint()                              # size 1234: inside the block [1000, 1500)
    mid_lines = [e.to_json() for e in a.entries(0, 1234)]
    a.append_many([("action", {"action": "a2", "i": i}) for i in range(1767)])
    pub = ckpt.load_public_key(a.public_key_pem().encode())
    store = ReplicaStore(str(tmp_path / "b"), {a.origin: pub})
    mid = ReplicaStore(str(tmp_path / "m"), {a.origin: pub})
    mid.apply(a.origin, mid_lines, mid_note)

    async def go():
        ca = NatsCell(nats_url, "cell-a", ledger=a)
        cb = NatsCell(nats_url, "cell-b", store=store)
        await ca.connect()
        await cb.connect()
        n1 = await ca.publish_ledger()
        again = await ca.publish_ledger()                # nothing new: nothing sent
        got1 = await cb.pull(a.origin)
        a.append_many([("action", {"action": "b", "i": i}) for i in range(500)])
        n2 = await ca.publish_ledger()
        got2 = await cb.pull(a.origin)
        up = await cb.pull(a.origin)
        cm = NatsCell(nats_url, "cell-m", store=mid)       # resumes from the middle of a block
        await cm.connect()
        got_mid = await cm.pull(a.origin)
        for c in (ca, cb, cm):
            await c.close()
        return n1, again, got1, n2, got2, up, got_mid
    n1, again, got1, n2, got2, up, got_mid = asyncio.run(asyncio.wait_for(go(), 60))
    assert (n1, again, got1, n2, got2, up) == (3001, 0, 3001, 500, 500, 0)
    assert got_mid == a.size - 1234
    for st in (store, mid):
        assert st.root(a.origin) == a.root() and st.size(a.origin) == a.size
    a.close()


INJECTED = ('{"data":{"action":"steal","kind":"action"},"hash":"' + "0" * 64 + '","index":51,'
            '"previous_hash":"' + "0" * 64 + '","timestamp":1.0}')


def test_injected_message_is_caught_by_owner_and_replica(nats_url, tmp_path):
    from becomingone.mesh.backends.nats import NatsBackendError, NatsCell, subject
    a = _ledger(str(tmp_path / "a" / "ledger.sqlite"), 50)
    pub = ckpt.load_public_key(a.public_key_pem().encode())
    store = ReplicaStore(str(tmp_path / "b"), {a.origin: pub})

    async def go():
        ca = NatsCell(nats_url, "cell-a", ledger=a)
        cb = NatsCell(nats_url, "cell-b", store=store)
        await ca.connect()
        await cb.connect()
        await ca.publish_ledger()
        await cb.pull(a.origin)
        evil = await nats.connect(nats_url)           # an intruder appends to cell-a's stream
        await evil.jetstream().publish(subject(a.origin), INJECTED.encode())
        await evil.close()
        a.append_many([("action", {"action": "c"})] * 5)
        out = []
        try:
            await ca.publish_ledger()
        except NatsBackendError as e:
            out.append(str(e))
        note = a.checkpoint()                         # the owner's real head, size 56
        await ca.kv["bo_checkpoints"].put(a.origin.rsplit("/", 1)[1], note.encode())
        try:
            await cb.pull(a.origin)
        except ReplicaError as e:
            out.append(str(e))
        await ca.close()
        await cb.close()
        return out, note
    out, note = asyncio.run(asyncio.wait_for(go(), 60))
    assert "written by someone else" in out[0]
    assert "message 2 is not a block of entries" in out[1]
    # even with the owner's real entries after it, the injected line cannot get in
    real = [e.to_json() for e in a.entries(51, a.size)]
    with pytest.raises(ReplicaError, match="not the next entry|forged"):
        store.apply(a.origin, [INJECTED] + real[1:], note)
    assert store.size(a.origin) == 51
    a.close()


def test_membership_and_t_global_through_key_value(nats_url, tmp_path):
    from becomingone.mesh.backends.nats import NatsCell
    names = ["c0", "c1", "c2"]
    priv = {c: Ed25519PrivateKey.generate() for c in names}
    pub = {c: k.public_key() for c, k in priv.items()}
    vals = {"c0": (0.5 + 0.1j, 3), "c1": (-0.2 + 0.4j, 1), "c2": (0.9j, 4)}

    async def go():
        cells = {c: NatsCell(nats_url, c, agg=VersionedAggregate(c, priv[c], pub), member_ttl=2.0) for c in names}
        for c in cells.values():
            await c.connect()
        for c, cell in cells.items():
            await cell.heartbeat()
            await cell.publish_value(*vals[c])
        for cell in cells.values():
            await cell.fetch_values()
        members = await cells["c0"].members()
        tg = {c: cells[c].agg.t_global()[0] for c in names}
        await cells["c1"].close()
        await asyncio.sleep(2.6)                        # c1 stops refreshing: it expires
        await cells["c0"].heartbeat()
        await cells["c2"].heartbeat()
        after = await cells["c0"].members()
        for c in ("c0", "c2"):
            await cells[c].close()
        return members, tg, after
    members, tg, after = asyncio.run(asyncio.wait_for(go(), 60))
    want = sum(n * v for v, n in vals.values()) / 8
    assert members == names and after == ["c0", "c2"]
    assert all(abs(t - want) < 1e-12 for t in tg.values())
