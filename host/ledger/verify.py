"""Full verification of a stored ledger: chain, stored Merkle tree, checkpoints.

Streams the entries and the stored nodes once each (in the same read snapshot) and stops at
the first problem, naming the entry index and what is wrong."""
import hashlib
import json
import os
import time

from host.ledger import canonical, checkpoint as ckpt, merkle
from host.ledger.db import connect, guarded

_loads = json.loads
d_origin_prefix = "becomingone.ledger"
_enc = canonical._encoder.encode


class VerifyResult:
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

    def fail(self, index, part, what):
        self.ok = False
        self.first_bad = {"index": index, "part": part, "what": what}
        return self

    def to_dict(self):
        return {"path": self.path, "ok": self.ok, "size": self.size,
                "root": self.root.hex() if self.root else None, "nodes": self.nodes,
                "checkpoints": self.checkpoints, "first_bad": self.first_bad,
                "seconds": round(self.seconds, 3)}

    def message(self):
        if self.ok:
            return ("ledger %s OK: %d entries, %d tree nodes, %d checkpoints verified, root %s (%.2f s)"
                    % (self.path, self.size, self.nodes, self.checkpoints, self.root.hex(), self.seconds))
        fb = self.first_bad
        where = "entry %d" % fb["index"] if fb["index"] is not None else fb["part"]
        return "ledger %s FAILED at %s: %s" % (self.path, where, fb["what"])


def _node_what(level, k, what):
    a, b = k << level, ((k + 1) << level) - 1
    return "stored tree node (level %d, index %d, covering entries %d..%d) %s" % (level, k, a, b, what)


def verify_path(path, key_folder=None, progress=None, chunk=20000, busy_timeout=5.0):
    t0 = time.perf_counter()
    res = VerifyResult(os.path.abspath(path))
    con = connect(path, readonly=True, busy_timeout=busy_timeout)
    try:
        with guarded(path):
            con.execute("BEGIN")  # one read snapshot for everything below
            _verify(con, res, key_folder or os.path.dirname(os.path.abspath(path)), progress, chunk)
            con.execute("COMMIT")
    finally:
        con.close()
    res.seconds = time.perf_counter() - t0
    return res


def _verify(con, res, key_folder, progress, chunk):
    cps = con.execute("SELECT size, timestamp_ms, root, note FROM checkpoints ORDER BY size").fetchall()
    want_roots = {c[0] for c in cps}
    roots = {0: merkle.EMPTY_ROOT} if 0 in want_roots else {}

    ecur = con.execute("SELECT idx, ts, data, prev, hash FROM entries ORDER BY idx")
    ncur = con.cursor()
    ncur.execute("SELECT pos, level, hash FROM nodes ORDER BY pos, level")
    nbuf, npos = [], 0

    sha3 = hashlib.sha3_256
    hinput = canonical.hash_input
    fr = merkle.Frontier()
    push = fr.push
    created = []
    expect = 0
    prev = bytes(32)
    while True:
        rows = ecur.fetchmany(chunk)
        if not rows:
            break
        for idx, ts, data, prevb, h in rows:
            if idx != expect:
                return res.fail(expect, "entry", "entry %d is missing (the next stored index is %d)" % (expect, idx))
            if type(ts) is not float or type(data) is not str or type(prevb) is not bytes \
                    or type(h) is not bytes or len(prevb) != 32 or len(h) != 32:
                return res.fail(idx, "entry", "stored fields have the wrong type or length "
                                "(timestamp real, data text, previous_hash/hash 32-byte blobs)")
            if prevb != prev:
                what = ("previous_hash of the genesis entry is not 64 zeros" if idx == 0 else
                        "previous_hash %s does not equal the hash of entry %d (%s)" % (prevb.hex(), idx - 1, prev.hex()))
                return res.fail(idx, "entry", what)
            try:
                calc = sha3(hinput(idx, ts, data, prevb.hex())).digest()
            except UnicodeEncodeError:
                return res.fail(idx, "entry", "data is not ASCII canonical JSON")
            if calc != h:
                return res.fail(idx, "entry", "stored hash %s differs from SHA3-256 of the entry's fields (%s): "
                                "data, timestamp or hash was altered" % (h.hex(), calc.hex()))
            try:
                d = _loads(data)
                canon = _enc(d) == data and type(d) is dict and type(d.get("kind")) is str
            except ValueError:
                canon = False
            if not canon:
                return res.fail(idx, "entry", "data is not a canonical JSON object with a \"kind\"")
            if idx == 0:
                if d.get("kind") != "genesis":
                    return res.fail(0, "entry", "entry 0 is not a genesis entry")
                res.genesis_hash = h
            push(sha3(b"\x00" + h).digest(), created)
            if created:
                for level, k, nh in created:
                    if npos >= len(nbuf):
                        nbuf, npos = ncur.fetchmany(chunk), 0
                    pos = (k + 1) << level
                    if npos >= len(nbuf) or nbuf[npos][0] != pos or nbuf[npos][1] != level:
                        return res.fail(idx, "tree", _node_what(level, k, "is missing"))
                    if nbuf[npos][2] != nh:
                        return res.fail(idx, "tree", _node_what(level, k, "differs from the recomputed hash"))
                    npos += 1
                    res.nodes += 1
                created.clear()
            expect = idx + 1
            prev = h
            if expect in want_roots:
                roots[expect] = fr.root()
        res.size = expect
        if progress:
            progress(expect)
    if npos < len(nbuf) or ncur.fetchone() is not None:
        extra = nbuf[npos] if npos < len(nbuf) else None
        return res.fail(None, "tree", "stored tree has nodes beyond its %d entries%s" % (
            expect, " (pos %d level %d)" % (extra[0], extra[1]) if extra else ""))
    if expect == 0:
        return res.fail(0, "entry", "the ledger has no genesis entry")
    res.root = fr.root()
    if cps:
        return _verify_checkpoints(res, cps, roots, key_folder)
    return res


def _verify_checkpoints(res, cps, roots, key_folder):
    gen_origin = "%s/%s" % (d_origin_prefix, res.genesis_hash.hex()[:16])
    pub_path = os.path.join(key_folder, ckpt.PUB_FILE)
    key_path = os.path.join(key_folder, ckpt.KEY_FILE)
    try:
        if os.path.exists(key_path):  # the private key is authoritative; the .pub is derived
            pub = ckpt.load_or_create_key(key_folder)[1] if os.access(key_folder, os.W_OK) else \
                ckpt.load_public_key(pub_path)
        else:
            pub = ckpt.load_public_key(pub_path)
    except (OSError, ValueError) as e:
        return res.fail(None, "checkpoint", "cannot load the ledger's public key from %s (%s)" % (key_folder, e))
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
