"""The NATS JetStream backend (host/mesh/backends/nats.py) against a real nats-server (Debian
package) started on 127.0.0.1 with JetStream and stopped by PID: ledger replication through a
stream of entry blocks (verified, incremental from the middle of a block), a message injected into
a cell's stream is caught, membership and T_global through key-value buckets."""
import asyncio
import os

import pytest

from becomingone.ledger import Ledger
from becomingone.ledger import checkpoint as ckpt
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


def _cells(tmp_path, names, entries=5):
    """A ledger and trust file per cell (all trust files written before any cell starts)."""
    from becomingone.mesh.trust import write_trust
    trust = str(tmp_path / "trust")
    leds = {}
    for c in names:
        leds[c] = _ledger(str(tmp_path / c / "ledger.sqlite"), entries)
        write_trust(trust, c, leds[c])
    return trust, leds


async def _periods(meshes, vals, until, limit, interval):
    for k in range(limit):
        await asyncio.gather(*(m.period(*vals.get(c, (0.1j, 1))) for c, m in meshes.items()))
        if until():
            return k + 1
        await asyncio.sleep(interval)
    return None


def test_tree_membership_t_global_and_fanout(nats_url, tmp_path):
    """12 cells in groups of 4 (three level-0 groups under one root) over a real nats-server:
    every cell agrees on T_global = the device-weighted mean and on who is alive, each ledger is
    replicated by exactly its `fanout` ring holders (verified), the other heads are checked, a
    killed cell is dead everywhere within ttl + a few periods and leaves T_global."""
    from becomingone.mesh.backends.nats import NatsMesh
    from becomingone.mesh.ring import ledger_holders
    names = ["cell-%02d" % i for i in range(12)]
    trust, leds = _cells(tmp_path, names)
    vals = {c: (complex((i % 5) / 10, -(i % 3) / 10), 1 + i % 3) for i, c in enumerate(names)}

    def want(live):
        n = sum(vals[c][1] for c in live)
        return sum(vals[c][0] * vals[c][1] for c in live) / n

    async def go():
        ms = {c: NatsMesh(nats_url, c, leds[c], trust, str(tmp_path / c / "replicas"), interval=0.2,
                          member_ttl=1.0, publish_every=0.0, fanout=2, group_size=4, write_own_trust=False,
                          head_check_every=0.1)
              for c in names}
        for m in ms.values():
            await m.start()
        holders = ledger_holders(names, 2)

        def settled(live):
            return all(abs(ms[c].agg.t_global()[0] - want(live)) < 1e-9 and ms[c].alive_count() == len(live)
                       and {x for x, st in ms[c].members().items() if st["state"] == "alive"} == set(live)
                       for c in live)

        def replicated():
            return all(ms[h].store.size(leds[o].origin) == leds[o].size for o in names for h in holders[o])
        took = await _periods(ms, vals, lambda: settled(names) and replicated(), 80, 0.2)
        assert took is not None, {c: (ms[c].agg.t_global()[0], ms[c].alive_count()) for c in names}
        assert ms[names[0]].agg.layout.counts == [3, 1]
        for o in names:                                       # full replicas only at the holders
            for c in names:
                assert ms[c].replicates(leds[o].origin) == (c in holders[o])
        await _periods(ms, vals, lambda: False, 12, 0.2)       # every head checked at least once
        for c in names:
            m = ms[c]
            assert m.counters["head_checks"] >= 9 and m.alerts == []
            assert all(m.head_size(leds[o].origin) == leds[o].size for o in names
                       if o != c and c not in holders[o])
        # kill a cell (its connection dropped, nothing said): dead everywhere, out of T_global
        victim = names[7]
        await ms[victim].nats.nc.close()
        dead = ms.pop(victim)
        live = [c for c in names if c != victim]
        took = await _periods(ms, vals, lambda: settled(live), 60, 0.2)
        for m in ms.values():
            await m.close()
        dead.store.close()
        return took
    took = asyncio.run(asyncio.wait_for(go(), 120))
    assert took is not None and took <= 25, took
    for led in leds.values():
        led.close()
