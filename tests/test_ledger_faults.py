"""Ledger faults: flipped bytes are found and located, corrupted/locked databases give clear
errors, and SIGKILL during sustained group-commit appends loses no ACKed entry."""
import os
import random
import signal
import sqlite3
import struct
import subprocess
import sys
import time

import pytest

from becomingone.ledger import Ledger, LedgerCorrupt, LedgerLocked, verify_path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def W(i):
    return {"device": 1, "layer": "micro", "tag": "m%05d" % i, "v": i * 0.5}


def _make(tmp_path, n=300, every=64):
    p = str(tmp_path / "ledger.sqlite")
    with Ledger(p, checkpoint_every=every) as led:
        led.append_many([("witness", W(i)) for i in range(1, n)])
    return p


def _flip(b, pos, bit=1):
    b = bytearray(b)
    b[pos] ^= bit
    return bytes(b)


def _sql(p, q, args=()):
    c = sqlite3.connect(p, isolation_level=None)
    try:
        return c.execute(q, args).fetchall()
    finally:
        c.close()


@pytest.mark.parametrize("field", ["data", "hash", "prev", "ts"])
def test_flipped_byte_in_entry_is_located(tmp_path, field):
    p = _make(tmp_path)
    assert verify_path(p).ok
    i = 137
    (val,) = _sql(p, "SELECT %s FROM entries WHERE idx=?" % field, (i,))[0]
    if field == "data":
        pos = val.index("m00137") + 3
        new = val[:pos] + chr(ord(val[pos]) ^ 1) + val[pos + 1:]
    elif field == "ts":
        new = struct.unpack("<d", _flip(struct.pack("<d", val), 0))[0]
    else:
        new = _flip(val, 17, 0x40)
    _sql(p, "UPDATE entries SET %s=? WHERE idx=?" % field, (new, i))
    r = verify_path(p)
    assert not r.ok and r.first_bad["index"] == i and r.first_bad["part"] == "entry", r.message()
    assert "entry 137" in r.message()


def test_flipped_byte_in_tree_node_is_located(tmp_path):
    p = _make(tmp_path)
    level, k = 3, 9  # covers entries 72..79
    (h,) = _sql(p, "SELECT hash FROM nodes WHERE pos=? AND level=?", ((k + 1) << level, level))[0]
    _sql(p, "UPDATE nodes SET hash=? WHERE pos=? AND level=?", (_flip(h, 5), (k + 1) << level, level))
    r = verify_path(p)
    assert not r.ok and r.first_bad["part"] == "tree" and r.first_bad["index"] == 79
    assert "level 3, index 9, covering entries 72..79" in r.first_bad["what"]


def test_missing_entry_rewritten_tail_and_forged_checkpoint(tmp_path):
    p = _make(tmp_path)
    _sql(p, "DELETE FROM entries WHERE idx=200")
    r = verify_path(p)
    assert not r.ok and r.first_bad["index"] == 200 and "missing" in r.first_bad["what"]

    (tmp_path / "b").mkdir()
    (tmp_path / "c").mkdir()
    p2 = _make(tmp_path / "b")
    # truncate below a signed checkpoint: the checkpoint catches the removal
    _sql(p2, "DELETE FROM entries WHERE idx>=250")
    _sql(p2, "DELETE FROM nodes WHERE pos>250")
    r = verify_path(p2)
    assert not r.ok and r.first_bad["part"] == "checkpoint" and "beyond" in r.first_bad["what"], r.message()

    p3 = _make(tmp_path / "c")
    (note,) = _sql(p3, "SELECT note FROM checkpoints ORDER BY size LIMIT 1")[0]
    _sql(p3, "UPDATE checkpoints SET note=? WHERE note=?", (note.replace("timestamp 1", "timestamp 2"), note))
    r = verify_path(p3)
    assert not r.ok and r.first_bad["part"] == "checkpoint" and "signature" in r.first_bad["what"]


def test_flipped_byte_in_database_file_is_located(tmp_path):
    p = _make(tmp_path)  # closing the last connection folds the WAL into the file
    raw = open(p, "rb").read()
    pos = raw.index(b'"tag":"m00211"') + 10
    with open(p, "r+b") as f:
        f.seek(pos)
        f.write(bytes([raw[pos] ^ 1]))
    r = verify_path(p)
    assert not r.ok and r.first_bad["index"] == 211, r.message()


def test_corrupted_database_gives_clear_error(tmp_path):
    p = str(tmp_path / "ledger.sqlite")
    with open(p, "wb") as f:
        f.write(b"this is not sqlite" * 300)
    with pytest.raises(LedgerCorrupt) as ei:
        Ledger(p)
    assert p in str(ei.value) and "restore" in str(ei.value)
    with pytest.raises(LedgerCorrupt):
        verify_path(p)
    r = subprocess.run([sys.executable, "-m", "becomingone.cli", "ledger", "verify", "--db", p],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.startswith("becomingone: ledger database " + p)
    assert "Traceback" not in r.stderr
    other = str(tmp_path / "other.sqlite")
    _sql(other, "CREATE TABLE t(x)")
    with pytest.raises(LedgerCorrupt, match="not a ledger"):
        Ledger(other)


def test_locked_database_gives_clear_error_and_writer_recovers(tmp_path):
    p = _make(tmp_path, n=10)
    led = Ledger(p, busy_timeout=0.1)
    c = sqlite3.connect(p, isolation_level=None)
    c.execute("BEGIN IMMEDIATE")
    fut = led.submit("witness", W(1))
    with pytest.raises(LedgerLocked) as ei:
        fut.result(timeout=10)
    assert p in str(ei.value) and "locked" in str(ei.value)
    c.execute("COMMIT")
    assert led.append("witness", W(2)).index == 10  # state was not advanced by the failed batch
    led.close()
    c.execute("PRAGMA locking_mode=EXCLUSIVE")
    c.execute("BEGIN EXCLUSIVE")
    c.execute("INSERT INTO meta VALUES ('x', 'y')")
    with pytest.raises(LedgerLocked):
        Ledger(p, busy_timeout=0.1)
    c.execute("COMMIT")
    c.close()
    assert verify_path(p).ok


WRITER = r"""
import random, sys
sys.path.insert(0, %(root)r)
from becomingone.ledger import Ledger
led = Ledger(sys.argv[1], checkpoint_every=500)
rnd = random.Random(int(sys.argv[2]))
out = sys.stdout
def ack(e, err):
    if err is None:
        out.write("%%d %%s\n" %% (e.index, e.hash)); out.flush()
i = 0
while True:
    n = rnd.randint(1, 64)
    if rnd.random() < 0.5:
        es = led.append_many([("witness", {"device": 2, "layer": "micro", "n": i + k}) for k in range(n)])
        out.write("".join("%%d %%s\n" %% (e.index, e.hash) for e in es)); out.flush()
    else:
        futs = [led.submit("witness", {"device": 2, "layer": "meso", "n": i + k}, callback=ack) for k in range(n)]
        futs[-1].result()
    i += n
"""


def test_sigkill_during_appends_loses_no_acked_entry(tmp_path):
    p = str(tmp_path / "ledger.sqlite")
    script = tmp_path / "writer.py"
    script.write_text(WRITER % {"root": ROOT})
    rnd = random.Random(4)
    acked = {}
    t0 = time.monotonic()
    for rnd_i in range(20):
        proc = subprocess.Popen([sys.executable, str(script), p, str(rnd_i)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        first = proc.stdout.readline()  # the writer is up and committing
        assert first, proc.stderr.read().decode()
        time.sleep(rnd.uniform(0.0, 0.12))
        os.kill(proc.pid, signal.SIGKILL)
        rest = proc.stdout.read()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
        data = first + rest
        for line in data.split(b"\n")[:-1]:  # a torn last line has no newline: ignored
            idx, h = line.split()
            acked[int(idx)] = h.decode()
        r = verify_path(p)
        assert r.ok, "round %d: %s" % (rnd_i, r.message())
        with Ledger(p) as led:
            assert led.size > max(acked)
            for idx in rnd.sample(sorted(acked), min(200, len(acked))) + [max(acked)]:
                assert led.get(idx).hash == acked[idx], (rnd_i, idx)
    with Ledger(p) as led:  # every ACKed entry, not just a sample
        stored = {e.index: e.hash for e in led.entries()}
    assert all(stored.get(i) == h for i, h in acked.items())
    assert time.monotonic() - t0 < 60


def test_parallel_verify_matches_and_locates(tmp_path):
    """Two worker processes over two chunks of 16384 entries plus a tail; the level-15 node
    above the chunks is checked by the parent."""
    p = str(tmp_path / "ledger.sqlite")
    with Ledger(p, checkpoint_every=20000) as led:
        for j in range(0, 2 * 16384 + 99, 8192):
            led.append_many([("witness", W(i)) for i in range(j, min(j + 8192, 2 * 16384 + 99))])
        led.checkpoint()
        root = led.root()
    one, two = verify_path(p, workers=1), verify_path(p, workers=2)
    assert one.ok and two.ok and one.root == two.root == root and one.nodes == two.nodes
    assert two.checkpoints == 2
    (h,) = _sql(p, "SELECT hash FROM nodes WHERE pos=? AND level=15", (32768,))[0]
    _sql(p, "UPDATE nodes SET hash=? WHERE pos=? AND level=15", (_flip(h, 0), 32768))
    for w in (1, 2):
        r = verify_path(p, workers=w)
        assert not r.ok and r.first_bad["index"] == 32767 and "level 15" in r.first_bad["what"], r.message()
    (d,) = _sql(p, "SELECT data FROM entries WHERE idx=20000")[0]
    _sql(p, "UPDATE entries SET data=? WHERE idx=20000", (d.replace('"micro"', '"macro"'),))
    for w in (1, 2):
        r = verify_path(p, workers=w)
        assert not r.ok and r.first_bad["index"] == 20000 and r.first_bad["part"] == "entry", r.message()


def test_garbage_pages_in_database_never_give_a_traceback(tmp_path):
    p = _make(tmp_path, n=3000)
    size = os.path.getsize(p)
    with open(p, "r+b") as f:
        f.seek(size // 2)
        f.write(os.urandom(8192))
    r = subprocess.run([sys.executable, "-m", "becomingone.cli", "ledger", "verify", "--db", p],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode in (1, 2) and "Traceback" not in r.stderr, r.stderr
    assert ("FAILED at" in r.stderr) or r.stderr.startswith("becomingone: ledger database " + p)
