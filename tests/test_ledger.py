"""Ledger: canonical JSON, entry hash, Merkle tree and proofs, appends, checkpoints."""
import asyncio
import hashlib
import json
import math
import os
import random
import stat

import pytest

from becomingone.errors import UserError
from becomingone.ledger import (CanonicalError, KindError, Ledger, PulseRecorder, canonical,
                                checkpoint as ckpt, hashing, merkle)
from tests.reference.ledger_ref import reference_root


def W(i, **kw):
    d = {"device": 1, "layer": "micro", "n": i}
    d.update(kw)
    return d


@pytest.fixture
def led(tmp_path):
    lg = Ledger(str(tmp_path / "ledger.sqlite"))
    yield lg
    lg.close()


# ---------------------------------------------------------------- canonical JSON
def test_canonical_rules():
    assert canonical.dumps({"b": 1, "a": [True, None, 2.0, "é😀\n"]}) == \
        '{"a":[true,null,2.0,"\\u00e9\\ud83d\\ude00\\n"],"b":1}'
    assert canonical.dumps({"x": -0.0, "y": [-0.0]}) == '{"x":0.0,"y":[0.0]}'
    assert canonical.dumps({"f": 1e16, "g": 1e-05, "h": 0.1 + 0.2}) == '{"f":1e+16,"g":1e-05,"h":0.30000000000000004}'
    assert canonical.dumps({"i": 2 ** 63 - 1, "j": -(2 ** 63)}) == '{"i":9223372036854775807,"j":-9223372036854775808}'


@pytest.mark.parametrize("bad, words", [
    ({"x": float("nan")}, "data.x: nan"),
    ({"x": [1, float("inf")]}, "data.x[1]: inf"),
    ({"x": -float("inf")}, "-inf"),
    ({"x": b"\x01"}, "bytes are not allowed"),
    ({"x": (1, 2)}, "tuple"),
    ({1: 2}, "only str keys"),
    ({"x": 2 ** 63}, "out of range"),
    ({"x": "\ud800"}, "lone surrogate"),
    ({"x": {1, 2}}, "type set"),
])
def test_canonical_refuses(bad, words):
    with pytest.raises(CanonicalError) as ei:
        canonical.dumps(bad)
    assert words in str(ei.value)


def test_canonical_numpy_hint():
    np = pytest.importorskip("numpy")
    with pytest.raises(CanonicalError, match="item"):
        canonical.dumps({"x": np.float64(1.0)})


def test_entry_hash_is_sha3_of_canonical_object():
    data = {"kind": "action", "action": "x", "v": 1.5}
    text = canonical.dumps(data)
    obj = {"index": 7, "timestamp": 1795320732.25, "data": data, "previous_hash": "ab" * 32}
    expect = hashlib.sha3_256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert hashing.entry_hash(7, 1795320732.25, text, "ab" * 32).hex() == expect


# ---------------------------------------------------------------- Merkle tree
def _leaves(n):
    return [merkle.leaf_hash(hashlib.sha3_256(b"%d" % i).digest()) for i in range(n)]


def test_frontier_matches_reference_and_stores_complete_nodes():
    leaves = _leaves(70)
    fr, nodes = merkle.Frontier(), []
    for i, lf in enumerate(leaves):
        fr.push(lf, nodes)
        assert fr.root() == reference_root(leaves[:i + 1])
    for level, k, h in nodes:
        assert h == reference_root(leaves[k << level:(k + 1) << level])
    assert len(nodes) == 70 - bin(70).count("1")


def test_proofs_roundtrip_and_reject_tampering():
    leaves = _leaves(40)
    store = {(0, i): lf for i, lf in enumerate(leaves)}
    for level in range(1, 6):
        for k in range(40 >> level):
            store[(level, k)] = reference_root(leaves[k << level:(k + 1) << level])

    def resolve(plan):
        return [merkle.fold([store[c] for c in item]) for item in plan]

    for n in range(1, 41):
        root = reference_root(leaves[:n])
        for m in range(n):
            path = resolve(merkle.inclusion_plan(m, n))
            assert merkle.verify_inclusion(m, n, leaves[m], path, root)
            assert not merkle.verify_inclusion(m, n, leaves[(m + 1) % 40], path, root)
            if path:
                bad = list(path)
                bad[0] = bytes(32)
                assert not merkle.verify_inclusion(m, n, leaves[m], bad, root)
        for m in range(0, n + 1):
            path = resolve(merkle.consistency_plan(m, n))
            old = reference_root(leaves[:m])
            assert merkle.verify_consistency(m, n, old, root, path), (m, n)
            if 0 < m < n:
                assert not merkle.verify_consistency(m, n, merkle.leaf_hash(b"x"), root, path)
                assert not merkle.verify_consistency(m, n, old, root, path[:-1])


# ---------------------------------------------------------------- store
def test_genesis_chain_and_reopen(tmp_path):
    p = str(tmp_path / "l.sqlite")
    with Ledger(p) as led:
        g = led.get(0)
        assert g.kind == "genesis" and g.previous_hash == "0" * 64
        e = led.append("action", {"action": "start", "note": "héllo", "x": -0.0})
        assert e.index == 1 and e.previous_hash == g.hash and e.data["x"] == 0.0
        root = led.root()
        assert led.origin == "becomingone.ledger/" + g.hash[:16]
    with Ledger(p) as led:
        assert led.size == 2 and led.root() == root
        e2 = led.append("collapse", {"coherence": 0.91})
        assert e2.previous_hash == e.hash
        assert led.verify().ok


def test_kinds_are_checked(led):
    with pytest.raises(KindError, match="allowed: action"):
        led.append("nope", {})
    with pytest.raises(KindError, match="needs field 'device'"):
        led.append("pulse", {"beat": 1, "beats": 1})
    with pytest.raises(KindError, match="layer"):
        led.append("witness", {"device": 1, "layer": "mega"})
    with pytest.raises(KindError, match="nan"):
        led.append("collapse", {"coherence": math.nan})
    with pytest.raises(KindError):
        led.append("genesis", {"origin": "x", "version": 1})
    assert led.size == 1
    for kind, data in [("action", {"action": "a"}), ("pulse", {"device": 1, "beat": 9, "beats": 10}),
                       ("flow", {"flow": "arbiter", "result": [1, 2]}), ("witness", W(1)),
                       ("collapse", {"coherence": 1}), ("config", {"target": "host", "version": 2, "change": {"a": 1}})]:
        assert led.append(kind, data).kind == kind


def test_pulse_recorder_rates(led):
    every = PulseRecorder(led.append, device=4, every=1)
    for b in range(3):
        assert every.beat(b, {"c": 0.5}).data == {"kind": "pulse", "device": 4, "beat": b, "beats": 1, "c": 0.5}
    summ = PulseRecorder(led.append, device=4, every=4)
    out = [summ.beat(b, {"c": float(b)}) for b in range(8)]
    assert out[:3] == [None] * 3 and out[3].data["c"] == {"mean": 1.5, "min": 0.0, "max": 3.0}
    assert out[7].data["beats"] == 4 and out[7].data["beat"] == 7
    with pytest.raises(UserError):
        PulseRecorder(led.append, 1, every=0)


def test_group_commit_futures_and_proofs(led):
    seen = []
    futs = [led.submit("witness", W(i), callback=lambda e, err: seen.append((e.index, err))) for i in range(500)]
    entries = [f.result(timeout=10) for f in futs]
    assert [e.index for e in entries] == list(range(1, 501))
    assert sorted(seen) == [(i, None) for i in range(1, 501)]
    led.append_many([("witness", W(i)) for i in range(300)])
    n = led.size
    leaves = [merkle.leaf_hash(bytes.fromhex(e.hash)) for e in led.entries()]
    assert led.root() == reference_root(leaves)
    rnd = random.Random(1)
    for _ in range(100):
        size = rnd.randint(1, n)
        m = rnd.randrange(size)
        p = led.inclusion_proof(m, size)
        assert bytes.fromhex(p["root"]) == reference_root(leaves[:size])
        assert merkle.verify_inclusion(m, size, bytes.fromhex(p["leaf_hash"]), [bytes.fromhex(x) for x in p["path"]],
                                       bytes.fromhex(p["root"]))
        old = rnd.randint(0, size)
        c = led.consistency_proof(old, size)
        assert merkle.verify_consistency(old, size, bytes.fromhex(c["old_root"]), bytes.fromhex(c["new_root"]),
                                         [bytes.fromhex(x) for x in c["path"]])
    with pytest.raises(UserError, match="out of range"):
        led.inclusion_proof(n)
    with pytest.raises(UserError, match="out of range"):
        led.consistency_proof(5, n + 1)


def test_submit_from_asyncio(led):
    async def main():
        futs = [asyncio.wrap_future(led.submit("witness", W(i))) for i in range(50)]
        return await asyncio.gather(*futs)
    entries = asyncio.run(main())
    assert sorted(e.index for e in entries) == list(range(1, 51))


def test_submit_rejects_bad_data_at_once(led):
    with pytest.raises(KindError, match="inf"):
        led.submit("witness", W(1, x=math.inf))


def test_checkpoints_signed_and_key_private(tmp_path):
    p = str(tmp_path / "l.sqlite")
    with Ledger(p, checkpoint_every=100) as led:
        led.append_many([("witness", W(i)) for i in range(250)])
        notes = led.checkpoints()
        assert [ckpt.parse_note(n)["size"] for n in notes] == [251]  # crossed 100 and 200 in one batch
        for i in range(120):
            led.append("witness", W(i))
        assert [ckpt.parse_note(n)["size"] for n in led.checkpoints()] == [251, 300]
        note = led.checkpoint()
        pub = ckpt.load_public_key(str(tmp_path / ckpt.PUB_FILE))   # the public copy beside it
        parsed = ckpt.verify_note(note, pub)
        assert parsed["size"] == led.size and parsed["root"] == led.root() and parsed["origin"] == led.origin
        body, sig = note.split("\n\n")
        assert body.split("\n")[3].startswith("timestamp ") and sig.startswith("\u2014 " + led.origin + " ")
        forged = note.replace("\n%d\n" % led.size, "\n%d\n" % (led.size + 1))
        with pytest.raises(ckpt.CheckpointError, match="does not verify"):
            ckpt.verify_note(forged, pub)
        pem = led.public_key_pem()
        assert "PRIVATE" not in pem
        kfolder = led.key_folder
    assert not os.path.exists(tmp_path / ckpt.KEY_FILE)      # outside the data folder
    mode = stat.S_IMODE(os.stat(os.path.join(kfolder, ckpt.KEY_FILE)).st_mode)
    assert mode == 0o600
    r = Ledger(p).verify()
    assert r.ok and r.checkpoints == 3, r.message()


def test_group_commit_linger_and_bad_options(tmp_path):
    with Ledger(str(tmp_path / "l.sqlite"), group_commit_ms=2, max_batch=64) as led:
        futs = [led.submit("witness", W(i)) for i in range(300)]
        assert [f.result(timeout=10).index for f in futs] == list(range(1, 301))
        assert led.submit("action", {"action": "one"}).result(timeout=10).index == 301
    for kw in ({"group_commit_ms": -1}, {"max_batch": 0}, {"checkpoint_every": -5}):
        with pytest.raises(UserError):
            Ledger(str(tmp_path / "x.sqlite"), **kw)
