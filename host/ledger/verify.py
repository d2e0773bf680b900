"""Full verification of a stored ledger: chain, stored Merkle tree, checkpoints.

Streams the entries and the stored nodes once each (in the same read snapshot) and stops at
the first problem, naming the entry index and what is wrong."""

import json
import operator
import os
import selectors
import subprocess
import sys
import time

from becomingone.ledger import canonical, checkpoint as ckpt, hashing, merkle
from becomingone.ledger.db import LedgerError, connect, format_of, guarded

_loads = json.loads
d_origin_prefix = "becomingone.ledger"
_enc = canonical.encode


class VerifyResult:
    """The outcome of verifying a ledger file: ok, first_bad {index, part, what}, size,
    root, counts; message() and to_dict() for the CLI and the API. Raises nothing."""
    def __init__(self, path):
        self.path = path
        self.ok = True
        self.size = 0
        self.root = None
        self.checkpoints = 0
        self.nodes = 0
        self.first_bad = None  # {"index": i or None, "part": "entry"|"tree"|"checkpoint", "what": str}
        self.seconds = 0.0
        self.genesis_hash = None
        self.key_source = None        # where the checkpoint public key came from
        self.key_in_data_folder = False
        self.cosigners = {}           # trusted witness name -> largest size it cosigned
        self.unverified_cosignatures = 0
        self.against = None           # --against: {"size", "root", "ok", "what", "cosigners"}

    def fail(self, index, part, what):
        self.ok = False
        self.first_bad = {"index": index, "part": part, "what": what}
        return self

    def to_dict(self):
        return {"path": self.path, "ok": self.ok, "size": self.size,
                "root": self.root.hex() if self.root else None, "nodes": self.nodes,
                "checkpoints": self.checkpoints, "first_bad": self.first_bad,
                "seconds": round(self.seconds, 3), "key_source": self.key_source,
                "key_in_data_folder": self.key_in_data_folder,
                "cosignatures": len(self.cosigners), "cosigners": dict(self.cosigners),
                "cosigned_size": max(self.cosigners.values()) if self.cosigners else 0,
                "unverified_cosignatures": self.unverified_cosignatures, "against": self.against}

    def message(self):
        if self.ok:
            out = ("ledger %s OK: %d entries, %d tree nodes, %d checkpoints verified, root %s (%.2f s)"
                   % (self.path, self.size, self.nodes, self.checkpoints, self.root.hex(), self.seconds))
            if self.cosigners:
                out += ("\n%d independent cosignature(s) cover the tree up to size %d: %s"
                        % (len(self.cosigners), max(self.cosigners.values()),
                           ", ".join("%s (size %d)" % kv for kv in sorted(self.cosigners.items()))))
            else:
                out += ("\n0 independent cosignatures: no witness configured or none has cosigned "
                        "(docs/LEDGER.md §11)")
            if self.unverified_cosignatures:
                out += "\n%d stored cosignature(s) by witnesses not configured here (not counted)" \
                    % self.unverified_cosignatures
            if self.against is not None:
                out += "\nconsistent with the saved checkpoint of size %d (root %s)" % (
                    self.against["size"], self.against["root"])
            if self.key_in_data_folder:
                out += ("\nwarning: the signing key is in the data folder: whoever can edit the ledger "
                        "can re-sign it (move it out: docs/LEDGER.md §12)")
            elif self.key_source and self.key_source.startswith("data folder"):
                out += "\nnote: public key taken from the data folder's copy (%s)" % self.key_source
            return out
        fb = self.first_bad
        where = "entry %d" % fb["index"] if fb["index"] is not None else fb["part"]
        return "ledger %s FAILED at %s: %s" % (self.path, where, fb["what"])


def _node_what(level, k, what):
    a, b = k << level, ((k + 1) << level) - 1
    return "stored tree node (level %d, index %d, covering entries %d..%d) %s" % (level, k, a, b, what)


def verify_path(path, key_folder=None, progress=None, deep=False, busy_timeout=5.0, workers=None,
                key_dir=None, witnesses=None, against=None):
    """Verify the ledger at `path`. deep=True also re-parses every entry's data and checks it
    is canonical JSON (slower; the export verifier always does this). workers: processes for
    large ledgers (default: min(cpu count, 4) when there are >= 8 chunks of 16384 entries;
    1 = one pass in this process under one read snapshot). progress(done, total): entries
    checked so far (never decreasing) of the ledger's size, after each chunk of 16384.
    key_folder: where the checkpoint key is (default: resolved as the Ledger does, from key_dir;
    the data folder's copy of the public key when the key folder has none). witnesses: {name:
    Ed25519PublicKey} of trusted witnesses: their stored cosignatures are checked and counted.
    against: the text of a saved checkpoint: the ledger must extend it (same root at its size)."""
    t0 = time.perf_counter()
    res = VerifyResult(os.path.abspath(path))
    con = connect(path, readonly=True, busy_timeout=busy_timeout)
    extra = None
    if against is not None:
        try:
            extra = ckpt.parse_note(against)
        except ckpt.CheckpointError as e:
            con.close()
            res.seconds = time.perf_counter() - t0
            return res.fail(None, "against", "the saved checkpoint is not a checkpoint note: %s" % e)
    try:
        with guarded(path):
            con.execute("BEGIN")  # one read snapshot (workers read the same append-only prefix)
            _verify(con, res, path, (key_folder, key_dir), progress, deep, workers, busy_timeout,
                    witnesses or {}, (extra, against))
            con.execute("COMMIT")
    finally:
        con.close()
    res.seconds = time.perf_counter() - t0
    return res


CHUNK_LEVEL = 14
CHUNK = 1 << CHUNK_LEVEL  # leaves per aligned chunk: its subtrees are recomputed level by level


def _diagnose(rows, expect, prev, deep):
    """Row-by-row check of one chunk: (index, what) of its first bad entry, or None."""
    for idx, ts, data, prevb, h in rows:
        if idx != expect:
            return expect, "entry %d is missing (the next stored index is %d)" % (expect, idx)
        if type(ts) is not float or type(data) is not str or type(prevb) is not bytes \
                or type(h) is not bytes or len(prevb) != 32 or len(h) != 32:
            return idx, ("stored fields have the wrong type or length "
                         "(timestamp real, data text, previous_hash/hash 32-byte blobs)")
        if prevb != prev:
            return idx, ("previous_hash of the genesis entry is not 64 zeros" if idx == 0 else
                         "previous_hash %s does not equal the hash of entry %d (%s)" % (prevb.hex(), idx - 1, prev.hex()))
        try:
            calc = hashing.entry_hash(idx, ts, data, prevb.hex())
        except UnicodeEncodeError:
            return idx, "data is not ASCII canonical JSON"
        if calc != h:
            return idx, ("stored hash %s differs from SHA3-256 of the entry's fields (%s): "
                         "data, timestamp or hash was altered" % (h.hex(), calc.hex()))
        if deep or idx == 0:
            try:
                d = _loads(data)
                canon = _enc(d) == data and type(d) is dict and type(d.get("kind")) is str
            except ValueError:
                canon = False
            if not canon:
                return idx, "data is not a canonical JSON object with a \"kind\""
            if (idx == 0) != (d["kind"] == "genesis"):
                return idx, "entry 0 must be the only genesis entry"
        expect += 1
        prev = h
    return None


def _chunk_ok(rows, expect, prev):
    """Vectorised chain check of one chunk -> its entry hashes (a list), or None: run _diagnose.
    (A timestamp stored as an integer fails the hash check: its text would lack the '.0'.)"""
    if rows[0][0] != expect or rows[-1][0] != expect + len(rows) - 1:
        return None
    idxs, tss, datas, prevs, hs = zip(*rows)
    try:
        calc = hashing.entry_hashes(rows)
    except (AttributeError, UnicodeEncodeError, TypeError):
        return None
    hs = list(hs)
    if calc != hs or prevs[0] != prev or list(prevs[1:]) != hs[:-1] or set(map(type, tss)) != {float}:
        return None
    return hs


_ORDER = {}


def _full_chunk_order(node_level):
    """For a full chunk: the permutation from its levels node_level..CHUNK_LEVEL concatenated
    to the stored rows' (pos, level) order (the same for every full chunk; memoised)."""
    order = _ORDER.get(node_level)
    if order is None:
        keys, i = [], 0
        for lv in range(node_level, CHUNK_LEVEL + 1):
            for j in range(CHUNK >> lv):
                keys.append((((j + 1) << lv), lv, i))
                i += 1
        keys.sort()
        order = _ORDER[node_level] = operator.itemgetter(*[k[2] for k in keys])
    return order


def _full_chunk_nodes_ok(con, levels, base, node_level):
    """Fast check of a full chunk's stored nodes: their hashes in (pos, level) order equal the
    recomputed ones and no stored key in the range is off-grid (a level below node_level or
    a pos that is not a multiple of 2^level): with the count equal, the keys are exactly the
    expected ones. False means: compare row by row (_node_fail names the problem)."""
    flat = []
    for lv in range(node_level, CHUNK_LEVEL + 1):
        flat += levels[lv]
    expected = list(_full_chunk_order(node_level)(flat))
    end = base + CHUNK
    stored = [r[0] for r in con.execute("SELECT hash FROM nodes WHERE pos > ? AND pos <= ? AND level <= ? "
                                        "ORDER BY pos, level", (base, end, CHUNK_LEVEL))]
    if stored != expected:
        return False
    off = con.execute("SELECT count(*) FROM nodes WHERE pos > ? AND pos <= ? AND level <= ? AND "
                      "(level < ? OR (pos & ((1 << level) - 1)) != 0)",
                      (base, end, CHUNK_LEVEL, node_level)).fetchone()[0]
    return off == 0


def _local_nodes(levels, base, node_level):
    """Expected stored nodes of levels node_level..CHUNK_LEVEL of one chunk as sorted (pos, level, hash)."""
    out = []
    for lv in range(node_level, len(levels)):
        k0 = base >> lv
        for j, h in enumerate(levels[lv]):
            out.append(((k0 + j + 1) << lv, lv, h))
    out.sort()
    return out


def _node_fail(stored, expected):
    """(index, what) for the first difference of two sorted node lists, or None."""
    for i in range(max(len(stored), len(expected))):
        s = stored[i] if i < len(stored) else None
        e = expected[i] if i < len(expected) else None
        if s == e:
            continue
        if s is not None and e is not None and s[:2] == e[:2]:
            return e[0] - 1, _node_what(e[1], (e[0] >> e[1]) - 1, "differs from the recomputed hash")
        if e is None or (s is not None and s[:2] < e[:2]):
            return (s[0] - 1 if s[0] > 0 else None,
                    "stored tree has an unexpected node (pos %d, level %d)" % (s[0], s[1]))
        return e[0] - 1, _node_what(e[1], (e[0] >> e[1]) - 1, "is missing")
    return None


def _scan(con, a, b, deep, need, progress=None, node_level=1):
    """Check entries [a, b) (a is a multiple of CHUNK) and the stored nodes of levels
    node_level..CHUNK_LEVEL inside them (none below may be stored). Returns a dict (picklable,
    for worker processes)."""
    out = {"bad": None, "nodes": 0, "got": {}, "roots": [], "tail": [], "end": a, "genesis": None}
    if a == 0:
        prev = bytes(32)
    else:
        r = con.execute("SELECT hash FROM entries WHERE idx=?", (a - 1,)).fetchone()
        prev = r[0] if r else None
    cur = con.execute("SELECT idx, ts, data, prev, hash FROM entries WHERE idx >= ? AND idx < ? ORDER BY idx", (a, b))
    expect = a
    while expect < b:
        rows = cur.fetchmany(CHUNK)
        if not rows:
            out["bad"] = (expect, "entry", "entry %d is missing (no stored entries from here to %d)" % (expect, b - 1))
            return out
        hs = _chunk_ok(rows, expect, prev)
        if hs is None or deep:
            bad = _diagnose(rows, expect, prev, deep)
        elif expect == 0:  # the genesis entry's data is always re-parsed
            bad = _diagnose(rows[:1], 0, prev, False)
        else:
            bad = None
        if bad is not None:
            out["bad"] = (bad[0], "entry", bad[1])
            return out
        base = expect
        del rows
        if base == 0:
            out["genesis"] = hs[0]
        level = hashing.leaf_hashes(hs)
        levels = [level]
        while len(level) > 1:
            level = hashing.parent_level(level)
            levels.append(level)
        end = base + len(hs)
        for lv, k in need:
            if lv < len(levels) and base <= (k << lv) and ((k + 1) << lv) <= end:
                out["got"][(lv, k)] = levels[lv][k - (base >> lv)]
        if len(hs) == CHUNK and _full_chunk_nodes_ok(con, levels, base, node_level):
            out["nodes"] += sum(len(levels[lv]) for lv in range(node_level, CHUNK_LEVEL + 1))
        else:
            expected = _local_nodes(levels, base, node_level)
            stored = con.execute("SELECT pos, level, hash FROM nodes WHERE pos > ? AND pos <= ? AND level <= ? "
                                 "ORDER BY pos, level", (base, end, CHUNK_LEVEL)).fetchall()
            if stored != expected:
                f = _node_fail(stored, expected)
                out["bad"] = (f[0], "tree", f[1])
                return out
            out["nodes"] += len(expected)
        if len(hs) == CHUNK:
            out["roots"].append(levels[CHUNK_LEVEL][0])
        else:
            out["tail"] = [(lv, levels[lv][k - (base >> lv)]) for lv, k in merkle.decompose(base, end)]
        expect = out["end"] = end
        prev = hs[-1]
        if progress:
            progress(expect)
    return out


def _scan_path(path, a, b, deep, need, busy_timeout, node_level, progress=None):
    con = connect(path, readonly=True, busy_timeout=busy_timeout)
    try:
        with guarded(path):
            return _scan(con, a, b, deep, need, progress, node_level)
    finally:
        con.close()


def _read_workers(procs, bounds, progress, n):
    """Read every worker's stdout to its end at once (selectors). With `progress`, a worker
    writes "P END\n" after each chunk before its JSON line: progress(sum of entries done, n)."""
    sel = selectors.DefaultSelector()
    bufs = [bytearray() for _ in procs]
    done = [0] * len(procs)
    for i, p in enumerate(procs):
        sel.register(p.stdout, selectors.EVENT_READ, i)
    left = len(procs)
    while left:
        for key, _ev in sel.select():
            i = key.data
            chunk = os.read(key.fd, 1 << 16)
            if not chunk:
                sel.unregister(key.fileobj)
                left -= 1
                continue
            buf = bufs[i]
            buf += chunk
            moved = False
            while progress and buf[:2] == b"P ":
                j = buf.find(b"\n")
                if j < 0:
                    break
                done[i] = int(buf[2:j]) - bounds[i][0]
                del buf[:j + 1]
                moved = True
            if moved:
                progress(sum(done), n)
    sel.close()
    return [bytes(b) for b in bufs]


def _run_workers(path, bounds, deep, need, busy_timeout, node_level, progress=None, n=0):
    """Scan ranges in parallel worker processes (python -m becomingone.ledger.verify_worker)."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    needj = json.dumps(sorted(need))
    procs = []
    for a, b in bounds:
        p = subprocess.Popen([sys.executable, "-m", "becomingone.ledger.verify_worker", os.path.abspath(path), str(a), str(b),
                              "1" if deep else "0", str(busy_timeout), str(node_level),
                              "1" if progress else "0"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, env=env, cwd=root)
        p.stdin.write(needj.encode())
        p.stdin.close()
        procs.append(p)
    parts = []
    raws = _read_workers(procs, bounds, progress, n)
    for p, raw in zip(procs, raws):
        p.wait()
        try:
            d = json.loads(raw)
        except ValueError:
            raise LedgerError("ledger %s: a verify worker failed (exit %s)" % (path, p.returncode)) from None
        if "error" in d:
            raise LedgerError(d["error"])
        parts.append({"bad": tuple(d["bad"]) if d["bad"] else None, "nodes": d["nodes"], "end": d["end"],
                      "genesis": bytes.fromhex(d["genesis"]) if d["genesis"] else None,
                      "got": {(lv, k): bytes.fromhex(h) for lv, k, h in d["got"]},
                      "roots": [bytes.fromhex(h) for h in d["roots"]],
                      "tail": [(lv, bytes.fromhex(h)) for lv, h in d["tail"]]})
    return parts


def _verify(con, res, path, keys, progress, deep, workers, busy_timeout, witnesses, against):
    cps = con.execute("SELECT size, timestamp_ms, root, note FROM checkpoints ORDER BY size").fetchall()
    need = set()
    for c in cps:
        need.update(merkle.root_plan(c[0]))
    if against[0] is not None and against[0]["size"] > 0:
        need.update(merkle.root_plan(against[0]["size"]))
    top = con.execute("SELECT max(idx) FROM entries").fetchone()[0]
    if top is None:
        return res.fail(0, "entry", "the ledger has no genesis entry")
    n = top + 1
    nchunks = (n + CHUNK - 1) // CHUNK
    if workers is None:
        workers = min(os.cpu_count() or 1, 4) if nchunks >= 8 else 1
    workers = max(1, min(workers, nchunks))
    node_level = format_of(con)[1]
    if workers == 1:
        parts = [_scan(con, 0, n, deep, need, progress and (lambda done: progress(done, n)), node_level)]
    else:
        per = (nchunks + workers - 1) // workers
        bounds = [(i * per * CHUNK, min(n, (i + 1) * per * CHUNK)) for i in range(workers) if i * per * CHUNK < n]
        parts = _run_workers(path, bounds, deep, need, busy_timeout, node_level, progress, n)
    bad = None
    got, roots, tail = {}, [], []
    for part in parts:
        res.nodes += part["nodes"]
        got.update(part["got"])
        if part["genesis"] is not None:
            res.genesis_hash = part["genesis"]
        if part["bad"] is not None:
            bad = part["bad"]
            res.size = part["end"]
            break
        roots.extend(part["roots"])
        tail = part["tail"]
        res.size = part["end"]
    # levels above the chunks: recomputed from the chunk roots, compared with the stored ones
    upper, expected = [], []
    for c, h in enumerate(roots):
        lv, end = CHUNK_LEVEL, (c + 1) * CHUNK
        while upper and upper[-1][0] == lv:
            h = hashing.node_hash(upper.pop()[1], h)
            lv += 1
            expected.append((end, lv, h))
            if (lv, (end >> lv) - 1) in need:
                got[(lv, (end >> lv) - 1)] = h
        upper.append((lv, h))
    limit = res.size if bad is None else (bad[0] if bad[0] is not None else res.size)
    stored = con.execute("SELECT pos, level, hash FROM nodes WHERE level > ? AND pos <= ? ORDER BY pos, level",
                         (CHUNK_LEVEL, len(roots) * CHUNK)).fetchall()
    res.nodes += len(expected)
    f = _node_fail(stored, expected)
    if f is not None and (bad is None or (f[0] is not None and f[0] < limit)):
        bad = (f[0], "tree", f[1])
    if bad is not None:
        return res.fail(*bad)
    extra = con.execute("SELECT pos, level FROM nodes WHERE pos > ? OR (level > ? AND pos > ?) "
                        "ORDER BY pos, level LIMIT 1", (n, CHUNK_LEVEL, len(roots) * CHUNK)).fetchone()
    if extra:
        return res.fail(None, "tree", "stored tree has nodes beyond its %d entries (pos %d level %d)"
                        % (n, extra[0], extra[1]))
    res.root = merkle.fold([h for _l, h in upper + tail])

    def root_at(size):
        if size == 0:
            return merkle.EMPTY_ROOT
        return merkle.fold([got[x] for x in merkle.root_plan(size)]) if size <= res.size else None
    gen_origin = "%s/%s" % (d_origin_prefix, res.genesis_hash.hex()[:16])
    res.key_in_data_folder = os.path.exists(os.path.join(os.path.dirname(os.path.abspath(path)),
                                                         ckpt.KEY_FILE))
    if cps or against[0] is not None:
        pub = _public_key(res, path, gen_origin, *keys)
        if pub is None:
            return res
    if cps:
        rts = {c[0]: root_at(c[0]) for c in cps if c[0] <= res.size}
        _verify_checkpoints(res, cps, rts, pub, gen_origin)
        if not res.ok:
            return res
        _verify_cosignatures(res, con, cps, witnesses)
        if not res.ok:
            return res
    if against[0] is not None:
        _verify_against(res, against, pub, gen_origin, root_at, witnesses)
    return res


def _public_key(res, path, origin, key_folder, key_dir):
    """The checkpoint public key (module docstring of checkpoint.py), without making one."""
    folder = key_folder or ckpt.ledger_key_folder(path, origin, key_dir)
    try:
        pub = ckpt.load_public_from(folder)
        res.key_source = "key folder %s" % folder
        if pub is None and not key_folder:
            here = os.path.dirname(os.path.abspath(path))
            pub = ckpt.load_public_from(here)
            res.key_source = ("data folder %s (a copy: whoever can edit the data folder can "
                              "replace it; pin the key elsewhere)" % here)
    except (OSError, ValueError) as e:
        res.fail(None, "checkpoint", "cannot load the ledger's public key from %s (%s)" % (folder, e))
        return None
    if pub is None:
        res.fail(None, "checkpoint", "no public key for this ledger in %s or beside the database "
                                     "(ledger-signing.pub)" % folder)
    return pub


def _verify_cosignatures(res, con, cps, witnesses):
    """Count the trusted witnesses whose stored cosignatures verify (the largest size each one
    cosigned); a stored cosignature by a trusted witness that does not verify is a failure."""
    from becomingone.ledger.cosignature import CosignatureError, verify_line
    bodies = {c[0]: ckpt.parse_note(c[3])["body"] for c in cps}
    try:
        rows = con.execute("SELECT size, name, line FROM cosignatures ORDER BY size").fetchall()
    except Exception:                 # a read-only open of a ledger made before cosignatures
        rows = []
    for size, name, line in rows:
        pub = witnesses.get(name)
        body = bodies.get(size)
        if pub is None or body is None:
            res.unverified_cosignatures += 1
            continue
        try:
            verify_line(line, body, name, pub)
        except CosignatureError as e:
            res.fail(None, "cosignature", "cosignature of the checkpoint at size %d by %s: %s"
                     % (size, name, e))
            return
        res.cosigners[name] = max(size, res.cosigners.get(name, 0))


def _verify_against(res, against, pub, origin, root_at, witnesses):
    """The ledger must extend a saved checkpoint: signed by this ledger's key, for this origin,
    of a size it has, with the same root there (the tree up to that size was not rewritten)."""
    from becomingone.ledger.cosignature import CosignatureError, cosignature_lines, verify_line
    note, text = against
    size, root = note["size"], note["root"]
    try:
        ckpt.verify_note(text, pub)
    except ckpt.CheckpointError as e:
        res.fail(None, "against", "the saved checkpoint: %s" % e)
        return
    if note["origin"] != origin:
        res.fail(None, "against", "the saved checkpoint is of %r, this ledger is %r" % (note["origin"], origin))
        return
    if size > res.size:
        res.fail(None, "against", "the saved checkpoint covers %d entries but the ledger has only %d: "
                 "it was rolled back (entries removed) after that checkpoint" % (size, res.size))
        return
    have = root_at(size)
    if have != root:
        res.fail(size - 1 if size else None, "against",
                 "the saved checkpoint signs root %s for size %d, the ledger's tree of its first %d "
                 "entries has root %s: the ledger was rewritten" % (root.hex(), size, size, have.hex()))
        return
    seen = []
    for line in cosignature_lines(text):
        for name, wpub in witnesses.items():
            try:
                verify_line(line, note["body"], name, wpub)
                seen.append(name)
            except CosignatureError:
                continue
    res.against = {"size": size, "root": root.hex(), "ok": True, "cosigners": sorted(set(seen))}


def _verify_checkpoints(res, cps, roots, pub, gen_origin):
    for size, ts_ms, root, note in cps:
        try:
            parsed = ckpt.verify_note(note, pub)
        except ckpt.CheckpointError as e:
            return res.fail(None, "checkpoint", "checkpoint at size %d: %s" % (size, e))
        if parsed["size"] != size or parsed["root"] != root or parsed["timestamp_ms"] != ts_ms:
            return res.fail(None, "checkpoint", "checkpoint at size %d: stored columns differ from its signed note" % size)
        if parsed["origin"] != gen_origin:
            return res.fail(None, "checkpoint", "checkpoint at size %d names origin %r, this ledger is %r"
                            % (size, parsed["origin"], gen_origin))
        if size > res.size:
            return res.fail(None, "checkpoint", "checkpoint at size %d is beyond the ledger's %d entries "
                            "(entries were removed)" % (size, res.size))
        if roots.get(size) != root:
            return res.fail(size - 1 if size else None, "checkpoint",
                            "checkpoint at size %d signs root %s but the tree of the first %d entries has root %s "
                            "(the ledger was rewritten)" % (size, root.hex(), size, (roots.get(size) or b"").hex()))
        res.checkpoints += 1
    return res
