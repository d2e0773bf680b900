"""Verified replicas of other cells' ledgers, and split-view (fork) evidence.

Each cell is the only writer of its own ledger. Another cell keeps a replica per origin in
FOLDER/<origin id>/ledger.sqlite (the ledger schema, docs/LEDGER.md; with the origin's public key
as ledger-signing.pub beside it, so `becomingone ledger verify --db` checks a replica too).

Nothing is accepted on a server's word: entries [size, n) are accepted only if they chain from
the replica's last hash, every entry hash is right, and the root of size n computed from the
replica's stored tree plus the new leaves equals the root of a checkpoint of size n signed by the
origin's pinned Ed25519 key. A forged entry therefore cannot get in (its root would differ).

Split view: a validly signed checkpoint whose size we already hold but whose root differs from
ours (or from another signed checkpoint of that size) proves that the origin signed two
histories. Both checkpoints are kept in FOLDER/evidence/, the origin is marked untrusted
(FOLDER/untrusted.json) and nothing more is accepted from it; `observe` returns the alert.
Evidence is self-contained (two signed notes, plus a consistency proof when their sizes differ),
so other cells check it on their own (`check_evidence`) and stop trusting the origin too.

    store = ReplicaStore(folder, keys={origin: Ed25519PublicKey, ...})
    store.size(origin); store.root(origin, size=None); store.latest(origin) -> note | None
    store.observe(origin, note) -> {"status": "ok"|"ahead"|"split-view"|"untrusted", ...}
    store.apply(origin, lines, note) -> entries added  (ReplicaError if anything is wrong)
"""
import hashlib
import json
import math
import os
import re
import time

from cryptography.hazmat.primitives import serialization

from becomingone.errors import MeshError
from becomingone.ledger import checkpoint as ckpt, hashing, merkle, tree
from becomingone.ledger.db import LedgerError, connect, format_of
from becomingone.util.atomic import write_json

ZERO = "0" * 64


class ReplicaError(MeshError):
    """A peer's ledger entries, checkpoint or head that do not verify (forged, split view)."""


def origin_id(origin):
    return origin.rsplit("/", 1)[-1] if "/" in origin else hashlib.sha256(origin.encode()).hexdigest()[:16]


_SUFFIX = re.compile(r',"hash":"([0-9a-f]{64})","index":(0|[1-9][0-9]*),"previous_hash":"([0-9a-f]{64})",'
                     r'"timestamp":([-+.0-9eE]+)}$')


def split_line(line):
    """An export line (docs/LEDGER.md §7) -> (data_json, hash, index, previous_hash, timestamp, data),
    without re-serialising `data`: the entry hash covers data_json byte for byte and the signed
    root covers the hashes, so the bytes the origin wrote are what is checked and stored. `data`
    must still be a JSON object and the timestamp in canonical float form."""
    if not isinstance(line, str) or not line.startswith('{"data":'):
        raise ReplicaError("not a ledger export line: %.60r" % (line,))
    k = line.rfind(',"hash":"')
    m = _SUFFIX.match(line, k) if k > 8 else None
    if m is None:
        raise ReplicaError("not a ledger export line: %.60r" % (line,))
    data_json = line[8:k]
    data = None
    try:
        ts = float(m.group(4))
        data = json.loads(data_json) if data_json[:1] == "{" else None
        ok = float.__repr__(ts) == m.group(4) and math.isfinite(ts) and isinstance(data, dict)
    except ValueError:
        ok = False
    if not ok:
        raise ReplicaError("export line of entry %s: data is not a JSON object or the timestamp is "
                           "not a canonical float" % m.group(2))
    return data_json, m.group(1), int(m.group(2)), m.group(3), ts, data


class _Replica:
    def __init__(self, folder, origin, pub):
        self.origin, self.pub = origin, pub
        self.verified = None      # (note text, parsed) of the last checkpoint verified
        os.makedirs(folder, exist_ok=True)
        self.path = os.path.join(folder, "ledger.sqlite")
        # NORMAL: a replica survives a crash of this process; what a power loss takes from its
        # newest commits is pulled again (the origin and the other holders keep it)
        self.con = connect(self.path, synchronous="NORMAL")
        pem = ckpt.load_public_key(pub) if isinstance(pub, (bytes, str)) else pub
        self.pubkey = pem
        with open(os.path.join(folder, ckpt.PUB_FILE), "wb") as f:
            f.write(pem.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        row = self.con.execute("SELECT idx, hash FROM entries ORDER BY idx DESC LIMIT 1").fetchone()
        self.size = 0 if row is None else row[0] + 1
        self.last = ZERO if row is None else row[1].hex()
        self.frontier = merkle.Frontier(self.size, [(lv, self._hash_at(lv, k))
                                                    for lv, k in merkle.decompose(0, self.size)])

    def _hash_at(self, level, k):
        try:  # stored node, or recomputed from the entry hashes below the stored levels
            return tree.fetch(self.con, [(level, k)], what="replica %s" % self.path)[0][(level, k)]
        except LedgerError as e:
            raise ReplicaError(str(e)) from None

    def root(self, size=None):
        size = self.size if size is None else size
        if not 0 <= size <= self.size:
            raise ReplicaError("replica of %s holds %d entries, no root of size %d" % (self.origin, self.size, size))
        if size == 0:
            return merkle.EMPTY_ROOT
        return merkle.fold([self._hash_at(lv, k) for lv, k in merkle.decompose(0, size)])

    def consistency_path(self, m, n):
        """RFC 9162 consistency proof from size m to n (<= held size), hex list."""
        return [merkle.fold([self._hash_at(lv, k) for lv, k in item]).hex()
                for item in merkle.consistency_plan(m, n)]

    def notes(self):
        return [(r[0], r[1], r[2]) for r in
                self.con.execute("SELECT size, root, note FROM checkpoints ORDER BY size")]


class ReplicaStore:
    """Verified replicas of other cells' ledgers, one SQLite file per origin: entries are
    applied only when they reach the origin's signed checkpoint, and a second signed view of
    the same size is kept as split-view evidence (the origin then untrusted). Raises
    ReplicaError for anything that does not verify."""
    def __init__(self, folder, keys):
        self.folder = folder
        self.keys = dict(keys)
        os.makedirs(os.path.join(folder, "evidence"), exist_ok=True)
        self._reps = {}
        upath = os.path.join(folder, "untrusted.json")
        self.untrusted = set(json.load(open(upath))) if os.path.exists(upath) else set()

    def replica(self, origin):
        if origin not in self.keys:
            raise ReplicaError("no pinned public key for origin %r (known: %s)" % (origin, ", ".join(sorted(self.keys))))
        r = self._reps.get(origin)
        if r is None:
            r = self._reps[origin] = _Replica(os.path.join(self.folder, origin_id(origin)), origin, self.keys[origin])
        return r

    def size(self, origin):
        return self.replica(origin).size

    def root(self, origin, size=None):
        return self.replica(origin).root(size)

    def latest(self, origin):
        n = self.replica(origin).notes()
        return n[-1][2] if n else None

    def note_of_size(self, origin, size):
        """The stored checkpoint note of exactly `size` for `origin`, or None."""
        for sz, _root, note in self.replica(origin).notes():
            if sz == size:
                return note
        return None

    def entries(self, origin, start, stop):
        """Export lines [start, stop) of a replica (to serve other cells)."""
        rep = self.replica(origin)
        rows = rep.con.execute("SELECT idx, ts, data, prev, hash FROM entries WHERE idx>=? AND idx<? "
                               "ORDER BY idx", (start, stop)).fetchall()
        return ['{"data":%s,"hash":"%s","index":%d,"previous_hash":"%s","timestamp":%s}'
                % (d, h.hex(), i, p.hex(), float.__repr__(ts)) for i, ts, d, p, h in rows]

    def _verify_note(self, origin, note):
        rep = self.replica(origin)
        if rep.verified is not None and rep.verified[0] == note:
            return rep, rep.verified[1]            # observe() then apply() of one note: one verify
        try:
            p = ckpt.verify_note(note, rep.pubkey)
        except ckpt.CheckpointError as e:
            raise ReplicaError("checkpoint for %s refused: %s" % (origin, e)) from None
        if p["origin"] != origin:
            raise ReplicaError("checkpoint names origin %r, expected %r" % (p["origin"], origin))
        rep.verified = (note, p)
        return rep, p

    def _split_view(self, origin, note, p, other_note, why, consistency=None):
        ev = {"origin": origin, "size": p["size"], "why": why, "checkpoints": [other_note, note],
              "detected_at": time.time()}
        if consistency is not None:
            ev["consistency"] = consistency
        self.keep_evidence(origin, ev)
        path = ev["path"]
        return {"status": "split-view", "origin": origin, "size": p["size"], "evidence": path, "why": why}

    def keep_evidence(self, origin, ev):
        path = os.path.join(self.folder, "evidence", "%s-%d-%d.json" % (origin_id(origin), ev["size"],
                                                                          int(time.time() * 1e6)))
        write_json(path, ev, indent=1)           # atomic: a reader never sees half a file
        ev["path"] = path
        self.untrusted.add(origin)
        with open(os.path.join(self.folder, "untrusted.json"), "w") as f:
            json.dump(sorted(self.untrusted), f)

    def evidence(self):
        """Every piece of split-view evidence held (to hand to other cells)."""
        out = []
        d = os.path.join(self.folder, "evidence")
        for name in sorted(n for n in os.listdir(d) if n.endswith(".json")):
            with open(os.path.join(d, name)) as f:
                ev = json.load(f)
            ev.pop("path", None)
            out.append(ev)
        return out

    def check_evidence(self, ev):
        """Verify split-view evidence from another cell on its own (no trust in the sender):
        two checkpoints signed by the origin's pinned key that cannot both be true — the same size
        with different roots, or a smaller one whose root is not the one the larger one commits to
        (shown by a consistency proof). Valid evidence marks the origin untrusted here too.
        -> True if accepted (or already untrusted), ReplicaError if it proves nothing."""
        try:
            origin = ev["origin"]
            a, b = ev["checkpoints"]
        except (KeyError, TypeError, ValueError):
            raise ReplicaError("evidence must have origin and two checkpoints") from None
        if origin in self.untrusted:
            return True
        pa, pb = (self._verify_note(origin, n)[1] for n in (a, b))
        if pa["size"] > pb["size"]:
            pa, pb, a, b = pb, pa, b, a
        if pa["size"] == pb["size"]:
            if pa["root"] == pb["root"]:
                raise ReplicaError("evidence for %s: both checkpoints have the same root" % origin)
        else:
            c = ev.get("consistency") or {}
            try:
                old_root = bytes.fromhex(c["old_root"])
                path = [bytes.fromhex(x) for x in c["path"]]
            except (KeyError, TypeError, ValueError):
                raise ReplicaError("evidence for %s: checkpoints of different sizes need a consistency "
                                   "proof" % origin) from None
            if not merkle.verify_consistency(pa["size"], pb["size"], old_root, pb["root"], path):
                raise ReplicaError("evidence for %s: its consistency proof does not verify" % origin)
            if old_root == pa["root"]:
                raise ReplicaError("evidence for %s: the checkpoints are consistent" % origin)
        self.keep_evidence(origin, {"origin": origin, "size": pa["size"], "why": "evidence from a peer",
                                     "checkpoints": [a, b], "consistency": ev.get("consistency"),
                                     "detected_at": time.time()})
        return True

    def observe(self, origin, note):
        """Check a signed checkpoint of `origin` against what we hold (see module docstring)."""
        if origin in self.untrusted:
            return {"status": "untrusted", "origin": origin}
        rep, p = self._verify_note(origin, note)
        for size, root, other in rep.notes():
            if size == p["size"] and root != p["root"]:
                return self._split_view(origin, note, p, other, "two signed roots for size %d" % size)
        if p["size"] <= rep.size:
            if rep.root(p["size"]) != p["root"]:
                notes = rep.notes()            # the newest checkpoint we verified commits to root(size)
                top_size, _r, top = notes[-1]
                cons = {"old_size": p["size"], "new_size": top_size, "old_root": rep.root(p["size"]).hex(),
                        "path": rep.consistency_path(p["size"], top_size)}
                return self._split_view(origin, note, p, top,
                                        "signed root of size %d differs from the verified replica" % p["size"],
                                        consistency=cons)
            rep.con.execute("INSERT OR IGNORE INTO checkpoints(size, timestamp_ms, root, note) VALUES (?,?,?,?)",
                            (p["size"], p["timestamp_ms"], p["root"], note))
            return {"status": "ok", "origin": origin, "size": p["size"]}
        return {"status": "ahead", "origin": origin, "size": p["size"], "have": rep.size}

    def apply(self, origin, lines, note):
        """Append entries [size, size+len(lines)) of `origin`, checked against the signed `note`
        of exactly the new size. -> entries added."""
        if origin in self.untrusted:
            raise ReplicaError("origin %s is untrusted (split view evidence in %s)" % (origin, self.folder))
        rep, p = self._verify_note(origin, note)
        a, n = rep.size, rep.size + len(lines)
        if p["size"] != n:
            raise ReplicaError("checkpoint size %d does not match entries [%d, %d)" % (p["size"], a, n))
        fr, prev, rows = rep.frontier.copy(), rep.last, []
        nodes = []
        for off, line in enumerate(lines):
            i = a + off
            data_json, h_given, idx, prev_given, ts, _data = split_line(line)
            if idx != i or prev_given != prev:
                raise ReplicaError("%s entry %d: not the next entry of the replica (index or hash chain)" % (origin, i))
            h = hashing.entry_hash(i, ts, data_json, prev).hex()
            if h != h_given:
                raise ReplicaError("%s entry %d: hash does not match its contents (forged)" % (origin, i))
            hb = bytes.fromhex(h)
            fr.push(merkle.leaf_hash(hb), nodes)
            rows.append((i, ts, data_json, bytes.fromhex(prev), hb))
            prev = h
        if fr.root() != p["root"]:
            raise ReplicaError("%s entries [%d, %d): their root differs from the signed checkpoint "
                               "(forged or reordered entries)" % (origin, a, n))
        con = rep.con
        con.execute("BEGIN IMMEDIATE")
        try:
            con.executemany("INSERT INTO entries(idx, ts, data, prev, hash) VALUES (?,?,?,?,?)", rows)
            con.executemany("INSERT INTO nodes(pos, level, hash) VALUES (?,?,?)",
                            tree.node_rows(nodes, format_of(con)[1]))
            con.execute("INSERT OR IGNORE INTO checkpoints(size, timestamp_ms, root, note) VALUES (?,?,?,?)",
                        (p["size"], p["timestamp_ms"], p["root"], note))
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        rep.size, rep.last, rep.frontier = n, prev, fr
        return len(rows)

    def close(self):
        for r in self._reps.values():
            r.con.close()
        self._reps.clear()
