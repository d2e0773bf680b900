"""Archives in the live mesh: each cell seals its own ledger into erasure-coded segments
(host/mesh/archive.py: any k of n shards rebuild a segment, verified against the cell's signed
checkpoint) every `segment` entries (a segment ends at the first signed checkpoint at or past
that many, so a restore has the origin's signature of its size), and hands shard i to the i-th cell of the ring of the other
live trusted cells (key "segment:<origin>:<a>-<b>"); the cells keep the shards they are given
in DATA/mesh/shards/held/<origin id>/ and hand them back to anyone who asks for an origin's.
Restoring a lost cell needs k live holders per segment: `becomingone mesh fetch-shards` then
`becomingone mesh restore` (docs/MESH.md "Archives").

    arc = Archiver(ledger, folder, k=3, n=5, segment=10000)
    await arc.step(cells, send)      # cells: live trusted cells (this one excluded is fine);
                                     # send(cell, blob) -> awaitable truthy when stored there
    arc.receive(blob, origin_of_sender) -> stored path (ArchiveError if refused)
    arc.held(origin) -> [shard file bytes]

The shard sender is the origin (a cell only hands out shards of its own ledger); a receiver
checks the shard's own SHA3 and that its origin is the sender's; what a shard claims about the
segment is checked only at restore, against the origin's signed checkpoint.
"""
import asyncio
import json
import os

from becomingone.mesh.archive import ArchiveError, encode_shards, parse_shard, seal_segment, shard_filename
from becomingone.mesh.replica import origin_id
from becomingone.mesh.ring import Ring
from becomingone.util.atomic import atomic_write, write_json

__all__ = ["Archiver", "placement", "serve_shards"]

MAX_HELD_PER_ORIGIN = 100000      # shard files kept per origin (a bound against a flooding peer)
REPLY_BYTES = 600 * 1024          # base64 bytes of shards per "shards" reply (under NATS's 1 MB)
_RINGS = {}


def placement(cells, owner, key, n):
    """The n cells (owner excluded) that hold the shards of `key`, in shard order."""
    others = tuple(sorted(c for c in cells if c != owner))
    if len(others) < n:
        return None
    ring = _RINGS.get(others)
    if ring is None:
        if len(_RINGS) >= 8:
            _RINGS.pop(next(iter(_RINGS)))
        ring = _RINGS[others] = Ring(list(others))
    return ring.get_n(key, n)


class Archiver:
    """This cell's archive: the segments it sealed and placed (state in FOLDER/archive.json)
    and the shards other cells placed here (FOLDER/held/). Raises ArchiveError for bad
    settings and refused shards."""

    def __init__(self, ledger, folder, k=3, n=5, segment=10000, cell=None):
        if type(k) is not int or type(n) is not int or not 1 <= k <= n <= 256:
            raise ArchiveError("archive k and n must be integers with 1 <= k <= n <= 256, got k=%r n=%r" % (k, n))
        if type(segment) is not int or segment < 1:
            raise ArchiveError("archive segment must be an integer number of entries >= 1, got %r" % (segment,))
        self.ledger, self.folder, self.k, self.n, self.segment = ledger, folder, k, n, segment
        self.cell = cell
        os.makedirs(os.path.join(folder, "held"), exist_ok=True)
        self.state_path = os.path.join(folder, "archive.json")
        self.state = {"next": 0, "segments": []}
        if os.path.exists(self.state_path):
            try:
                with open(self.state_path) as f:
                    self.state.update(json.load(f))
            except (ValueError, OSError) as e:
                raise ArchiveError("archive state %s is damaged (%s); move it away to seal again from "
                                   "entry 0" % (self.state_path, e)) from None
        self.pending = None       # (start, stop, [shard blobs], {index: cell}, {index: stored})
        self.counts = {"sealed": 0, "shards_sent": 0, "send_failures": 0, "held": 0, "refused": 0,
                       "waiting_for_cells": 0}
        self.last_error = None

    # ------------------------------------------------------------ sealing and placing
    def due(self):
        """Whether a full segment of entries is waiting to be sealed (or placed)."""
        return self.pending is not None or self.ledger.size >= self.state["next"] + self.segment

    async def step(self, cells, send):
        """Seal the next segment if one is full and place its shards on the ring of `cells`
        (excluding this one); shards not stored yet are sent again next time. -> what was done."""
        if not self.due():
            return None
        if self.pending is None:
            a = self.state["next"]
            # a segment ends at a signed checkpoint (the first at or past a + segment entries), so
            # a restore up to it has the origin's own signature of that size
            b = self._segment_end(a + self.segment)
            if b is None:
                return {"waiting": "no signed checkpoint at or past entry %d yet" % (a + self.segment)}
            segment, header = await asyncio.to_thread(seal_segment, self.ledger, a, b)
            blobs = await asyncio.to_thread(encode_shards, segment, header, self.k, self.n)
            self.pending = {"start": a, "stop": b, "blobs": blobs, "cells": None, "stored": set(),
                            "sha3": json.loads(blobs[0][len(b"BOSHARD1\n"):].split(b"\n", 1)[0])["segment_sha3"],
                            "origin": header["origin"]}
            self.counts["sealed"] += 1
        p = self.pending
        if p["cells"] is None:
            key = "segment:%s:%d-%d" % (p["origin"], p["start"], p["stop"])
            got = placement(cells, self.cell, key, self.n)
            if got is None:
                self.counts["waiting_for_cells"] += 1
                return {"waiting": "%d live cells besides this one, %d needed for %d shards"
                                   % (len([c for c in cells if c != self.cell]), self.n, self.n)}
            p["cells"] = got
        for i, blob in enumerate(p["blobs"]):
            if i in p["stored"]:
                continue
            try:
                ok = await send(p["cells"][i], blob)
            except Exception as e:                     # unreachable now: next time
                ok, self.last_error = False, "%s: %s" % (type(e).__name__, e)
            if ok:
                p["stored"].add(i)
                self.counts["shards_sent"] += 1
            else:
                self.counts["send_failures"] += 1
        if len(p["stored"]) < self.n:
            return {"placing": p["start"], "stored": len(p["stored"])}
        self.state["segments"].append({"start": p["start"], "stop": p["stop"], "k": self.k, "n": self.n,
                                       "cells": p["cells"], "segment_sha3": p["sha3"]})
        self.state["next"] = p["stop"]
        write_json(self.state_path, self.state, sort_keys=True)
        self.pending = None
        return {"sealed": [self.state["segments"][-1]["start"], self.state["segments"][-1]["stop"]]}

    def _segment_end(self, at_least):
        from becomingone.ledger import checkpoint as ckpt
        sizes = [ckpt.parse_note(t)["size"] for t in self.ledger.checkpoints()]
        ok = [x for x in sizes if x >= at_least]
        return min(ok) if ok else None

    # ------------------------------------------------------------ holding others' shards
    def receive(self, blob, sender_origin):
        """Keep a shard another cell placed here (it must be of the sender's own ledger)."""
        try:
            h, _body = parse_shard(blob)
        except ArchiveError:
            self.counts["refused"] += 1
            raise
        if h["origin"] != sender_origin:
            self.counts["refused"] += 1
            raise ArchiveError("a cell may only place shards of its own ledger (shard of %s sent by %s)"
                               % (h["origin"], sender_origin))
        d = os.path.join(self.folder, "held", origin_id(h["origin"]))
        os.makedirs(d, exist_ok=True)
        if len(os.listdir(d)) >= MAX_HELD_PER_ORIGIN:
            self.counts["refused"] += 1
            raise ArchiveError("already %d shards held for %s" % (MAX_HELD_PER_ORIGIN, h["origin"]))
        path = os.path.join(d, shard_filename(h, h["index"], h["n"]))
        with atomic_write(path, binary=True) as f:
            f.write(bytes(blob))
        self.counts["held"] += 1
        return path

    def held(self, origin):
        """Every shard file held for `origin` (bytes)."""
        d = os.path.join(self.folder, "held", origin_id(origin))
        if not os.path.isdir(d):
            return []
        out = []
        for name in sorted(os.listdir(d)):
            if name.endswith(".shard"):
                with open(os.path.join(d, name), "rb") as f:
                    out.append(f.read())
        return out

    def status(self):
        return {"k": self.k, "n": self.n, "segment": self.segment, "sealed_to": self.state["next"],
                "segments": len(self.state["segments"]),
                "placing": None if self.pending is None else [self.pending["start"], len(self.pending["stored"])],
                "counts": dict(self.counts), "last_error": self.last_error}


def serve_shards(archiver, msg, sender_origin):
    """Answer {"op": "shard", "blob": base64} (store a shard of the sender's ledger) or
    {"op": "shards", "origin", "from": i} (the held shards of an origin from the i-th, as many as
    fit REPLY_BYTES; "next" is where to ask from, null at the end). Raises ArchiveError or
    ValueError naming what is wrong."""
    import base64
    op = msg.get("op")
    if op == "shard":
        try:
            blob = base64.b64decode(msg["blob"], validate=True)
        except (KeyError, TypeError, ValueError):
            raise ValueError("a shard message carries the shard file as base64 in 'blob'") from None
        archiver.receive(blob, sender_origin)
        return {"stored": True}
    if op == "shards":
        origin, i = msg.get("origin"), msg.get("from", 0)
        if not isinstance(origin, str) or type(i) is not int or i < 0:
            raise ValueError("shards needs origin (a string) and from (an int >= 0)")
        held = archiver.held(origin)
        out, size = [], 0
        while i < len(held):
            b = base64.b64encode(held[i]).decode("ascii")
            if out and size + len(b) > REPLY_BYTES:
                break
            out.append(b)
            size += len(b)
            i += 1
        return {"shards": out, "next": i if i < len(held) else None}
    raise ValueError("unknown op %r" % (op,))
