"""Temporal-signature memory: snapshots, coherence history, witness logs, mesh states; range
queries, reconstruction at a time t, similarity of signatures (C per window and threat, a distance
that keeps magnitudes and ignores phase), retention, bad files, the format 2 -> 3 migration."""
import cmath
import math
import os
import sqlite3
import time

import numpy as np
import pytest

from becomingone.config import load_config
from becomingone.core.master import Master
from becomingone.memory.store import Memory, MemoryStoreError


def wins(mags, phase=0.0, last_beat=100):
    return [dict(window=w, T_hat=cmath.rect(m, phase), C=m * m, coverage=1.0, beats=10, seconds=0.04,
                 last_beat=last_beat) for w, m in zip((10.0, 60.0, 600.0), mags)]


def test_snapshot_query_reconstruct(tmp_path):
    mem = Memory(str(tmp_path / "m.sqlite"))
    for k in range(10):
        mem.snapshot(1, 100.0 + k, wins((0.1 * k, 0.2, 0.3), last_beat=k), boot_id=5)
        mem.coherence(1, 100.0 + k, "sync", 0.01 * k, window=10.0, T_hat=0.1j * k, delta_phase=0.5,
                      flags=1, extra={"note": "x"})
        mem.coherence(1, 100.0 + k, "emissary", 0.02 * k, window=1.0)
    mem.snapshot(2, 103.0, wins((0.9, 0.9, 0.9)))
    rows = mem.query("phase_snapshots", device_id=1, since=102, until=104)
    assert [r["t"] for r in rows] == [102.0] * 3 + [103.0] * 3 + [104.0] * 3
    assert rows[0]["T_hat"] == pytest.approx([0.2, 0.0])
    st = mem.reconstruct(1, 104.5)
    assert st["snapshot_t"] == 104.0 and st["age_s"] == pytest.approx(0.5) and st["boot_id"] == 5
    assert [w["window"] for w in st["windows"]] == [10.0, 60.0, 600.0]
    assert st["windows"][0]["C"] == pytest.approx(0.16) and st["windows"][0]["last_beat"] == 4
    coh = {c["kind"]: c for c in st["coherence"]}
    assert coh["sync"]["C"] == pytest.approx(0.04) and coh["sync"]["extra"] == {"note": "x"}
    assert coh["sync"]["T_hat"] == pytest.approx([0.0, 0.4]) and coh["sync"]["delta_phase"] == 0.5
    assert coh["sync"]["flags"] == 1 and coh["emissary"]["T_hat"] is None
    assert coh["emissary"]["t"] == 104.0
    assert mem.reconstruct(1, 99.0) is None
    assert mem.reconstruct(1, 1e9)["snapshot_t"] == 109.0
    mem.close()


def test_similarity_keeps_magnitude_and_ignores_phase(tmp_path):
    mem = Memory(str(tmp_path / "m.sqlite"))
    coherent = (0.99, 0.98, 0.97)
    mem.snapshot(1, 1.0, wins(coherent, phase=0.0), threat=0.01)
    mem.snapshot(2, 1.0, wins(coherent, phase=2.5), threat=0.01)         # another stream's phase
    mem.snapshot(3, 1.0, wins((0.05, 0.02, 0.01), phase=0.0), threat=0.01)   # noise, same phase
    mem.snapshot(4, 1.0, wins(coherent, phase=0.0), threat=0.95)         # coherent, but faulty
    mem.snapshot(5, 1.0, [dict(window=10.0, T_hat=1 + 0j)])             # other layout: skipped
    r = mem.similar(device_id=1, top=10)
    got = {x["device_id"]: x["similarity"] for x in r}
    assert got[2] == pytest.approx(1.0)                        # the phase origin does not count
    assert 5 not in got
    # magnitude counts: C (0.98 vs 0.03: RMS of the C differences) with weight 1/2
    dC = np.sqrt(np.mean((np.array(coherent) ** 2 - np.array((0.05, 0.02, 0.01)) ** 2) ** 2))
    assert got[3] == pytest.approx(1 - np.sqrt(dC ** 2 / 2))
    assert got[4] == pytest.approx(1 - np.sqrt(0.94 ** 2 / 2))
    assert [x["device_id"] for x in r] == [2, 4, 3]
    # a window that does not exist yet is unknown, not zero: it drops out of the distance
    mem.snapshot(6, 2.0, [dict(w, ready=(k == 0)) for k, w in enumerate(wins(coherent))], threat=0.01)
    r = mem.similar(device_id=6, top=1)
    assert r[0]["device_id"] in (1, 2) and r[0]["similarity"] == pytest.approx(1.0)
    # windows that hold nothing (a dead sensor, a boot) against windows that hold a steady
    # machine: as far apart as the coherence block can be, even at the same threat
    mem.snapshot(7, 3.0, [dict(w, ready=False) for w in wins(coherent)], threat=0.01)
    got = {x["device_id"]: x["similarity"] for x in mem.similar(device_id=7, top=10)}
    assert got[1] == pytest.approx(1 - np.sqrt(0.5)) and got[3] == pytest.approx(1 - np.sqrt(0.5))
    # a vector query: nan = unknown
    r = mem.similar(vector=[0.0025, "nan", "nan", 0.01], top=1)
    assert r[0]["device_id"] == 3
    with pytest.raises(Exception, match="known component"):
        mem.similar(vector=[float("nan")] * 4)
    with pytest.raises(Exception, match="no signature"):
        mem.similar(device_id=99)


def _brute(q, m, ncoh):
    """An independent statement of memory/signature.py's similarity, row by row."""
    out = []
    for row in m:
        parts = []
        for cols in (range(ncoh), range(ncoh, len(q))):
            qk = any(np.isfinite(q[i]) for i in cols)
            mk = any(np.isfinite(row[i]) for i in cols)
            d = [(row[i] - q[i]) ** 2 for i in cols if np.isfinite(row[i]) and np.isfinite(q[i])]
            if qk != mk:
                parts.append(1.0)          # known in one, empty in the other: as far as can be
            elif d:
                parts.append(sum(d) / len(d))
        out.append(1 - np.sqrt(sum(parts) / len(parts)) if parts else np.nan)
    return np.array(out)


def test_similarity_matches_brute_force(tmp_path):
    rng = np.random.default_rng(4)
    mem = Memory(str(tmp_path / "m.sqlite"))
    C = rng.uniform(size=(300, 3))
    C[rng.uniform(size=C.shape) < 0.2] = np.nan                        # windows not filled yet
    C[::17] = np.nan                                                   # no window at all
    thr = rng.uniform(size=300)
    thr[rng.uniform(size=300) < 0.1] = np.nan                          # threat unknown
    for k in range(300):
        mem.snapshot(k % 7, float(k), [dict(window=float(w + 1), T_hat=np.sqrt(C[k, w]) if np.isfinite(C[k, w]) else 0j,
                                            C=C[k, w], ready=bool(np.isfinite(C[k, w])))
                                       for w in range(3)],
                     threat=None if np.isnan(thr[k]) else thr[k])
    mem.SIMILAR_CHUNK = 37                         # several chunks: top-k merged across them
    q = [0.5, np.nan, 0.9, 0.2]
    r = mem.similar(vector=q, top=5)
    sim = _brute(q, np.column_stack([C, thr]), 3)
    best = np.argsort(-np.nan_to_num(sim, nan=-1))[:5]
    assert [x["t"] for x in r] == [float(b) for b in best]
    assert r[0]["similarity"] == pytest.approx(sim[best[0]])


def test_witness_and_mesh_and_toggles(tmp_path):
    mem = Memory(str(tmp_path / "m.sqlite"), enabled=("witness_logs", "mesh_sync"))
    assert mem.snapshot(1, 1.0, wins((0.1, 0.1, 0.1))) is False
    assert mem.coherence(1, 1.0, "sync", 0.5) is False
    mem.witness(dict(layer="macro", kind="collapse", t=5.0, device_id=3, T_sync=[0.9, 0.1], C=float("nan")))
    mem.witness(dict(layer="meta", kind="health", t=6.0, lag_ms=3.2))
    mem.mesh_state(7.0, "cell-b:18789", 0.3 + 0.4j, weight=0.5, extra={"beats": 10})
    w = mem.query("witness_log", layer="macro")
    assert len(w) == 1 and w[0]["data"]["T_sync"] == [0.9, 0.1] and w[0]["data"]["C"] is None
    assert mem.query("witness_log", kind="health")[0]["t"] == 6.0
    assert mem.query("mesh_sync")[0]["T_hat"] == [0.3, 0.4]
    assert mem.counts()["phase_snapshots"] == 0
    with pytest.raises(Exception, match="allowed"):
        mem.query("nope")


def test_retention_and_max_rows(tmp_path):
    mem = Memory(str(tmp_path / "m.sqlite"), retention=100.0, max_rows=1000, flush_rows=50)
    for k in range(3000):
        mem.coherence(1, float(k), "sync", 0.1)
    mem.flush()
    mem.prune(now=3000.0)
    rows = mem.query("coherence_history", limit=10 ** 6)
    assert len(rows) <= 100 and rows[0]["t"] >= 2900.0 and rows[-1]["t"] == 2999.0
    mem2 = Memory(str(tmp_path / "n.sqlite"), retention=1e9, max_rows=1000, flush_rows=100)
    for k in range(5000):
        mem2.coherence(1, float(k), "sync", 0.1)
    mem2.flush()
    mem2.prune()
    assert mem2.counts()["coherence_history"] <= 1000
    assert mem2.query("coherence_history", limit=1)[0]["t"] == 4999.0


def test_bad_databases(tmp_path):
    with pytest.raises(MemoryStoreError, match="no memory database"):
        Memory.open_readonly(str(tmp_path / "missing.sqlite"))
    p = tmp_path / "junk.sqlite"
    p.write_bytes(b"this is not a database" * 100)
    with pytest.raises(MemoryStoreError, match="cannot be used"):
        Memory(str(p))
    good = str(tmp_path / "g.sqlite")
    Memory(good).close()
    db = sqlite3.connect(good)
    db.execute("UPDATE meta SET value='99' WHERE key='format'")
    db.commit()
    db.close()
    with pytest.raises(MemoryStoreError, match="format 99"):
        Memory(good)


def test_locked_database_gives_clear_error(tmp_path):
    p = str(tmp_path / "l.sqlite")
    Memory(p).close()
    other = sqlite3.connect(p)
    other.execute("PRAGMA journal_mode=DELETE")
    other.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(MemoryStoreError, match="locked"):
            m = Memory(p, flush_rows=1, timeout=0.2)
            m.coherence(1, 1.0, "sync", 0.5)
    finally:
        other.rollback()
        other.close()


def test_from_config_and_master_snapshots(tmp_path):
    cfg = load_config(overrides={"data_dir": str(tmp_path), "memory.coherence_history": False})
    mem = Memory.from_config(cfg)
    assert mem.path == os.path.join(str(tmp_path), "memory.sqlite")
    assert "coherence_history" not in mem.enabled
    m = Master.from_config(cfg)
    i = m.open_stream(4, 2, 1000, 4210)
    m.ingest_batch(i, np.arange(100), np.full(100, 50), np.zeros(100), np.full(100, 100),
                   np.full(100, 100), np.full(100, 4))
    m.open_stream(5, 2, 1000, 4210)                 # no data yet: not snapshotted
    assert mem.snapshot_many(10.0, m.query_all(), boot_ids=m.boot, threat={4: 0.5}) == 1
    st = mem.reconstruct(4, 10.0)
    # 100 beats of 4 samples at 1 kHz: 0.4 s held, so no window exists yet (C unknown)
    assert len(st["windows"]) == 4 and st["windows"][0]["C"] is None
    assert st["windows"][0]["fill"] == pytest.approx(0.04) and st["windows"][0]["T_hat"] is None
    m.ingest_batch(i, np.arange(100, 2600), np.full(2500, 50), np.zeros(2500), np.full(2500, 100),
                   np.full(2500, 100), np.full(2500, 4))
    assert mem.snapshot_many(11.0, m.query_all(), boot_ids=m.boot) == 1
    st = mem.reconstruct(4, 11.0)
    # 10 s = 2375 beats of 4 ms of samples each: 9.5 s held, so the window exists
    assert st["windows"][0]["C"] == pytest.approx(0.25)
    assert st["windows"][0]["fill"] == pytest.approx(0.95, abs=1e-3)
    assert st["windows"][1]["C"] is None                      # the 60 s window: 10.4 s held
    sig = mem.query("signatures", device_id=4)
    assert sig[0]["layout"] == "C@10s,C@60s,C@600s,C@3600s,threat"
    assert sig[0]["vec"] == [None, None, None, None, 0.5]
    assert sig[1]["vec"][0] == pytest.approx(0.25) and sig[1]["vec"][1:] == [None] * 4
    mem.close()


def test_format_2_database_is_migrated(tmp_path):
    p = str(tmp_path / "old.sqlite")
    db = sqlite3.connect(p)
    db.executescript("""
        CREATE TABLE phase_snapshots (id INTEGER PRIMARY KEY, t REAL NOT NULL, device_id INTEGER NOT NULL,
          boot_id INTEGER, window REAL NOT NULL, t_re REAL NOT NULL, t_im REAL NOT NULL, c REAL NOT NULL,
          coverage REAL, beats INTEGER, seconds REAL, last_beat INTEGER);
        CREATE INDEX phase_snapshots_dt ON phase_snapshots(device_id, t);
        CREATE TABLE signatures (id INTEGER PRIMARY KEY, t REAL NOT NULL, device_id INTEGER NOT NULL,
          boot_id INTEGER, dim INTEGER NOT NULL, vec BLOB NOT NULL);
        CREATE TABLE coherence_history (id INTEGER PRIMARY KEY, t REAL NOT NULL, device_id INTEGER NOT NULL,
          boot_id INTEGER, kind TEXT NOT NULL, window REAL, c REAL NOT NULL, coverage REAL, t_re REAL,
          t_im REAL, delta_phase REAL, flags INTEGER, device_c REAL, extra TEXT);
        CREATE INDEX coherence_history_dt ON coherence_history(device_id, t);
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO meta VALUES ('format', '2');
        INSERT INTO phase_snapshots VALUES (1, 5.0, 1, 2, 10.0, 0.9, 0.0, 0.81, 1.0, 10, 10.0, 99);
        INSERT INTO coherence_history VALUES (1, 5.0, 1, 2, 'sync', 10.0, 0.81, NULL, 0.9, 0.0, 0.0, 3,
          NULL, NULL);
        INSERT INTO signatures VALUES (1, 5.0, 1, 2, 2, x'00');
    """)
    db.close()
    with pytest.raises(MemoryStoreError, match="format 2.*migrates"):
        Memory.open_readonly(p)
    mem = Memory(p)
    st = mem.reconstruct(1, 6.0)
    assert st["windows"][0]["C"] == pytest.approx(0.81) and st["windows"][0]["fill"] is None
    assert st["coherence"][0]["C"] == pytest.approx(0.81)
    assert mem.counts()["signatures"] == 0                    # old signatures meant something else
    mem.coherence(1, 7.0, "master", None, window=60.0, fill=0.3)
    assert mem.query("coherence_history", kind="master")[0]["c"] is None
    mem.close()
    Memory.open_readonly(p).close()


def test_cli_query_reconstruct_similar(tmp_path, capsys):
    import json as _json
    from becomingone.cli import main
    from becomingone.util.times import parse_time
    mem = Memory(str(tmp_path / "memory.sqlite"))
    for k in range(5):
        mem.snapshot(1, 1000.0 + k, wins((0.5, 0.4, 0.3), phase=0.1 * k, last_beat=k), boot_id=2)
        mem.snapshot(2, 1000.0 + k, wins((0.5, 0.4, 0.3), phase=2.0), boot_id=2)
    mem.witness(dict(layer="macro", kind="collapse", t=1002.5, device_id=1, C_sync=0.97))
    mem.close()
    d = str(tmp_path)
    assert main(["memory", "query", "--data", d, "--device", "1", "--since", "1001", "--until",
                 "1002", "--json"]) == 0
    out = _json.loads(capsys.readouterr().out)
    assert out["table"] == "phase_snapshots" and len(out["rows"]) == 6
    assert main(["memory", "query", "--data", d, "--table", "witness", "--layer", "macro"]) == 0
    assert "collapse" in capsys.readouterr().out
    assert main(["memory", "reconstruct", "--data", d, "--device", "1", "--at", "1003.5", "--json"]) == 0
    st = _json.loads(capsys.readouterr().out)
    assert st["snapshot_t"] == 1003.0 and len(st["windows"]) == 3
    assert main(["memory", "reconstruct", "--data", d, "--device", "1", "--at", "1003.5"]) == 0
    assert "age 0.500 s" in capsys.readouterr().out
    assert main(["memory", "similar", "--data", d, "--device", "1", "--at", "1000", "--top", "3",
                 "--json"]) == 0
    res = _json.loads(capsys.readouterr().out)["results"]
    # device 2 has device 1's magnitudes at another phase: the same state
    assert len(res) == 3 and all(r["similarity"] == pytest.approx(1.0) for r in res)
    assert main(["memory", "similar", "--data", d, "--device", "1", "--other-devices", "--json"]) == 0
    assert {r["device_id"] for r in _json.loads(capsys.readouterr().out)["results"]} == {2}
    assert main(["memory", "similar", "--data", d, "--vector", "0.25,0.16,nan,nan", "--json"]) == 0
    assert len(_json.loads(capsys.readouterr().out)["results"]) == 5
    # user mistakes: message and exit 2, no traceback
    assert main(["memory", "reconstruct", "--data", d, "--device", "9"]) == 2
    assert "nothing in memory" in capsys.readouterr().err
    assert main(["memory", "query", "--data", str(tmp_path / "nope")]) == 2
    assert "no memory database" in capsys.readouterr().err
    assert main(["memory", "query", "--data", d, "--since", "yesterday-ish"]) == 2
    assert "bad time" in capsys.readouterr().err
    assert main(["memory", "query", "--data", d, "--table", "bogus"]) == 2
    assert "allowed" in capsys.readouterr().err
    assert parse_time("-10m", now=1000.0) == 400.0
    assert parse_time("1970-01-01T00:01:00Z") == 60.0


def test_prune_by_age_binary_search_with_gaps(tmp_path):
    mem = Memory(str(tmp_path / "m.sqlite"), retention=100.0, max_rows=10 ** 6, flush_rows=10 ** 6)
    for k in range(2000):
        mem.witness(dict(layer="meta", kind="health", t=float(k)))
    mem.flush()
    mem._db.execute("DELETE FROM witness_log WHERE id % 3 = 0")     # holes in the ids
    mem._db.commit()
    for cut in (0.5, 1.0, 17.0, 1000.2, 1999.0, 5000.0):
        want = mem._db.execute("SELECT max(id) FROM witness_log WHERE t < ?", (cut,)).fetchone()[0]
        assert mem._id_before("witness_log", cut) == want, cut
    mem.prune(now=1500.0)
    ts = [r["t"] for r in mem.query("witness_log", limit=10 ** 6)]
    assert min(ts) >= 1400.0 and max(ts) == 1999.0


def test_time_range_query_without_device_uses_id_bounds(tmp_path):
    mem = Memory(str(tmp_path / "m.sqlite"))
    for k in range(500):
        mem.witness(dict(layer="meta", kind="health", t=float(k)))
    rows = mem.query("witness_log", since=100, until=104.0)
    assert [r["t"] for r in rows] == [100.0, 101.0, 102.0, 103.0, 104.0]
    assert mem.query("witness_log", until=-1) == []
    assert [r["t"] for r in mem.query("witness_log", since=497)] == [497.0, 498.0, 499.0]
    assert [r["t"] for r in mem.query("witness_log", limit=2)] == [498.0, 499.0]


def _sync_rows(n, t0=1.0, dev=1):
    return [(t0 + i, dev, 7, "sync", None, 0.5, None, None, None, None, None, None, None, None)
            for i in range(n)]


def test_writer_thread_commits_while_the_caller_goes_on(tmp_path):
    """With start_writer (the coordinator's store) a write never waits for SQLite: here the
    file is write-locked by another connection for 0.6 s (a long commit or a WAL checkpoint
    elsewhere); rows past flush_rows return at once and the writer thread commits them when
    the lock goes, in the order they were added."""
    p = str(tmp_path / "w.sqlite")
    Memory(p).close()
    m = Memory(p, flush_rows=10, timeout=5.0).start_writer()
    other = sqlite3.connect(p)
    other.execute("BEGIN IMMEDIATE")
    try:
        t = time.monotonic()
        for k in range(5):
            m.coherence_rows(_sync_rows(20, t0=1.0 + 20 * k))
        took = time.monotonic() - t
        time.sleep(0.6)
    finally:
        other.rollback()
        other.close()
    assert took < 0.3, took
    m.close()
    m = Memory(p)
    rows = m.query("coherence_history", limit=1000)
    assert [r["t"] for r in rows] == [1.0 + i for i in range(100)]
    m.close()


def test_writer_thread_keeps_rows_it_could_not_write(tmp_path):
    """A commit that fails (the file locked beyond the busy timeout) is counted (write_errors,
    last_error) and its rows stay first in line: the next commit writes them, once, in order."""
    p = str(tmp_path / "e.sqlite")
    Memory(p).close()
    m = Memory(p, flush_rows=10, flush_s=0.1, timeout=0.1).start_writer()
    other = sqlite3.connect(p)
    other.execute("BEGIN IMMEDIATE")
    try:
        m.coherence_rows(_sync_rows(30))
        deadline = time.monotonic() + 5.0
        while not m.write_errors and time.monotonic() < deadline:
            time.sleep(0.02)
        m.coherence_rows(_sync_rows(30, t0=31.0))
        assert m.write_errors >= 1 and "locked" in m.last_error
        assert m.pending_rows == 60
    finally:
        other.rollback()
        other.close()
    deadline = time.monotonic() + 5.0
    while m.pending_rows and time.monotonic() < deadline:
        time.sleep(0.05)
    assert m.pending_rows == 0
    assert [r["t"] for r in m.query("coherence_history", limit=1000)] == [1.0 + i for i in range(60)]
    m.close()
