"""`becomingone ledger ...` and the independent export verifier (tools/verify_export.py)."""
import json
import re
import os
import shutil
import subprocess
import sys

import pytest

from becomingone.cli import main
from becomingone.ledger import Ledger, merkle

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import verify_export  # noqa: E402


@pytest.fixture
def db(tmp_path):
    p = str(tmp_path / "data" / "ledger.sqlite")
    os.makedirs(os.path.dirname(p))
    with Ledger(p) as led:
        led.append("action", {"action": "start", "who": "Zoë 😀"})
        led.append_many([("witness", {"device": 3, "layer": "micro", "n": i, "x": i / 7}) for i in range(60)])
        led.append("collapse", {"coherence": 0.25, "devices": [3]})
    return p


def run_cli(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_verify_show_proof_checkpoint(db, capsys):
    rc, out, _ = run_cli(capsys, "ledger", "verify", "--db", db, "--json")
    r = json.loads(out)
    assert rc == 0 and r["ok"] and r["size"] == 63 and r["first_bad"] is None
    rc, out, _ = run_cli(capsys, "ledger", "verify", "--data", os.path.dirname(db))
    assert rc == 0 and "OK: 63 entries" in out
    rc, out, _ = run_cli(capsys, "ledger", "show", "--db", db, "--from", "0", "--to", "2", "--json")
    lines = [json.loads(x) for x in out.splitlines()]
    assert [e["index"] for e in lines] == [0, 1, 2] and lines[1]["data"]["who"] == "Zoë 😀"
    rc, out, _ = run_cli(capsys, "ledger", "show", "--db", db, "--kind", "collapse")
    assert rc == 0 and "collapse" in out and len(out.splitlines()) == 1
    assert re.search(r"^\s*\d+  \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z  collapse", out)   # ISO 8601 UTC
    rc, out, _ = run_cli(capsys, "ledger", "proof", "5", "--size", "40", "--db", db, "--json")
    p = json.loads(out)
    assert rc == 0 and p["verified"] and p["tree_size"] == 40
    assert merkle.verify_inclusion(5, 40, bytes.fromhex(p["leaf_hash"]), [bytes.fromhex(h) for h in p["path"]],
                                   bytes.fromhex(p["root"]))
    rc, out, _ = run_cli(capsys, "ledger", "proof", "--consistency", "17", "--db", db, "--json")
    c = json.loads(out)
    assert rc == 0 and c["verified"] and c["new_size"] == 63
    rc, out, _ = run_cli(capsys, "ledger", "checkpoint", "--db", db)
    assert rc == 0 and out.splitlines()[1] == "63"
    rc, out, _ = run_cli(capsys, "ledger", "checkpoint", "--show", "--json", "--db", db)
    assert json.loads(out)["size"] == 63


@pytest.mark.parametrize("argv, words", [
    (["proof", "999"], "out of range"),
    (["proof"], "give an entry INDEX"),
    (["show", "--from", "50", "--to", "400"], "out of bounds"),
])
def test_user_mistakes_exit_2(db, capsys, argv, words):
    rc, _, err = run_cli(capsys, "ledger", argv[0], "--db", db, *argv[1:])
    assert rc == 2 and err.startswith("becomingone: ") and words in err


def test_missing_ledger_exit_2(tmp_path, capsys):
    rc, _, err = run_cli(capsys, "ledger", "show", "--db", str(tmp_path / "none.sqlite"))
    assert rc == 2 and "no ledger at" in err


def test_verify_failure_exit_1_names_entry(db, capsys):
    import sqlite3
    c = sqlite3.connect(db, isolation_level=None)
    c.execute("UPDATE entries SET ts = ts + 1e-6 WHERE idx = 42")
    c.close()
    rc, _, err = run_cli(capsys, "ledger", "verify", "--db", db)
    assert rc == 1 and "FAILED at entry 42" in err


def test_export_verified_independently_and_tamper_rejected(db, tmp_path, capsys):
    out = str(tmp_path / "exp")
    rc, text, _ = run_cli(capsys, "ledger", "export", out, "--db", db, "--json")
    man = json.loads(text)
    assert rc == 0 and man["size"] == 63 and sorted(os.listdir(out)) == \
        ["checkpoint.txt", "entries.jsonl", "manifest.json", "public_key.pem"]
    res = verify_export.verify(out, pin_b64=man["public_key_raw_b64"])
    assert res["ok"] and res["root"] == man["root"]
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "verify_export.py"), out],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "OK: 63 entries" in r.stdout
    rc, _, err = run_cli(capsys, "ledger", "export", out, "--db", db)
    assert rc == 2 and "already holds" in err

    def tampered(name, fn):
        d = str(tmp_path / name)
        shutil.copytree(out, d)
        path = os.path.join(d, "entries.jsonl")
        lines = open(path).read().split("\n")
        fn(lines, d)
        with open(path, "w") as f:
            f.write("\n".join(lines))
        with pytest.raises(verify_export.Bad) as ei:
            verify_export.verify(d)
        return str(ei.value)

    def edit_data(lines, d):
        assert '"n":28,' in lines[30]
        lines[30] = lines[30].replace('"n":28,', '"n":27,')
    assert "entry 30" in tampered("t1", edit_data)

    def rehash(lines, d):  # a consistent rewrite of the tail: only the signed root catches it
        e = json.loads(lines[62])
        e["data"]["coherence"] = 0.99
        hin = verify_export.canon({k: e[k] for k in ("data", "index", "previous_hash", "timestamp")})
        import hashlib
        e["hash"] = hashlib.sha3_256(hin.encode()).hexdigest()
        lines[62] = verify_export.canon(e)
    assert "checkpoint root" in tampered("t2", rehash)

    def drop_last(lines, d):
        del lines[62]
    assert "checkpoint size" in tampered("t3", drop_last)

    def non_canonical(lines, d):
        assert lines[5].startswith('{"data":')
        lines[5] = lines[5].replace('{"data":', '{ "data":')
    assert "not canonical" in tampered("t4", non_canonical)

    def other_key(lines, d):
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        pem = Ed25519PrivateKey.generate().public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        open(os.path.join(d, "public_key.pem"), "wb").write(pem)
    assert "no signature by the given key" in tampered("t5", other_key)
    with pytest.raises(verify_export.Bad, match="pinned"):
        verify_export.verify(out, pin_b64="AAAA")


def test_bench_ledger_smoke():
    import argparse
    from becomingone.bench import ledger as bench_ledger
    rows = bench_ledger.collect(argparse.Namespace(quick=True, entries=300, verify_entries=3000, proofs=30))
    by = {r["name"]: r for r in rows}
    assert set(by) == {"becomingone", "pymerkle", "sqlite-raw", "verify-1m"}
    assert by["becomingone"]["append_per_s"] > 0 and by["becomingone"]["proof_per_s"] > 0
    assert by["verify-1m"]["entries"] == 3000 and "not 1M" in by["verify-1m"]["note"]
