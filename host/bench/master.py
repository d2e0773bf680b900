"""Master window queries: O(1) prefix-sum rings vs a naive recompute over the stored partials.

Rows (collect(args), included by the ingest benchmark):
  master  queries_per_s (one window of one device per call, Master.window),
          batch_queries_per_s (every window of every device per Master.query_all call),
          ingest_rows_per_s (Master.ingest_batch, 4096-row batches of mixed devices),
          devices, windows, beats_per_device, ring_kb_per_device, speedup_vs_naive
  naive   queries_per_s: the same windows recomputed by summing the stored per-beat partials
          (numpy over the int32 arrays, int64 accumulator)
  integration  cycle_ms: one host/core/integration.py cycle (sync layer, meso rows, snapshots into a
          temporary SQLite memory) for `--cycle-devices` devices (default 100), mean and max of 40
Every naive result is compared with the Master's exact integer sums (a mismatch raises).
"""
import shutil
import tempfile
import time

import numpy as np

from becomingone.config import load_config
from becomingone.core.integration import Integration
from becomingone.core.master import Master

PERIOD_US = 4210


def add_arguments(p):
    p.add_argument("--devices", type=int, default=8, help="devices (default 8)")
    p.add_argument("--seconds", type=float, default=3700.0, help="stream length per device (default 3700 s)")
    p.add_argument("--queries", type=int, default=2000, help="timed single-window queries (default 2000)")
    p.add_argument("--cycle-devices", type=int, default=100, help="devices in the integration cycle row")


def _stream(rng, nbeats):
    # int32 storage (the generator stays below 2^28): half the naive store's memory
    parts = np.empty((nbeats, 5), dtype=np.int32)
    parts[:, 0:2] = rng.integers(-2 ** 28, 2 ** 28, (nbeats, 2))
    parts[:, 2:4] = rng.integers(0, 2 ** 28, (nbeats, 2))
    parts[:, 4] = 4
    return parts


def collect(args):
    quick = getattr(args, "quick", False)
    D = 2 if quick else int(getattr(args, "devices", 8))
    seconds = 130.0 if quick else float(getattr(args, "seconds", 3700.0))
    nq = 200 if quick else int(getattr(args, "queries", 2000))
    windows = (10.0, 60.0, 120.0) if quick else (10.0, 60.0, 600.0, 3600.0)
    tau_max = windows[-1]
    nb = int(seconds / (PERIOD_US * 1e-6))
    rng = np.random.default_rng(1)
    m = Master(windows=windows, tau_max=tau_max, beat_s=PERIOD_US * 1e-6)
    store = []
    for d in range(D):
        m.open_stream(d + 1, 1, 1000, PERIOD_US)
        store.append(_stream(rng, nb))
    # ingest: interleave devices in batches of 4096 rows, as the protocol's batch decoder would
    per = max(1, 4096 // D)
    t0 = time.perf_counter()
    for a in range(0, nb, per):
        b = min(nb, a + per)
        k = b - a
        idx = np.repeat(np.arange(D, dtype=np.int64), k)
        beats = np.tile(np.arange(a, b, dtype=np.int64), D)
        p = np.concatenate([s[a:b] for s in store])
        m.ingest_batch(idx, beats, p[:, 0], p[:, 1], p[:, 2], p[:, 3], p[:, 4])
    t_ingest = time.perf_counter() - t0
    # the same queries for both: (device, window) pairs
    qs = [(int(rng.integers(0, D)), windows[int(rng.integers(0, len(windows)))]) for _ in range(nq)]
    t0 = time.perf_counter()
    res = [m.window(d + 1, w) for d, w in qs]
    t_master = time.perf_counter() - t0
    reps = max(1, nq // (D * len(windows)))
    t0 = time.perf_counter()
    for _ in range(reps):
        m.query_all()
    t_batch = time.perf_counter() - t0
    # naive: sum the stored partials over the same beat ranges (stream starts at beat 0)
    t0 = time.perf_counter()
    naive = [store[d][r["first_beat"]:r["last_beat"] + 1].sum(axis=0, dtype=np.int64)
             for (d, _w), r in zip(qs, res)]
    t_naive = time.perf_counter() - t0
    for r, s in zip(res, naive):
        if tuple(int(x) for x in s) != r["sums"][:5]:
            raise AssertionError("Master and naive sums differ: %r vs %r" % (r["sums"], s))
    del store
    cyc = _cycle(10 if quick else int(getattr(args, "cycle_devices", 100)), 10 if quick else 40)
    mq = nq / t_master
    nqps = nq / t_naive
    return [
        dict(name="master", queries_per_s=round(mq, 1),
             batch_queries_per_s=round(reps * D * len(windows) / t_batch, 1),
             ingest_rows_per_s=round(D * nb / t_ingest, 1), devices=D, windows=list(windows),
             beats_per_device=nb, ring_kb_per_device=round(m.ring_bytes() / 1024.0, 1),
             speedup_vs_naive=round(mq / nqps, 2)),
        dict(name="naive", queries_per_s=round(nqps, 1), devices=D,
             windows=list(windows), beats_per_device=nb),
        cyc,
    ]


def _cycle(D, cycles):
    """Integration cycles at the manifest's witness intervals, every cycle due (0.1 s apart)."""
    d = tempfile.mkdtemp(prefix="bench-master-")
    try:
        cfg = load_config(overrides={"data_dir": d})
        m = Master.from_config(cfg)
        rng = np.random.default_rng(2)
        for k in range(D):
            m.open_stream(k + 1, 1, 1000, PERIOD_US)
        n = 2400                                      # 10 s of beats
        idx = np.repeat(np.arange(D, dtype=np.int64), n)
        beats = np.tile(np.arange(n, dtype=np.int64), D)
        p = rng.integers(0, 1000, (D * n, 4))
        m.ingest_batch(idx, beats, p[:, 0], p[:, 1], p[:, 2], p[:, 3], np.full(D * n, 4))
        core = Integration(cfg, m, ledger_submit=lambda kind, data: None)
        ts = []
        for c in range(cycles):
            t0 = time.perf_counter()
            core.tick(now=1000.0 + 0.1 * c, health={"bench": c})
            ts.append(time.perf_counter() - t0)
        core.close()
        return dict(name="integration", devices=D, cycle_ms=round(1e3 * float(np.mean(ts)), 2),
                    cycle_ms_max=round(1e3 * float(np.max(ts)), 2))
    finally:
        shutil.rmtree(d, ignore_errors=True)
