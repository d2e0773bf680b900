"""Ledger replication between cells over the mutual-TLS transport (host/mesh/tls.py).

A cell serves its own ledger and the replicas it holds:
    {"op": "heads"}                               -> {"heads": {origin: latest checkpoint note},
                                                      "evidence": [split-view evidence held]}
    {"op": "checkpoint", "origin", "size"}        -> {"note": the signed checkpoint of that size | null}
    {"op": "consistency", "origin", "old", "new"} -> {"path": RFC 9162 consistency proof, hex}
    {"op": "entries", "origin", "start", "stop"}  -> b"LINES\n" + export lines joined by "\n"
                                                     (at most MAX_LINES; errors come back as JSON)
A puller checks every head it is given against its ReplicaStore (split views are detected there,
whoever serves the head); for an origin that is ahead it first asks for the server's signed
checkpoint of the size it already holds (a different root there is a split view), then checks
an RFC 9162 consistency proof from its verified size to the head, then fetches the missing entries in chunks
and applies them only if they reach the signed root (host/mesh/replica.py). A cell never accepts
entries of its own origin from others. Origins beyond `replicate(origin)` (the replication
fan-out) are followed by their verified head only: a newer signed head is accepted with a
consistency proof from the held one, nothing downloaded (host/mesh/heads.py). Split-view evidence another cell holds is checked on its
own (two signed checkpoints that cannot both be true) and then shared: the origin is untrusted
here too.

    rep = Replicator(ledger, store, tls_folder, "cell-b", peers=[(host, port, "cell-a")])
    port = await rep.start("127.0.0.1", 0); report = await rep.pull(peer); await rep.close()
"""
import asyncio
import json

from becomingone.ledger import checkpoint as ckpt, merkle
from becomingone.mesh.replica import ReplicaError
from becomingone.mesh.tls import MeshServer, MeshTLSError, connector

MAX_LINES = 5000
LINES_MAGIC = b"LINES\n"


def _enc(obj):
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode("ascii")


def serve(ledger, store, msg):
    """Answer one request about this cell's ledger (`ledger`, or None) or a replica it holds
    (`store`): ops entries (-> raw LINES bytes), consistency, checkpoint (-> a dict to encode).
    Raises ValueError naming what is wrong with the request (shared by the NATS backend)."""
    op, o = msg.get("op"), msg.get("origin")
    own = ledger is not None and o == ledger.origin
    held = not own and o in store.keys and o not in store.untrusted
    if op == "entries":
        a, b = msg.get("start"), msg.get("stop")
        if type(a) is not int or type(b) is not int or not 0 <= a <= b:
            raise ValueError("start/stop must be ints with 0 <= start <= stop")
        b = min(b, a + MAX_LINES)
        if own:
            lines = [e.to_json() for e in ledger.entries(a, b)]
        elif held:
            lines = store.entries(o, a, b)
        else:
            raise ValueError("no ledger of origin %r here" % (o,))
        # raw lines (ASCII, no newlines inside: canonical JSON escapes them), not JSON in JSON
        return LINES_MAGIC + "\n".join(lines).encode("ascii")
    if op == "consistency":
        m, n = msg.get("old"), msg.get("new")
        if type(m) is not int or type(n) is not int or not 0 <= m <= n:
            raise ValueError("old/new must be ints with 0 <= old <= new")
        if own:
            if n > ledger.size:
                raise ValueError("new size %d beyond our ledger (%d)" % (n, ledger.size))
            path = ledger.consistency_proof(m, n)["path"] if 0 < m < n else []
        elif held:
            if n > store.size(o):
                raise ValueError("new size %d beyond our replica (%d)" % (n, store.size(o)))
            path = store.replica(o).consistency_path(m, n)
        else:
            raise ValueError("no ledger of origin %r here" % (o,))
        return {"path": path}
    if op == "checkpoint":
        size = msg.get("size")
        if type(size) is not int or size < 0:
            raise ValueError("size must be an int >= 0")
        note = None
        if own:
            note = next((t for t in ledger.checkpoints() if ckpt.parse_note(t)["size"] == size), None)
        elif held:
            note = store.note_of_size(o, size)
        return {"note": note}
    raise ValueError("unknown op %r (allowed: heads, entries, consistency, checkpoint)" % (op,))


class Replicator:
    """Verified ledger replication between cells: serves this cell's ledger (heads, entries,
    checkpoints, consistency proofs) and pulls peers' into the ReplicaStore (or only their
    heads, for origins `replicate` says no to). Raises ReplicaError for entries that do not
    reach a signed root; pull() reports alerts instead of raising."""
    def __init__(self, ledger, store, folder, cell, peers=(), timeout=10.0, replicate=None, heads=None,
                 pool=None):
        self.ledger, self.store, self.folder, self.cell = ledger, store, folder, cell
        self._connect = connector(folder, cell, pool)
        self.timeout = timeout        # connect and each request (a cut link never answers)
        self.peers = list(peers)
        self.server = MeshServer(folder, cell, self.handle)
        self.alerts = []            # split-view / forged-entry reports
        self.entries_applied = 0
        # replicate(origin) -> bool: keep a full replica (default: every pinned origin); the
        # others are followed by their verified head only (host/mesh/heads.py HeadTracker)
        self.replicate = replicate or (lambda origin: True)
        self.head_tracker = heads

    async def start(self, host="127.0.0.1", port=18789):
        return await self.server.start(host, port)

    async def close(self):
        await self.server.close()

    # ------------------------------------------------------------ serving
    def heads(self):
        out = {}
        if self.ledger is not None:
            note = self.ledger.latest_checkpoint()
            if note is not None:
                out[self.ledger.origin] = note
        for origin in self.store.keys:
            if self.ledger is not None and origin == self.ledger.origin:
                continue
            if origin not in self.store.untrusted and self.replicate(origin):
                note = self.store.latest(origin)
                if note is not None:
                    out[origin] = note
        return out

    async def handle(self, peer, payload):
        try:
            msg = json.loads(payload)
            if not isinstance(msg, dict):
                raise ValueError("not an object")
            if msg.get("op") == "heads":
                return _enc({"heads": self.heads(), "evidence": self.store.evidence()})
            out = serve(self.ledger, self.store, msg)
            return out if isinstance(out, bytes) else _enc(out)
        except (ValueError, ReplicaError) as e:
            return _enc({"error": "%s: %s" % (peer, e)})

    # ------------------------------------------------------------ pulling
    async def _req(self, conn, obj):
        msg = json.loads(await asyncio.wait_for(conn.request(_enc(obj)), self.timeout))
        if not isinstance(msg, dict) or "error" in msg:
            raise ReplicaError("peer %s answered %r" % (conn.name, msg))
        return msg

    async def _lines(self, conn, obj):
        rep = await asyncio.wait_for(conn.request(_enc(obj)), self.timeout)
        if not rep.startswith(LINES_MAGIC):
            raise ReplicaError("peer %s answered %r" % (conn.name, rep[:200]))
        body = rep[len(LINES_MAGIC):]
        try:
            return body.decode("ascii").split("\n") if body else []
        except UnicodeDecodeError:
            raise ReplicaError("peer %s sent non-ASCII entry lines" % conn.name) from None

    def _alert(self, report, alert):
        report["alerts"].append(alert)
        self.alerts.append(alert)

    async def _check_head(self, conn, origin, note, report):
        """An origin we do not replicate: check its signed head against the verified head we
        hold with a consistency proof only (no entries downloaded)."""
        async def prove(old, new):
            got = await self._req(conn, {"op": "consistency", "origin": origin, "old": old, "new": new})
            return got.get("path")
        seen = await self.head_tracker.check(origin, note, prove)
        report.setdefault("heads", {})[origin] = seen["status"]
        if seen["status"] == "split-view":
            self._alert(report, seen)
        elif seen["status"] == "refused" and "not consistent" in seen.get("why", ""):
            report["refused"][origin] = seen["why"]
            self._alert(report, {"status": "inconsistent-head", "origin": origin, "peer": conn.name,
                                 "why": seen["why"]})

    async def pull(self, peer=None):
        """Fetch heads from `peer` (host, port, expected cell) and catch up every pinned origin.
        -> {"applied": {origin: n}, "refused": {origin: why}, "alerts": [...], "error": str|None}"""
        host, port, expect = peer or self.peers[0]
        report = {"applied": {}, "refused": {}, "alerts": [], "error": None}
        try:
            conn = await self._connect(host, port, expect=expect, timeout=self.timeout)
        except MeshTLSError as e:
            report["error"] = str(e)
            return report
        try:
            got = await self._req(conn, {"op": "heads"})
            heads = got.get("heads") or {}
            for ev in got.get("evidence") or []:          # split views other cells proved
                if isinstance(ev, dict) and ev.get("origin") in self.store.keys \
                        and ev.get("origin") not in self.store.untrusted:
                    try:
                        self.store.check_evidence(ev)
                        alert = {"status": "split-view", "origin": ev["origin"], "why": "evidence from %s" % conn.name}
                        report["alerts"].append(alert)
                        self.alerts.append(alert)
                    except ReplicaError as e:
                        report["refused"][ev.get("origin")] = str(e)
            for origin, note in sorted(heads.items()):
                if origin not in self.store.keys or (self.ledger is not None and origin == self.ledger.origin):
                    continue
                if not self.replicate(origin):
                    if self.head_tracker is not None:
                        await self._check_head(conn, origin, note, report)
                    continue
                try:
                    seen = self.store.observe(origin, note)
                except ReplicaError as e:
                    report["refused"][origin] = str(e)
                    self._alert(report, {"status": "bad-checkpoint", "origin": origin, "peer": conn.name,
                                         "why": str(e)})
                    continue
                if seen["status"] == "split-view":
                    report["alerts"].append(seen)
                    self.alerts.append(seen)
                    continue
                if seen["status"] != "ahead":
                    continue
                # cross-check: the server's signed checkpoint of OUR size, if it has one, must
                # have our root (else the origin signed two histories: split view)
                have = self.store.size(origin)
                other = (await self._req(conn, {"op": "checkpoint", "origin": origin, "size": have})).get("note")
                if isinstance(other, str) and have > 0:
                    try:
                        seen = self.store.observe(origin, other)
                    except ReplicaError as e:
                        report["refused"][origin] = str(e)
                        continue
                    if seen["status"] == "split-view":
                        report["alerts"].append(seen)
                        self.alerts.append(seen)
                        continue
                target = ckpt.parse_note(note)["size"]
                if have > 0:
                    # the new head must extend what we verified: RFC 9162 consistency proof
                    # from our size to the head, checked before downloading anything
                    path = (await self._req(conn, {"op": "consistency", "origin": origin, "old": have,
                                                   "new": target})).get("path")
                    ok = isinstance(path, list) and all(isinstance(x, str) and len(x) == 64 for x in path)
                    if not ok or not merkle.verify_consistency(
                            have, target, self.store.root(origin), ckpt.parse_note(note)["root"],
                            [bytes.fromhex(x) for x in path]):
                        report["refused"][origin] = ("%s's head of size %d is not consistent with our verified "
                                                     "size %d (proof from %s fails)" % (origin, target, have, conn.name))
                        self._alert(report, {"status": "inconsistent-head", "origin": origin, "peer": conn.name,
                                             "why": report["refused"][origin]})
                        continue
                lines = []
                start = self.store.size(origin)
                while start + len(lines) < target:
                    a = start + len(lines)
                    got = await self._lines(conn, {"op": "entries", "origin": origin, "start": a,
                                                   "stop": target})
                    if not got:
                        break
                    lines += got
                try:
                    n = self.store.apply(origin, lines, note)
                    report["applied"][origin] = n
                    self.entries_applied += n
                except ReplicaError as e:
                    report["refused"][origin] = str(e)
                    self._alert(report, {"status": "forged", "origin": origin, "peer": conn.name, "why": str(e)})
        except (ReplicaError, MeshTLSError, ValueError, OSError, asyncio.TimeoutError) as e:
            report["error"] = str(e) or type(e).__name__
        finally:
            await conn.close()
        return report
