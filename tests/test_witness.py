"""Witness cosigning (C2SP tlog-witness / tlog-cosignature; docs/LEDGER.md §11), the signing key's
home outside the data folder (§6), `ledger verify` with cosignatures and --against."""
import base64
import json
import os
import sqlite3
import subprocess
import sys
import time

import pytest

from becomingone.ledger import Ledger, checkpoint as ckpt, verify_path
from becomingone.ledger.cosignature import (CosignatureError, cosign, cosignature_lines,
                                            parse_vkey, public_key_of, verify_line, vkey)
from becomingone.ledger.cosigner import Cosigner, WitnessRef
from becomingone.ledger.witness import SIZE_TYPE, Witness, request_body


def _ledger(tmp_path, n=10, name="a"):
    os.makedirs(tmp_path / name, exist_ok=True)
    led = Ledger(str(tmp_path / name / "ledger.sqlite"), key_dir=str(tmp_path / "keys"))
    for i in range(n):
        led.append("action", {"action": "x", "i": i})
    return led


def _witness(tmp_path, led, name="w.example/1"):
    w = Witness.create(str(tmp_path / "witness"), name)
    w.trust(led.origin, led.public_key())
    return w


def test_cosignature_format_is_c2sp_v1():
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    k = Ed25519PrivateKey.generate()
    body = "example.com/log\n5\n" + base64.b64encode(bytes(32)).decode() + "\n"
    line = cosign(k, "witness.example/w1", body, 1679315147)
    name, blob = line.rstrip("\n").split(" ")[1], base64.b64decode(line.split(" ")[2])
    assert line.startswith("\u2014 witness.example/w1 ") and len(blob) == 76
    raw = ckpt.raw_public(k.public_key())
    import hashlib
    assert blob[:4] == hashlib.sha256(b"witness.example/w1\n\x04" + raw).digest()[:4]
    assert int.from_bytes(blob[4:12], "big") == 1679315147
    k.public_key().verify(blob[12:], b"cosignature/v1\ntime 1679315147\n" + body.encode())
    assert verify_line(line, body, name, k.public_key()) == 1679315147
    with pytest.raises(CosignatureError):
        verify_line(line, body.replace("5", "6"), name, k.public_key())
    v = vkey(name, raw)
    assert parse_vkey(v) == (name, raw)
    assert public_key_of(v)[0] == name


def test_witness_cosigns_only_consistent_growth(tmp_path):
    led = _ledger(tmp_path)
    w = _witness(tmp_path, led)
    n1 = led.checkpoint()
    st, ct, body = w.add_checkpoint(request_body(0, [], n1))
    assert st == 200
    lines = cosignature_lines(body.decode())
    assert len(lines) == 1
    p1 = ckpt.parse_note(n1)
    verify_line(lines[0], p1["body"], w.name, w._key.public_key())
    # the same checkpoint again: fine; a stale old size: 409 with the size it holds
    s1 = led.size
    assert w.add_checkpoint(request_body(s1, [], n1))[0] == 200
    st, ct, body = w.add_checkpoint(request_body(0, [], n1))
    assert (st, ct, body) == (409, SIZE_TYPE, b"%d\n" % s1)
    for i in range(5):
        led.append("action", {"action": "y", "i": i})
    n2 = led.checkpoint()
    s2 = led.size
    proof = [bytes.fromhex(h) for h in led.consistency_proof(s1, s2)["path"]]
    assert w.add_checkpoint(request_body(s1, proof, n2))[0] == 200
    # a bad proof: 422, evidence kept
    led.append("action", {"action": "z"})
    n3 = led.checkpoint()
    bad = [bytes(32)] + [bytes.fromhex(h) for h in led.consistency_proof(s2, s2 + 1)["path"]][1:]
    assert w.add_checkpoint(request_body(s2, bad, n3))[0] == 422
    assert os.listdir(tmp_path / "witness" / "evidence")
    # unknown log, forged signature, old > size, junk
    other = _ledger(tmp_path, 3, name="b")
    assert w.add_checkpoint(request_body(0, [], other.checkpoint()))[0] == 404
    forged = n2.replace("\n%d\n" % s2, "\n%d\n" % (s2 + 1), 1)
    assert w.add_checkpoint(request_body(s2, [], forged))[0] == 403
    assert w.add_checkpoint(request_body(99, [], n2))[0] == 400
    assert w.add_checkpoint(b"\xff\xfe")[0] == 400
    assert w.add_checkpoint(b"old 01\n\n" + n2.encode())[0] == 400
    # state survives a restart: a new Witness object holds size 15
    w2 = Witness(str(tmp_path / "witness"))
    assert ckpt.parse_note(w2.head(led.origin))["size"] == s2
    led.close()
    other.close()


def test_witness_refuses_rollback_and_fork_and_keeps_evidence(tmp_path):
    led = _ledger(tmp_path, 19)                     # 20 entries with the genesis
    w = _witness(tmp_path, led)
    n20 = led.checkpoint()
    assert w.add_checkpoint(request_body(0, [], n20))[0] == 200
    # the host's owner rolls the ledger back to 12 entries and re-signs with the same key
    key = led.signing_key()[0]
    root12 = led.root(12)
    rolled = ckpt.sign_note(key, led.origin, 12, root12, int(time.time() * 1000))
    st, ct, body = w.add_checkpoint(request_body(0, [], rolled))
    assert st == 409 and body == b"20\n"             # "I cosigned 20": no way back
    assert w.add_checkpoint(request_body(20, [], rolled))[0] == 400    # old > size
    # a fork: another root at size 20
    forged = ckpt.sign_note(key, led.origin, 20, bytes(32), int(time.time() * 1000))
    assert w.add_checkpoint(request_body(20, [], forged))[0] == 409
    ev = os.listdir(tmp_path / "witness" / "evidence")
    assert len(ev) >= 2
    assert ckpt.parse_note(w.head(led.origin))["size"] == 20
    led.close()


def test_cosigner_rounds_store_cosignatures_and_verify_counts_them(tmp_path):
    led = _ledger(tmp_path, 6)                      # 7 entries
    w1 = _witness(tmp_path, led, "w1.example/a")
    w2 = Witness.create(str(tmp_path / "witness2"), "w2.example/b")
    w2.trust(led.origin, led.public_key())
    refs = [WitnessRef(w.name, w._key.public_key(), w.add_checkpoint) for w in (w1, w2)]
    c = Cosigner(led, refs)
    c.round()
    assert c.sizes == {"w1.example/a": 7, "w2.example/b": 7}
    for i in range(9):
        led.append("action", {"action": "x", "i": i})
    c2 = Cosigner(led, refs)            # a restarted coordinator: sizes learned through 409
    c2.round()
    assert c2.sizes == {"w1.example/a": 16, "w2.example/b": 16}
    assert len(led.cosignatures()) == 4
    trusted = {w.name: w._key.public_key() for w in (w1, w2)}
    path = led.path
    led.close()
    r = verify_path(path, key_dir=str(tmp_path / "keys"), witnesses=trusted)
    assert r.ok and r.to_dict()["cosignatures"] == 2 and r.to_dict()["cosigned_size"] == 16
    assert "2 independent cosignature(s) cover the tree up to size 16" in r.message()
    r = verify_path(path, key_dir=str(tmp_path / "keys"), witnesses={})
    assert r.ok and r.to_dict()["cosignatures"] == 0 and r.unverified_cosignatures == 4
    # a tampered cosignature by a trusted witness fails verify
    con = sqlite3.connect(path)
    con.execute("UPDATE cosignatures SET line = replace(line, substr(line, -10, 4), 'AAAA') "
                "WHERE size = 16 AND name = 'w1.example/a'")
    con.commit()
    con.close()
    r = verify_path(path, key_dir=str(tmp_path / "keys"), witnesses=trusted)
    assert not r.ok and r.first_bad["part"] == "cosignature"


def test_rolled_back_ledger_detected_by_witness_and_against(tmp_path):
    """Issue 13 #6: delete the tail entries AND the checkpoint rows, re-sign: the ledger's own
    verify says OK, but the witness refuses to cosign and `verify --against` the checkpoint the
    witness holds fails; the cosigner raises an alert."""
    led = _ledger(tmp_path, 29)                     # 30 entries
    w = _witness(tmp_path, led)
    ref = WitnessRef(w.name, w._key.public_key(), w.add_checkpoint)
    Cosigner(led, [ref]).round()
    saved = w.head(led.origin)
    path, origin = led.path, led.origin
    key = led.signing_key()[0]
    led.close()
    con = sqlite3.connect(path)                      # the attacker: same machine, same key
    con.execute("DELETE FROM entries WHERE idx >= 18")
    con.execute("DELETE FROM nodes WHERE pos > 16")
    con.execute("DELETE FROM checkpoints")
    con.execute("DELETE FROM cosignatures")
    con.commit()
    con.close()
    led = Ledger(path, key_dir=str(tmp_path / "keys"))
    assert led.size == 18
    led.checkpoint()
    led.close()
    assert verify_path(path, key_dir=str(tmp_path / "keys")).ok       # alone it cannot tell
    r = verify_path(path, key_dir=str(tmp_path / "keys"), against=saved,
                    witnesses={w.name: w._key.public_key()})
    assert not r.ok and r.first_bad["part"] == "against" and "rolled back" in r.first_bad["what"]
    led = Ledger(path, key_dir=str(tmp_path / "keys"))
    c = Cosigner(led, [ref])
    c.round()
    assert c.alerts and "rolled back" in c.alerts[-1]["what"]
    assert c.sizes[w.name] == 30 and not led.cosignatures()
    # a consistent ledger passes --against the same kind of saved checkpoint
    led.close()
    good = _ledger(tmp_path, 4, name="g")            # 5 entries
    w3 = Witness.create(str(tmp_path / "w3"), "w3")
    w3.trust(good.origin, good.public_key())
    Cosigner(good, [WitnessRef("w3", w3._key.public_key(), w3.add_checkpoint)]).round()
    good.append("action", {"action": "more"})
    r = verify_path(good.path, key_dir=str(tmp_path / "keys"), against=w3.head(good.origin),
                    witnesses={"w3": w3._key.public_key()})
    assert r.ok and r.against["size"] == 5 and r.against["cosigners"] == ["w3"]
    good.close()


def test_signing_key_lives_outside_the_data_folder(tmp_path, monkeypatch):
    keys = tmp_path / "home-keys"
    monkeypatch.setenv("BECOMINGONE_KEY_DIR", str(keys))
    data = tmp_path / "data"
    data.mkdir()
    led = Ledger(str(data / "ledger.sqlite"))
    led.append("action", {"action": "x"})
    led.checkpoint()
    tag = led.origin.rsplit("/", 1)[1]
    assert os.path.exists(keys / tag / ckpt.KEY_FILE)
    assert oct(os.stat(keys / tag / ckpt.KEY_FILE).st_mode & 0o777) == "0o600"
    assert not os.path.exists(data / ckpt.KEY_FILE)
    assert os.path.exists(data / ckpt.PUB_FILE)            # a public copy for readers
    assert not led.key_in_data_folder
    led.close()
    r = verify_path(str(data / "ledger.sqlite"))
    assert r.ok and r.key_source.startswith("key folder") and not r.key_in_data_folder
    # configurable: ledger.key_dir
    led2 = Ledger(str(tmp_path / "d2.sqlite"), key_dir=str(tmp_path / "elsewhere"))
    led2.append("action", {"action": "x"})
    led2.checkpoint()
    assert os.listdir(tmp_path / "elsewhere")
    led2.close()


def test_legacy_key_beside_the_database_still_used_and_flagged(tmp_path):
    data = tmp_path / "old"
    data.mkdir()
    ckpt.load_or_create_key(str(data))                      # a ledger made before keys moved
    led = Ledger(str(data / "ledger.sqlite"))
    led.append("action", {"action": "x"})
    led.checkpoint()
    assert led.key_folder == str(data) and led.key_in_data_folder
    led.close()
    r = verify_path(str(data / "ledger.sqlite"))
    assert r.ok and r.key_in_data_folder and "warning: the signing key is in the data folder" in r.message()


def _cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "becomingone.cli"] + list(args), capture_output=True,
                          text=True, timeout=kw.get("timeout", 60))


def test_standalone_witness_command_cosigns_a_coordinator(tmp_path):
    """`becomingone witness` on another "machine" (its own folder and process) cosigns the
    checkpoints of a coordinator that lists it under ledger.witnesses; `ledger verify` counts
    the cosignature; `witness show --origin` gives the note for `ledger verify --against`."""
    wdir = tmp_path / "witness"
    p = _cli("witness", "init", "--data", str(wdir), "--name", "witness.test/w1")
    assert p.returncode == 0, p.stderr
    wvkey = p.stdout.strip()
    assert wvkey.startswith("witness.test/w1+")
    data = tmp_path / "cell"
    data.mkdir()
    led = Ledger(str(data / "ledger.sqlite"))
    for i in range(11):
        led.append("action", {"action": "x", "i": i})              # 12 entries
    led.checkpoint()
    led.close()
    p = _cli("witness", "trust", "--data", str(wdir), "--ledger-data", str(data))
    assert p.returncode == 0, p.stderr
    ready = tmp_path / "wready.json"
    srv = subprocess.Popen([sys.executable, "-m", "becomingone.cli", "witness", "serve", "--data",
                            str(wdir), "--listen", "127.0.0.1:0", "--ready-file", str(ready)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        end = time.time() + 30
        while not ready.exists() and time.time() < end:
            time.sleep(0.05)
        url = json.loads(ready.read_text())["url"]
        cfg = tmp_path / "becomingone.yaml"
        cfg.write_text("data_dir: %s\nledger:\n  witnesses:\n    - name: witness.test/w1\n"
                       "      url: %s\n      public_key: \"%s\"\n  witness_interval: 0.2\n"
                       % (data, url, wvkey))
        run = subprocess.Popen([sys.executable, "-m", "becomingone.cli", "run", "--config", str(cfg),
                                "--link", "udp://127.0.0.1:0", "--no-http", "--duration", "3",
                                "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
        out, err = run.communicate(timeout=60)
        assert run.returncode == 0, err
        p = _cli("ledger", "verify", "--config", str(cfg), "--json")
        res = json.loads(p.stdout)
        assert p.returncode == 0 and res["cosignatures"] == 1 and res["cosigned_size"] == 12, res
        import urllib.request
        with urllib.request.urlopen(url.rstrip("/") + "/", timeout=10) as r:
            summ = json.loads(r.read())
        assert summ["name"] == "witness.test/w1" and list(summ["heads"].values()) == [12]
        p = _cli("witness", "show", "--data", str(wdir), "--json")
        show = json.loads(p.stdout)
        origin = show["logs"][0]
        note = _cli("witness", "show", "--data", str(wdir), "--origin", origin).stdout
        from urllib.parse import quote
        with urllib.request.urlopen(url.rstrip("/") + "/checkpoint?origin=" + quote(origin),
                                    timeout=10) as r:
            assert r.read().decode() == note
        saved = tmp_path / "saved.txt"
        saved.write_text(note)
        p = _cli("ledger", "verify", "--config", str(cfg), "--against", str(saved))
        assert p.returncode == 0, p.stdout + p.stderr
        assert "consistent with the saved checkpoint" in p.stdout
    finally:
        srv.terminate()
        srv.wait(10)


def test_mesh_cells_cosign_each_other(tmp_path):
    """Two cells of a mesh (host/mesh/cosign.py): each witnesses the other's ledger with its own
    ledger key under becomingone.witness/<cell>; asks are rate limited; `ledger verify` with
    the peer's key counts the cosignature."""
    import asyncio
    from becomingone.mesh.cosign import MeshCosigning, witness_name
    la, lb = _ledger(tmp_path, 4, "a"), _ledger(tmp_path, 6, "b")
    ka, kb = la.signing_key(), lb.signing_key()
    trust = {"a": (la.origin, ka[1]), "b": (lb.origin, kb[1])}
    ma = MeshCosigning("a", la, ka[0], str(tmp_path / "wa"), trust, every=0)
    mb = MeshCosigning("b", lb, kb[0], str(tmp_path / "wb"), trust, every=0)

    def to(m):
        async def request(payload):
            return await m.handle(json.loads(payload))
        return request

    async def go():
        assert await ma.period("b", to(mb))
        assert await mb.period("a", to(ma))
        la.append("action", {"action": "more"})
        assert await ma.period("b", to(mb))               # grown: a consistency proof 5 -> 6
        assert not await ma.period("nobody", to(mb))
    asyncio.run(go())
    assert [r[:2] for r in la.cosignatures()] == [(5, witness_name("b")), (6, witness_name("b"))]
    assert [r[:2] for r in lb.cosignatures()] == [(7, witness_name("a"))]
    assert ma.status()["witnessing"] and mb.status()["witnesses"][0]["cosigned_size"] == 7
    path = la.path
    la.close()
    r = verify_path(path, key_dir=str(tmp_path / "keys"), witnesses={witness_name("b"): kb[1]})
    assert r.ok and r.to_dict()["cosignatures"] == 1 and r.to_dict()["cosigned_size"] == 6
    # rate limit: a second ask within `every` seconds is skipped
    mb.every = 3600.0
    assert not asyncio.run(mb.period("a", to(ma)))
    lb.close()
