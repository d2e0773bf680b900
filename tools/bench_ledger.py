"""`becomingone bench ledger [--json] [--quick] [-- --entries N --verify-entries M]`

Rows (all measured in the same run, same machine, same SQLite durability: WAL + synchronous=FULL):
  becomingone  append_per_s (durable, group commit through Ledger.submit's writer thread: every
               entry's future resolves after its COMMIT), append_many_per_s (batches of 1000),
               append_single_per_s (one commit per entry), proof_per_s (inclusion proofs at random
               indices of the full tree, from stored nodes), verify_per_s (inclusion proof checks),
               consistency_per_s, and the ratios against the peers below.
  pymerkle     PyPI pymerkle 7 SqliteTree (its SQLite backend; WAL + synchronous=FULL set on its
               connection, SHA3-256, default subroot cache): append_per_s with append_entries in
               batches of 1000 (it stores leaves only; interior nodes are computed at proof time),
               proof_per_s (prove_inclusion), verify_per_s (verify_inclusion).
  sqlite-raw   append_per_s of raw executemany INSERTs of the very same entry rows (index,
               timestamp, data, previous_hash, hash) in batches of 1000: the storage floor.
  verify-1m    seconds for `ledger verify` (chain + stored tree + checkpoints) of a 1M-entry ledger
               (100k with --quick; the row says which).
"""
import os
import random
import sqlite3
import tempfile
import time

from host.ledger import Ledger, canonical, merkle, verify_path

BATCH = 1000


def add_arguments(p):
    p.add_argument("--entries", type=int, default=None, help="entries for the append/proof rows (default 100000; quick 10000)")
    p.add_argument("--verify-entries", type=int, default=None, help="entries of the verify row (default 1000000; quick 100000)")
    p.add_argument("--proofs", type=int, default=None, help="proofs generated/verified per row (default 5000; quick 1000)")


def _data(i, rnd):
    return {"device": 1 + i % 50, "layer": "micro", "seq": i, "coherence": rnd.random(),
            "stamp": "%016x" % rnd.getrandbits(64)}


def _rate(n, dt):
    return round(n / dt, 1) if dt > 0 else None


def bench_becomingone(folder, n, nproofs):
    rnd = random.Random(1)
    items = [_data(i, rnd) for i in range(n)]
    row = {"name": "becomingone", "entries": n, "hash": "sha3-256", "storage": "sqlite WAL synchronous=FULL"}
    with Ledger(os.path.join(folder, "a.sqlite")) as led:
        t = time.perf_counter()
        futs = [led.submit("witness", d) for d in items]
        futs[-1].result()
        row["append_per_s"] = _rate(n, time.perf_counter() - t)
    with Ledger(os.path.join(folder, "b.sqlite")) as led:
        t = time.perf_counter()
        for j in range(0, n, BATCH):
            led.append_many([("witness", d) for d in items[j:j + BATCH]])
        row["append_many_per_s"] = _rate(n, time.perf_counter() - t)
        m = min(200, n)
        t = time.perf_counter()
        for d in items[:m]:
            led.append("witness", d)
        row["append_single_per_s"] = _rate(m, time.perf_counter() - t)
        size = led.size
        idx = [rnd.randrange(size) for _ in range(nproofs)]
        t = time.perf_counter()
        proofs = [led.inclusion_proof(i) for i in idx]
        row["proof_per_s"] = _rate(nproofs, time.perf_counter() - t)
        decoded = [(p["index"], p["tree_size"], bytes.fromhex(p["leaf_hash"]), [bytes.fromhex(h) for h in p["path"]],
                    bytes.fromhex(p["root"])) for p in proofs]
        t = time.perf_counter()
        ok = all(merkle.verify_inclusion(*d) for d in decoded)
        row["verify_per_s"] = _rate(nproofs, time.perf_counter() - t)
        if not ok:
            raise RuntimeError("becomingone inclusion proof failed to verify")
        olds = [rnd.randint(1, size) for _ in range(nproofs // 5)]
        t = time.perf_counter()
        for o in olds:
            led.consistency_proof(o)
        row["consistency_per_s"] = _rate(len(olds), time.perf_counter() - t)
        rows = [(r.index, r.timestamp, r.data_json, bytes.fromhex(r.previous_hash), bytes.fromhex(r.hash))
                for r in led.entries(1, n + 1)]
    return row, rows


def bench_pymerkle(folder, n, nproofs):
    try:
        import pymerkle
        from pymerkle import SqliteTree, verify_inclusion
    except ImportError:
        return {"name": "pymerkle", "error": "pymerkle not installed (pip install -e .[dev])"}
    rnd = random.Random(1)
    payloads = [canonical.dumps(dict(_data(i, rnd), kind="witness")).encode() for i in range(n)]
    tree = SqliteTree(os.path.join(folder, "pm.sqlite"), algorithm="sha3_256")
    tree.con.execute("PRAGMA journal_mode=WAL")
    tree.con.execute("PRAGMA synchronous=FULL")
    row = {"name": "pymerkle", "version": getattr(pymerkle, "__version__", "7"), "entries": n, "hash": "sha3-256",
           "storage": "SqliteTree (its SQLite backend), WAL synchronous=FULL"}
    try:
        t = time.perf_counter()
        for j in range(0, n, BATCH):
            tree.append_entries(payloads[j:j + BATCH])
        row["append_per_s"] = _rate(n, time.perf_counter() - t)
        size = tree.get_size()
        idx = [1 + rnd.randrange(size) for _ in range(nproofs)]
        t = time.perf_counter()
        proofs = [tree.prove_inclusion(i) for i in idx]
        row["proof_per_s"] = _rate(nproofs, time.perf_counter() - t)
        root = tree.get_state()
        bases = [tree.get_leaf(i) for i in idx]
        t = time.perf_counter()
        for b, p in zip(bases, proofs):
            verify_inclusion(b, root, p)
        row["verify_per_s"] = _rate(nproofs, time.perf_counter() - t)
    finally:
        tree.close()
    return row


def bench_sqlite_raw(folder, rows):
    con = sqlite3.connect(os.path.join(folder, "raw.sqlite"), isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=FULL")
    con.execute("CREATE TABLE entries(idx INTEGER PRIMARY KEY, ts REAL NOT NULL, data TEXT NOT NULL, "
                "prev BLOB NOT NULL, hash BLOB NOT NULL)")
    t = time.perf_counter()
    for j in range(0, len(rows), BATCH):
        con.execute("BEGIN")
        con.executemany("INSERT INTO entries VALUES (?,?,?,?,?)", rows[j:j + BATCH])
        con.execute("COMMIT")
    dt = time.perf_counter() - t
    con.close()
    return {"name": "sqlite-raw", "entries": len(rows), "batch": BATCH, "storage": "sqlite WAL synchronous=FULL",
            "append_per_s": _rate(len(rows), dt)}


def bench_verify(folder, n, quick):
    path = os.path.join(folder, "v.sqlite")
    rnd = random.Random(2)
    t = time.perf_counter()
    with Ledger(path, checkpoint_every=max(1, n // 10)) as led:
        i = 0
        while led.size < n:
            k = min(10000, n - led.size)
            led.append_many([("witness", _data(i + j, rnd)) for j in range(k)])
            i += k
    build = time.perf_counter() - t
    res = verify_path(path)
    if not res.ok:
        raise RuntimeError(res.message())
    return {"name": "verify-1m", "entries": res.size, "seconds": round(res.seconds, 3),
            "verify_per_s": _rate(res.size, res.seconds), "checkpoints": res.checkpoints,
            "build_seconds": round(build, 2), "db_mb": round(os.path.getsize(path) / 1e6, 1),
            "note": ("--quick: 100k entries, not 1M" if quick and n < 1000000 else "")}


def collect(args):
    quick = getattr(args, "quick", False)
    n = args.entries or (10000 if quick else 100000)
    nv = args.verify_entries or (100000 if quick else 1000000)
    nproofs = args.proofs or (1000 if quick else 5000)
    with tempfile.TemporaryDirectory(prefix="bench_ledger_") as folder:
        bo, rows = bench_becomingone(folder, n, nproofs)
        pm = bench_pymerkle(folder, n, nproofs)
        raw = bench_sqlite_raw(folder, rows)
        ver = bench_verify(folder, nv, quick)
    if "proof_per_s" in pm:
        bo["proof_x_pymerkle"] = round(bo["proof_per_s"] / pm["proof_per_s"], 2)
        bo["verify_x_pymerkle"] = round(bo["verify_per_s"] / pm["verify_per_s"], 2)
        bo["append_x_pymerkle"] = round(bo["append_per_s"] / pm["append_per_s"], 3)
    bo["append_x_sqlite_raw"] = round(bo["append_per_s"] / raw["append_per_s"], 3)
    bo["targets"] = {"append_per_s>=50000": bo["append_per_s"] >= 50000,
                     "proof>=10x_pymerkle": bo.get("proof_x_pymerkle", 0) >= 10,
                     "verify_1m<=20s": (ver["seconds"] * 1000000 / max(1, ver["entries"])) <= 20}
    return [bo, pm, raw, ver]
