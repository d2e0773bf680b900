"""Verified heads without downloading entries (host/mesh/heads.py): a cell that does not replicate
an origin (beyond the replication fan-out) follows its signed checkpoints by consistency proofs
only; a forked origin is caught (inconsistent larger head; two roots for one size -> evidence)."""
import asyncio
import json
import os
import shutil

from becomingone.ledger import Ledger
from becomingone.ledger import checkpoint as ckpt
from becomingone.mesh.heads import HeadTracker
from becomingone.mesh.backends.embedded import MeshNode
from becomingone.mesh.replica import ReplicaStore
from becomingone.mesh.replication import Replicator
from becomingone.mesh.tls import init_mesh
from tests.test_mesh_replication import _ledger


def _serve(led, tls, ops):
    rep = Replicator(led, ReplicaStore(os.path.join(os.path.dirname(led.path), "rep"), {}), tls, "cell-a")
    inner = rep.handle

    async def counting(peer, payload):
        ops.append(json.loads(payload)["op"])
        return await inner(peer, payload)
    rep.server.handler = counting
    return rep


def test_heads_follow_by_consistency_proof_and_catch_a_fork(tmp_path):
    tls = str(tmp_path / "tls")
    init_mesh(tls, ["cell-a", "cell-b"])
    a = _ledger(str(tmp_path / "a" / "ledger.sqlite"), 40)
    origin, pub = a.origin, ckpt.load_public_key(a.public_key_pem().encode())
    a.close()
    shutil.copytree(str(tmp_path / "a"), str(tmp_path / "fork"))     # same key: it can sign two histories
    a = Ledger(str(tmp_path / "a" / "ledger.sqlite"))
    fork = Ledger(str(tmp_path / "fork" / "ledger.sqlite"))
    store = ReplicaStore(str(tmp_path / "b"), {origin: pub})
    heads = HeadTracker(str(tmp_path / "b" / "heads.json"), store)
    ops = []

    async def go():
        sa, sf = _serve(a, tls, ops), _serve(fork, tls, ops)
        pa, pf = await sa.start("127.0.0.1", 0), await sf.start("127.0.0.1", 0)
        b = Replicator(None, store, tls, "cell-b", replicate=lambda o: False, heads=heads)
        out = [await b.pull(("127.0.0.1", pa, "cell-a"))]                 # first head: taken as is
        a.append_many([("action", {"action": "more", "i": i}) for i in range(25)])
        a.checkpoint()
        out.append(await b.pull(("127.0.0.1", pa, "cell-a")))             # advanced by proof only
        out.append(await b.pull(("127.0.0.1", pa, "cell-a")))             # nothing new
        fork.append_many([("action", {"action": "evil", "i": i}) for i in range(30)])
        fork.checkpoint()                                                 # size 71 > 66, not an extension
        out.append(await b.pull(("127.0.0.1", pf, "cell-a")))
        out.append(heads.size(origin))                                    # the fork's head was not taken
        fork2 = fork.size
        a.append_many([("action", {"action": "x", "i": i}) for i in range(fork2 - a.size)])
        a.checkpoint()
        out.append(await b.pull(("127.0.0.1", pa, "cell-a")))             # a's head of size 71
        out.append(await b.pull(("127.0.0.1", pf, "cell-a")))             # fork's root for 71: split view
        for s in (sa, sf):
            await s.close()
        return out
    r = asyncio.run(asyncio.wait_for(go(), 30))
    assert r[0]["heads"] == {origin: "first"} and r[1]["heads"] == {origin: "advanced"}
    assert r[2]["heads"] == {origin: "ok"}
    assert "entries" not in ops and "consistency" in ops                 # nothing downloaded
    assert store.size(origin) == 0
    assert r[3]["heads"] == {origin: "refused"} and r[3]["alerts"][0]["status"] == "inconsistent-head"
    assert r[4] == 66
    assert r[5]["heads"] == {origin: "advanced"} and heads.size(origin) == 71
    assert r[6]["alerts"] and r[6]["alerts"][0]["status"] == "split-view"
    assert origin in store.untrusted
    ev = store.evidence()[0]
    roots = {ckpt.verify_note(n, pub)["root"] for n in ev["checkpoints"]}
    assert len(roots) == 2 and ev["size"] == 71
    # the verified head survives a restart
    assert HeadTracker(str(tmp_path / "b" / "heads.json"), store).size(origin) == 71
    a.close()
    fork.close()


def test_replication_fanout_by_the_ring(tmp_path):
    """With fan-out f, each origin is fully replicated by exactly f other cells (the ring's choice,
    the same at every cell); the others keep only its head."""
    tls = str(tmp_path / "tls")
    names = ["c%d" % i for i in range(5)]
    init_mesh(tls, names)
    leds = {n: _ledger(str(tmp_path / n / "ledger.sqlite"), 3, n) for n in names}
    trust = {n: (l.origin, ckpt.load_public_key(l.public_key_pem().encode())) for n, l in leds.items()}
    nodes = {n: MeshNode(tls, trust, n, leds[n], str(tmp_path / n / "replicas"), fanout=2) for n in names}
    for o in names:
        holders = [n for n in names if n != o and nodes[n].replicates(leds[o].origin)]
        assert len(holders) == 2, (o, holders)
        st = nodes[names[0]].status()
        assert set(st["replicas"]) | set(st["heads"]) == set(names[1:])
    for led in leds.values():
        led.close()
