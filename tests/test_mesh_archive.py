"""Erasure-coded ledger archives (host/mesh/archive.py) and `becomingone mesh seal|restore`."""
import itertools
import json
import os
import zlib

import pytest

from becomingone.cli import main
from becomingone.ledger import Ledger, verify_path
from becomingone.ledger import checkpoint as ckpt
from becomingone.mesh import archive
from becomingone.mesh.archive import ArchiveError, restore, seal_to_cells
from becomingone.mesh.ring import Ring

CELLS = ["a", "b", "c", "d", "e", "f"]


@pytest.fixture(scope="module")
def sealed(tmp_path_factory):
    """A 301-entry ledger sealed as [0, 200) (checkpoint later: consistency proof) and
    [200, 301), 4-of-6 on six cells."""
    d = tmp_path_factory.mktemp("arch")
    os.makedirs(d / "src")
    db = str(d / "src" / "ledger.sqlite")
    with Ledger(db) as led:
        led.append_many([("action", {"action": "a", "i": i}) for i in range(250)])
        led.checkpoint()
        led.append_many([("witness", {"device": 3, "layer": "micro", "i": i}) for i in range(50)])
        ring = Ring(CELLS)
        i1 = seal_to_cells(led, 0, 200, 4, 6, ring, str(d / "cells"))
        i2 = seal_to_cells(led, 200, None, 4, 6, ring, str(d / "cells"))
        root = led.root().hex()
        pub = led.public_key_pem().encode()
    return {"dir": d, "db": db, "segs": (i1, i2), "root": root, "pub": pub}


def _shard_paths(sealed, seg):
    return [s["path"] for s in sealed["segs"][seg]["shards"]]


def _copy(paths, dest):
    os.makedirs(dest, exist_ok=True)
    for p in paths:
        with open(p, "rb") as f, open(os.path.join(dest, os.path.basename(p)), "wb") as g:
            g.write(f.read())
    return str(dest)


def test_shards_go_to_distinct_cells_with_a_header(sealed):
    for info in sealed["segs"]:
        assert sorted(s["cell"] for s in info["shards"]) == CELLS
        h, body = archive.read_shard(info["shards"][0]["path"])
        assert (h["k"], h["n"], h["index"], h["origin"]) == (4, 6, 0, info["origin"])
        assert h["segment_sha3"] == info["segment_sha3"] and len(h["shard_sha3"]) == 64
    assert sealed["segs"][0]["stop"] == 200 and sealed["segs"][1]["stop"] == 301


@pytest.mark.parametrize("pick", [(0, 1, 2, 3), (2, 3, 4, 5), (0, 2, 4, 5), (1, 3, 4, 5), (0, 1, 4, 5)])
def test_restore_from_any_k_of_n(sealed, tmp_path, pick):
    # the two segments use different subsets (rotated) to show they are independent
    src = _copy([_shard_paths(sealed, 0)[i] for i in pick]
                + [_shard_paths(sealed, 1)[(i + 1) % 6] for i in pick], tmp_path / "in")
    out = str(tmp_path / "restored.sqlite")
    res = restore([src], 4, out)
    assert res["size"] == 301 and res["root"] == sealed["root"] and res["rejected"] == []
    assert res["segments"] == 2 and res["shards_used"] == 8
    v = verify_path(out)
    assert v.ok and v.size == 301 and v.root.hex() == sealed["root"]
    with Ledger(out) as led:   # the restored file is an ordinary ledger
        assert led.get(251).data == {"kind": "witness", "device": 3, "layer": "micro", "i": 0}


def test_all_fifteen_subsets_decode_the_first_segment(sealed):
    paths = _shard_paths(sealed, 0)
    want = sealed["segs"][0]["segment_sha3"]
    for pick in itertools.combinations(range(6), 4):
        group = {}
        for i in pick:
            h, body = archive.read_shard(paths[i])
            group[i] = (paths[i], h, body)
        seg, rej = archive._decode(group, 4)
        assert rej == [] and archive._sha3(seg) == want


def _tamper_body(src_path, dst_path, fix_header=False):
    with open(src_path, "rb") as f:
        blob = bytearray(f.read())
    blob[-10] ^= 0xFF
    if fix_header:   # a forger who also rewrites the shard hash in the header
        h, body = blob[len(archive.MAGIC):].split(b"\n", 1)
        hd = json.loads(h)
        hd["shard_sha3"] = archive._sha3(bytes(body))
        blob = archive.MAGIC + archive._dumps(hd).encode() + b"\n" + bytes(body)
    with open(dst_path, "wb") as f:
        f.write(blob)


def test_tampered_shard_is_detected_and_skipped(sealed, tmp_path):
    p0, p1 = _shard_paths(sealed, 0), _shard_paths(sealed, 1)
    src = _copy(p0[1:] + p1, tmp_path / "in")
    _tamper_body(p0[0], os.path.join(src, os.path.basename(p0[0])))
    res = restore([src], 4, str(tmp_path / "r.sqlite"))
    assert res["size"] == 301 and res["root"] == sealed["root"]
    assert len(res["rejected"]) == 1 and "SHA3-256" in res["rejected"][0]["why"]


def test_forged_shard_with_a_matching_header_hash_is_named(sealed, tmp_path):
    p0, p1 = _shard_paths(sealed, 0), _shard_paths(sealed, 1)
    src = _copy(p0[1:] + p1, tmp_path / "in")
    _tamper_body(p0[0], os.path.join(src, os.path.basename(p0[0])), fix_header=True)
    res = restore([src], 4, str(tmp_path / "r.sqlite"))
    assert res["size"] == 301 and res["root"] == sealed["root"]
    assert len(res["rejected"]) == 1 and "forged" in res["rejected"][0]["why"]
    assert res["rejected"][0]["path"].endswith(os.path.basename(p0[0]))


def test_fewer_than_k_valid_shards_is_a_clear_error_and_writes_nothing(sealed, tmp_path):
    p0, p1 = _shard_paths(sealed, 0), _shard_paths(sealed, 1)
    src = _copy(p0[:3] + p1, tmp_path / "in")                       # 3 of 6, k = 4
    out = tmp_path / "out"
    os.makedirs(out)
    with pytest.raises(ArchiveError, match=r"fewer than k=4 valid shards.*3 valid shard\(s\), 4 needed.*nothing written"):
        restore([src], 4, str(out / "r.sqlite"))
    # 4 present but one tampered -> again fewer than k valid
    _tamper_body(p0[3], os.path.join(src, os.path.basename(p0[3])))
    with pytest.raises(ArchiveError, match="fewer than k=4"):
        restore([src], 4, str(out / "r.sqlite"))
    assert os.listdir(out) == []
    with pytest.raises(ArchiveError, match="no shard files"):
        restore([str(out)], 4, str(out / "r.sqlite"))


def _reseal(segment_bytes, header_src_path, k, n, mutate, dest):
    """An attacker who re-encodes a modified segment with fully consistent shard headers."""
    text = zlib.decompress(segment_bytes).decode()
    text = mutate(text)
    seg = zlib.compress(text.encode(), 6)
    h, _ = archive.read_shard(header_src_path)
    hdr = {"origin": h["origin"], "start": h["start"], "stop": h["stop"]}
    os.makedirs(dest, exist_ok=True)
    for i, blob in enumerate(archive.encode_shards(seg, hdr, k, n)):
        with open(os.path.join(dest, "x%d.shard" % i), "wb") as f:
            f.write(blob)
    return str(dest)


def _segment_bytes(paths):
    group = {}
    for i, p in enumerate(paths[:4]):
        h, body = archive.read_shard(p)
        group[h["index"]] = (p, h, body)
    return archive._decode(group, 4)[0]


def test_rewritten_history_with_consistent_shards_is_refused(sealed, tmp_path):
    p0 = _shard_paths(sealed, 0)
    seg = _segment_bytes(p0)
    src = _reseal(seg, p0[0], 4, 6, lambda t: t.replace('"action":"a","i":7,', '"action":"b","i":7,'),
                  tmp_path / "forged")
    with pytest.raises(ArchiveError, match="entry 8: its hash does not match"):
        restore([src], 4, str(tmp_path / "r.sqlite"))
    assert not os.path.exists(tmp_path / "r.sqlite")


def test_checkpoint_signed_by_another_key_is_refused_when_the_key_is_pinned(sealed, tmp_path):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    p0 = _shard_paths(sealed, 0)
    seg = _segment_bytes(p0)
    text = zlib.decompress(seg).decode()
    hdr = json.loads(text.split("\n", 1)[0])
    note = ckpt.parse_note(hdr["checkpoint"])
    evil = Ed25519PrivateKey.generate()
    forged_note = ckpt.sign_note(evil, note["origin"], note["size"], note["root"], note["timestamp_ms"])
    src = _reseal(seg, p0[0], 4, 6, lambda t: t.replace(json.dumps(hdr["checkpoint"])[1:-1],
                                                         json.dumps(forged_note)[1:-1]), tmp_path / "f")
    with pytest.raises(ArchiveError, match="checkpoint"):
        restore([src], 4, str(tmp_path / "r.sqlite"), public_key_pem=sealed["pub"])


def test_wrong_k_and_existing_target_are_refused(sealed, tmp_path):
    src = _copy(_shard_paths(sealed, 0) + _shard_paths(sealed, 1), tmp_path / "in")
    with pytest.raises(ArchiveError, match="sealed with k=4, --k 3 given"):
        restore([src], 3, str(tmp_path / "r.sqlite"))
    (tmp_path / "exists.sqlite").write_bytes(b"")
    with pytest.raises(ArchiveError, match="already exists"):
        restore([src], 4, str(tmp_path / "exists.sqlite"))
    with pytest.raises(ArchiveError, match="need 1 <= k <= n <= 256"):
        archive.encode_shards(b"x", {"origin": "o", "start": 0, "stop": 1}, 5, 4)


def test_cli_seal_and_restore(sealed, tmp_path, capsys):
    db = str(tmp_path / "src" / "ledger.sqlite")
    os.makedirs(tmp_path / "src")
    with Ledger(db) as led:
        led.append_many([("action", {"action": "c", "i": i}) for i in range(40)])
    rc = main(["mesh", "seal", "--db", db, "--k", "2", "--n", "3", "--cells", "x=1,y=2:0.5,z",
               "--out", str(tmp_path / "cells"), "--json"])
    info = json.loads(capsys.readouterr().out)
    assert rc == 0 and info["stop"] == 41 and len(info["shards"]) == 3
    rc = main(["mesh", "restore", "--from", str(tmp_path / "cells" / info["shards"][0]["cell"]),
               str(tmp_path / "cells" / info["shards"][2]["cell"]), "--k", "2",
               "--to", str(tmp_path / "r.sqlite"), "--json",
               "--pubkey", str(tmp_path / "src" / ckpt.PUB_FILE)])
    res = json.loads(capsys.readouterr().out)
    assert rc == 0 and res["size"] == 41 and res["key_pinned"] is True
    rc = main(["mesh", "restore", "--from", str(tmp_path / "cells" / info["shards"][0]["cell"]),
               "--k", "2", "--to", str(tmp_path / "r2.sqlite")])
    assert rc == 2 and "fewer than k=2" in capsys.readouterr().err
