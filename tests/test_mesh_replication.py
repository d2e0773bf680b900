"""Verified ledger replication between cells (host/mesh/replica.py, host/mesh/replication.py):
catch-up over mutual TLS, forged entries refused, a forked (equivocating) origin caught."""
import asyncio
import json
import os
import shutil

import pytest

from becomingone.ledger import Ledger, verify_path
from becomingone.ledger import checkpoint as ckpt, hashing
from becomingone.mesh.replica import ReplicaError, ReplicaStore
from becomingone.mesh.replication import Replicator
from becomingone.mesh.tls import init_mesh


def _ledger(path, n, tag="a"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    led = Ledger(path)
    led.append_many([("action", {"action": tag, "i": i}) for i in range(n)])
    led.checkpoint()
    return led


def _pub(led):
    return ckpt.load_public_key(led.public_key_pem().encode())


def _run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_catch_up_over_tls_then_incremental(tmp_path):
    tls = str(tmp_path / "tls")
    init_mesh(tls, ["cell-a", "cell-b", "cell-c"])
    a = _ledger(str(tmp_path / "a" / "ledger.sqlite"), 12000)      # > one MAX_LINES chunk
    store_b = ReplicaStore(str(tmp_path / "b"), {a.origin: _pub(a)})
    store_c = ReplicaStore(str(tmp_path / "c"), {a.origin: _pub(a)})

    async def go():
        ra = Replicator(a, ReplicaStore(str(tmp_path / "a-rep"), {}), tls, "cell-a")
        pa = await ra.start("127.0.0.1", 0)
        rb = Replicator(None, store_b, tls, "cell-b", peers=[("127.0.0.1", pa, "cell-a")])
        pb = await rb.start("127.0.0.1", 0)
        rc = Replicator(None, store_c, tls, "cell-c")
        r1 = await rb.pull()
        a.append_many([("action", {"action": "more", "i": i}) for i in range(50)])
        a.checkpoint()
        r2 = await rb.pull()
        # c catches up from b's replica (a is not even asked)
        r3 = await rc.pull(("127.0.0.1", pb, "cell-b"))
        for r in (ra, rb):
            await r.close()
        return r1, r2, r3
    r1, r2, r3 = _run(go())
    assert r1["applied"] == {a.origin: 12001} and r2["applied"] == {a.origin: 50}
    assert r3["applied"] == {a.origin: 12051} and not r3["refused"]
    for st, folder in ((store_b, "b"), (store_c, "c")):
        assert st.size(a.origin) == a.size and st.root(a.origin) == a.root()
    rep_path = os.path.join(str(tmp_path / "b"), a.origin.rsplit("/", 1)[1], "ledger.sqlite")
    v = verify_path(rep_path)
    assert v.ok and v.size == a.size
    a.close()


def test_forged_entries_are_refused_and_nothing_is_written(tmp_path):
    a = _ledger(str(tmp_path / "a" / "ledger.sqlite"), 30)
    store = ReplicaStore(str(tmp_path / "b"), {a.origin: _pub(a)})
    note = a.latest_checkpoint()
    lines = [e.to_json() for e in a.entries(0, a.size)]
    # a server rewrites entry 5 and recomputes the whole chain after it (entry hashes are unkeyed)
    from becomingone.ledger import canonical  # noqa: F811
    forged, prev = [], "0" * 64
    for i, line in enumerate(lines):
        e = json.loads(line)
        if i == 5:
            e["data"]["action"] = "rewritten"
        dj = canonical.dumps(e["data"])
        h = hashing.entry_hash(i, e["timestamp"], dj, prev).hex()
        forged.append('{"data":%s,"hash":"%s","index":%d,"previous_hash":"%s","timestamp":%s}'
                      % (dj, h, i, prev, float.__repr__(e["timestamp"])))
        prev = h
    with pytest.raises(ReplicaError, match="root differs from the signed checkpoint"):
        store.apply(a.origin, forged, note)
    bad = list(lines)
    bad[7] = bad[7].replace('"i":6', '"i":66')
    with pytest.raises(ReplicaError, match="entry 7: hash does not match"):
        store.apply(a.origin, bad, note)
    for junk, what in ((lines[:3] + ["hello"] + lines[4:], "not a ledger export line"),
                       (lines[:3] + [lines[3][:lines[3].rfind('"timestamp":') + 12] + "1e3}"] + lines[4:],
                        "canonical float"),
                       (lines[:3] + ['{"data":[1],' + lines[3][lines[3].rfind('"hash":'):]] + lines[4:],
                        "not a JSON object")):
        with pytest.raises(ReplicaError, match=what):
            store.apply(a.origin, junk, note)
    assert store.size(a.origin) == 0
    assert store.apply(a.origin, lines, note) == 31 and store.root(a.origin) == a.root()
    # a checkpoint signed by another key is refused outright
    other = _ledger(str(tmp_path / "o" / "ledger.sqlite"), 3)
    with pytest.raises(ReplicaError, match="refused"):
        store.observe(a.origin, other.latest_checkpoint().replace(other.origin, a.origin))
    a.close()
    other.close()


def test_forked_origin_is_caught_and_kept_as_evidence(tmp_path):
    """The origin signs two histories (a copy of its ledger and key grown differently)."""
    base = str(tmp_path / "x1" / "ledger.sqlite")
    led = _ledger(base, 20)
    origin, pub = led.origin, _pub(led)
    led.close()
    shutil.copytree(str(tmp_path / "x1"), str(tmp_path / "x2"))
    l1, l2 = Ledger(base), Ledger(str(tmp_path / "x2" / "ledger.sqlite"))
    l1.append_many([("action", {"action": "pay", "to": "alice"})] * 5)
    l2.append_many([("action", {"action": "pay", "to": "mallory"})] * 5)
    n1, n2 = l1.checkpoint(), l2.checkpoint()
    store = ReplicaStore(str(tmp_path / "b"), {origin: pub})
    assert store.apply(origin, [e.to_json() for e in l1.entries(0, l1.size)], n1) == 26
    assert store.observe(origin, n1)["status"] == "ok"
    alert = store.observe(origin, n2)                      # same size, another root: split view
    assert alert["status"] == "split-view" and "two signed roots for size 26" in alert["why"]
    ev = json.load(open(alert["evidence"]))
    assert sorted(ev["checkpoints"]) == sorted([n1, n2])
    for note in ev["checkpoints"]:                          # both verify: proof of equivocation
        ckpt.verify_note(note, pub)
    assert store.observe(origin, n1)["status"] == "untrusted"
    with pytest.raises(ReplicaError, match="untrusted"):
        store.apply(origin, [], n1)
    # evidence survives a restart of the store
    assert "untrusted" == ReplicaStore(str(tmp_path / "b"), {origin: pub}).observe(origin, n1)["status"]
    l1.close()
    l2.close()


def test_forked_head_smaller_than_replica_is_caught(tmp_path):
    base = str(tmp_path / "x1" / "ledger.sqlite")
    led = _ledger(base, 10)
    origin, pub = led.origin, _pub(led)
    led.close()
    shutil.copytree(str(tmp_path / "x1"), str(tmp_path / "x2"))
    l1, l2 = Ledger(base), Ledger(str(tmp_path / "x2" / "ledger.sqlite"))
    l1.append_many([("action", {"action": "a"})] * 8)
    l2.append_many([("action", {"action": "b"})] * 3)
    n1, n2 = l1.checkpoint(), l2.checkpoint()
    store = ReplicaStore(str(tmp_path / "b"), {origin: pub})
    store.apply(origin, [e.to_json() for e in l1.entries(0, l1.size)], n1)
    alert = store.observe(origin, n2)
    assert alert["status"] == "split-view" and "differs from the verified replica" in alert["why"]
    l1.close()
    l2.close()


def _fork(tmp_path, base_n, a_extra, b_extra):
    base = str(tmp_path / "x1" / "ledger.sqlite")
    led = _ledger(base, base_n)
    origin, pub = led.origin, _pub(led)
    led.close()
    shutil.copytree(str(tmp_path / "x1"), str(tmp_path / "x2"))
    l1, l2 = Ledger(base), Ledger(str(tmp_path / "x2" / "ledger.sqlite"))
    l1.append_many([("action", {"action": "a"})] * a_extra)
    l2.append_many([("action", {"action": "b"})] * b_extra)
    return origin, pub, l1, l2, l1.checkpoint(), l2.checkpoint()


@pytest.mark.parametrize("a_extra,b_extra", [(5, 5), (8, 3)])
def test_split_view_evidence_convinces_other_cells_and_bogus_evidence_does_not(tmp_path, a_extra, b_extra):
    origin, pub, l1, l2, n1, n2 = _fork(tmp_path, 10, a_extra, b_extra)
    st = ReplicaStore(str(tmp_path / "b"), {origin: pub})
    st.apply(origin, [e.to_json() for e in l1.entries(0, l1.size)], n1)
    assert st.observe(origin, n2)["status"] == "split-view"
    ev = st.evidence()[0]
    other = ReplicaStore(str(tmp_path / "c"), {origin: pub})   # holds nothing of this origin
    assert other.check_evidence(json.loads(json.dumps(ev))) is True
    assert other.observe(origin, n1)["status"] == "untrusted"
    # bogus: one history's notes only (consistent), or a tampered proof
    third = ReplicaStore(str(tmp_path / "d"), {origin: pub})
    old = l1.checkpoints()[0]
    with pytest.raises(ReplicaError, match="consistent|same root|does not verify|need a consistency"):
        third.check_evidence({"origin": origin, "checkpoints": [old, n1],
                              "consistency": {"old_size": 11, "new_size": l1.size,
                                              "old_root": l1.root(11).hex(),
                                              "path": [h for h in l1.consistency_proof(11)["path"]]}})
    if "consistency" in ev:
        bad = json.loads(json.dumps(ev))
        bad["consistency"]["path"][0] = "00" * 32
        with pytest.raises(ReplicaError, match="does not verify"):
            third.check_evidence(bad)
    assert third.untrusted == set()
    l1.close()
    l2.close()


def test_evidence_travels_with_heads_over_tls(tmp_path):
    tls = str(tmp_path / "tls")
    init_mesh(tls, ["cell-b", "cell-c"])
    origin, pub, l1, l2, n1, n2 = _fork(tmp_path, 10, 4, 4)
    sb = ReplicaStore(str(tmp_path / "b"), {origin: pub})
    sb.apply(origin, [e.to_json() for e in l1.entries(0, l1.size)], n1)
    assert sb.observe(origin, n2)["status"] == "split-view"
    sc = ReplicaStore(str(tmp_path / "c"), {origin: pub})

    async def go():
        rb = Replicator(None, sb, tls, "cell-b")
        port = await rb.start("127.0.0.1", 0)
        rc = Replicator(None, sc, tls, "cell-c")
        rep = await rc.pull(("127.0.0.1", port, "cell-b"))
        await rb.close()
        return rep
    rep = _run(go())
    assert rep["alerts"] and rep["alerts"][0]["origin"] == origin
    assert origin in sc.untrusted and sc.size(origin) == 0
    l1.close()
    l2.close()


def test_head_not_consistent_with_our_replica_is_refused_before_download(tmp_path):
    """The origin serves another history whose head is beyond ours and which has no checkpoint of
    our size: the RFC 9162 consistency proof from our size to its head fails, nothing is fetched."""
    tls = str(tmp_path / "tls")
    init_mesh(tls, ["cell-x", "cell-b"])
    origin, pub, l1, l2, n1, n2 = _fork(tmp_path, 10, 3, 8)          # n1: size 14 (A), n2: size 19 (B)
    sb = ReplicaStore(str(tmp_path / "b"), {origin: pub})
    sb.apply(origin, [e.to_json() for e in l1.entries(0, l1.size)], n1)
    assert [ckpt.parse_note(t)["size"] for t in l2.checkpoints()] == [11, 19]

    async def go():
        rx = Replicator(l2, ReplicaStore(str(tmp_path / "x-rep"), {}), tls, "cell-x")
        port = await rx.start("127.0.0.1", 0)
        rb = Replicator(None, sb, tls, "cell-b")
        rep = await rb.pull(("127.0.0.1", port, "cell-x"))
        await rx.close()
        return rep
    rep = _run(go())
    assert "not consistent with our verified size 14" in rep["refused"][origin]
    assert sb.size(origin) == 14 and rep["applied"] == {}
    l1.close()
    l2.close()
