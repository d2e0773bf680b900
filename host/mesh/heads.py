"""Verified heads of ledgers this cell does not replicate (beyond the replication fan-out).

A cell that does not keep a full replica of an origin still checks that origin's signed
checkpoints for consistency with what it has seen, without downloading entries: it keeps the
newest signed checkpoint (size, root) it verified, and accepts a newer one only with an RFC 9162
consistency proof from the held size to the new size that verifies against both roots
(`ledger.consistency_proof` on the origin, `consistency_path` on a replica, served by
`op: consistency`, host/mesh/replication.py). Two validly signed checkpoints of the same size
with different roots are a split view: both go to the ReplicaStore's evidence folder (the same
self-contained evidence a full replica produces) and the origin is untrusted.

    heads = HeadTracker(path_json, store)        # store: host/mesh/replica.py ReplicaStore
    heads.size(origin), heads.note(origin)
    await heads.check(origin, note, prove) -> {"status": "ok"|"advanced"|"first"|"behind"|
        "split-view"|"untrusted"|"refused", "origin", "size", ...}
        prove(old, new) -> awaitable list of hex hashes (the peer's consistency proof)
"""
import json
import os
import time

from becomingone.ledger import checkpoint as ckpt, merkle
from becomingone.mesh.replica import ReplicaError
from becomingone.util.atomic import write_json


class HeadTracker:
    """Verified heads (size, root) of ledgers this cell does not replicate in full, kept in
    a JSON file; each new head must be consistent with the last one. Raises ReplicaError for
    an inconsistent head."""
    def __init__(self, path, store, save_every=0.0):
        self.path, self.store = path, store
        self.save_every = float(save_every)   # 0: every change written at once; else at most this often
        self._saved, self._dirty = 0.0, False
        self.heads = {}                   # origin -> signed note text
        self._sizes = {}
        self.counts = {"advanced": 0, "refused": 0, "split_view": 0}
        if os.path.exists(path):
            try:
                with open(path) as f:
                    self.heads = {str(k): str(v) for k, v in json.load(f).items()}
            except (ValueError, AttributeError, OSError) as e:
                raise ReplicaError("verified heads file %s is damaged (%s); move it away to start "
                                   "afresh" % (path, e)) from None

    def _save(self):
        self._dirty = True
        self._sizes.clear()
        if time.monotonic() - self._saved >= self.save_every:
            self.flush()

    def flush(self):
        """Write the heads file if anything changed since the last write."""
        if self._dirty:
            write_json(self.path, self.heads, sort_keys=True)
            self._saved, self._dirty = time.monotonic(), False

    def note(self, origin):
        return self.heads.get(origin)

    def size(self, origin):
        got = self._sizes.get(origin)
        if got is None:
            n = self.heads.get(origin)
            got = self._sizes[origin] = ckpt.parse_note(n)["size"] if n else 0
        return got

    def _verify(self, origin, note):
        pub = self.store.keys.get(origin)
        if pub is None:
            raise ReplicaError("no pinned public key for origin %r" % (origin,))
        try:
            p = ckpt.verify_note(note, pub)
        except ckpt.CheckpointError as e:
            raise ReplicaError("checkpoint for %s refused: %s" % (origin, e)) from None
        if p["origin"] != origin:
            raise ReplicaError("checkpoint names origin %r, expected %r" % (p["origin"], origin))
        return p

    async def check(self, origin, note, prove):
        """Check a peer's signed checkpoint of `origin` against the held verified head."""
        if origin in self.store.untrusted:
            return {"status": "untrusted", "origin": origin}
        try:
            p = self._verify(origin, note)
        except ReplicaError as e:
            self.counts["refused"] += 1
            return {"status": "refused", "origin": origin, "why": str(e)}
        held = self.heads.get(origin)
        if held is None:
            self.heads[origin] = note
            self._save()
            return {"status": "first", "origin": origin, "size": p["size"]}
        h = ckpt.parse_note(held)
        if p["size"] == h["size"]:
            if p["root"] == h["root"]:
                return {"status": "ok", "origin": origin, "size": p["size"]}
            self.counts["split_view"] += 1
            ev = {"origin": origin, "size": p["size"], "why": "two signed roots for size %d (verified "
                  "head, no replica)" % p["size"], "checkpoints": [held, note], "detected_at": time.time()}
            self.store.keep_evidence(origin, ev)
            return {"status": "split-view", "origin": origin, "size": p["size"], "evidence": ev["path"],
                    "why": ev["why"]}
        if p["size"] < h["size"]:
            return {"status": "behind", "origin": origin, "size": p["size"], "have": h["size"]}
        if h["size"] == 0:
            path = []
        else:
            try:
                path = await prove(h["size"], p["size"])
            except (ReplicaError, ValueError, OSError) as e:
                self.counts["refused"] += 1
                return {"status": "refused", "origin": origin, "why": "no consistency proof: %s" % e}
        ok = isinstance(path, list) and all(isinstance(x, str) and len(x) == 64 for x in path)
        if h["size"] > 0 and (not ok or not merkle.verify_consistency(
                h["size"], p["size"], h["root"], p["root"], [bytes.fromhex(x) for x in path])):
            self.counts["refused"] += 1
            return {"status": "refused", "origin": origin, "size": p["size"],
                    "why": "head of size %d is not consistent with the verified head of size %d"
                           % (p["size"], h["size"])}
        self.heads[origin] = note
        self._save()
        self.counts["advanced"] += 1
        return {"status": "advanced", "origin": origin, "size": p["size"], "from": h["size"]}
