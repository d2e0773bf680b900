"""Push-pull anti-entropy of the versioned T_global map over the mutual-TLS transport.

One exchange (the initiator A, a random peer B, one connection):
    A -> B  {"op": "digest", "digest": A's digest}
    B -> A  {"entries": B.delta(A's digest), "digest": B's digest}     A merges the entries
    A -> B  {"op": "push", "entries": A.delta(B's digest)}
    B -> A  {"merged": n}
JSON frames (host/mesh/tls.py framing). The peer's cell name comes from its certificate; a
frame that is not one of the above gets {"error": ...}. Each exchange is idempotent (see
host/mesh/aggregate.py), so a lost or repeated exchange is harmless.

    ae = AntiEntropy(agg, tls_folder, "cell-a", peers=[("10.0.0.2", 18789, "cell-b"), ...])
    port = await ae.start("0.0.0.0", 18789)
    await ae.exchange()            # one round with one random peer -> bytes sent + received
    await ae.run(interval=1.0)     # forever (cancel the task to stop); await ae.close()
"""
import asyncio
import json
import random

from becomingone.mesh.aggregate import AggregateError
from becomingone.mesh.tls import MeshServer, MeshTLSError, connector


def _enc(obj):
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode("ascii")


class AntiEntropy:
    """Push-pull anti-entropy of the VersionedAggregate with peers over mutual TLS (digest,
    then the entries the other side lacks); counts failures. Raises MeshTLSError from
    start(); exchange() counts instead of raising."""
    def __init__(self, agg, folder, cell, peers=(), rng=None, timeout=10.0, pool=None):
        self.agg, self.folder, self.cell = agg, folder, cell
        self._connect = connector(folder, cell, pool)
        self.timeout = timeout        # connect and each request (a cut link never answers)
        self.peers = list(peers)
        self.rng = rng or random.Random()
        self.server = MeshServer(folder, cell, self.handle)
        self.bytes_sent = self.bytes_received = 0
        self.exchanges = self.failures = 0
        self.last_error = None

    async def start(self, host="127.0.0.1", port=18789):
        return await self.server.start(host, port)

    async def close(self):
        await self.server.close()

    async def handle(self, peer, payload):
        self.bytes_received += len(payload) + 4
        try:
            msg = json.loads(payload)
            if not isinstance(msg, dict):
                raise ValueError("not an object")
            if msg.get("op") == "digest":
                reply = {"entries": self.agg.delta(msg.get("digest")), "digest": self.agg.digest()}
            elif msg.get("op") == "push":
                ents = msg.get("entries")
                if not isinstance(ents, list):
                    raise ValueError("entries must be a list")
                reply = {"merged": self.agg.merge(ents)}
            else:
                raise ValueError("unknown op %r" % (msg.get("op"),))
        except (ValueError, AggregateError) as e:
            reply = {"error": "%s: %s" % (peer, e)}
        out = _enc(reply)
        self.bytes_sent += len(out) + 4
        return out

    async def _req(self, conn, obj):
        data = _enc(obj)
        self.bytes_sent += len(data) + 4
        rep = await asyncio.wait_for(conn.request(data), self.timeout)
        self.bytes_received += len(rep) + 4
        msg = json.loads(rep)
        if not isinstance(msg, dict) or "error" in msg:
            raise MeshTLSError("peer %s answered %r" % (conn.name, msg))
        return msg

    async def exchange(self, peer=None):
        """One push-pull exchange with `peer` (host, port, expected cell) or a random one.
        -> True on success; failures are counted (`failures`, `last_error`), not raised."""
        if peer is None and not self.peers:
            return False
        host, port, expect = peer or self.rng.choice(self.peers)
        try:
            conn = await self._connect(host, port, expect=expect, timeout=self.timeout)
        except MeshTLSError as e:
            self.failures += 1
            self.last_error = str(e)
            return False
        try:
            got = await self._req(conn, {"op": "digest", "digest": self.agg.digest()})
            self.agg.merge(got.get("entries") or [])
            await self._req(conn, {"op": "push", "entries": self.agg.delta(got.get("digest") or {})})
            self.exchanges += 1
            return True
        except (MeshTLSError, AggregateError, ValueError, OSError, asyncio.TimeoutError) as e:
            self.failures += 1
            self.last_error = str(e)
            return False
        finally:
            await conn.close()

    async def run(self, interval=1.0):
        while True:
            await self.exchange()
            await asyncio.sleep(interval * (0.5 + self.rng.random()))
