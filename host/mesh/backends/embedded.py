"""The embedded mesh backend (`sync.backend: embedded`): one cell's mesh services on ONE
mutual-TLS listener: SWIM membership, anti-entropy of the versioned T_global map, and verified
ledger replication, with peers taken from the live membership. Messages are dispatched by shape: {"type": ...} -> SWIM, {"op": "digest"|"push"}
-> anti-entropy, {"op": "heads"|"entries"|"checkpoint"|"consistency"} -> replication,
{"op": "identity"} -> this cell's ledger origin and Ed25519 public key (pinned by peers on first
contact when `pin` is on).

Trust: mesh/trust.py (a folder of `<cell>.json` files, one per cell).
"""
import asyncio
import base64
import json
import os
import random

from becomingone.ledger import checkpoint as ckpt
from becomingone.mesh.aggregate import VersionedAggregate
from becomingone.mesh.archive import ArchiveError
from becomingone.mesh.archiving import Archiver, serve_shards
from becomingone.mesh.antientropy import AntiEntropy
from becomingone.mesh.backends.base import MeshBackend
from becomingone.mesh.cosign import MeshCosigning
from becomingone.mesh.heads import HeadTracker
from becomingone.mesh.replica import ReplicaStore
from becomingone.mesh.replication import Replicator
from becomingone.mesh.ring import ledger_holders
from becomingone.mesh.swimnet import SwimNode
from becomingone.mesh.tls import CRL_FILE, ConnectionPool, MeshTLSError
from becomingone.mesh.trust import TrustWatch, load_trust, write_trust_entry

__all__ = ["MeshNode"]


class MeshNode(MeshBackend):
    """The embedded backend: one cell's mesh services over mutual TLS. trust: {cell: (origin,
    Ed25519 public key)} (mesh/trust.py load_trust); trust_dir: where peers pinned on first
    contact are written (pin=True); fanout: cells keeping a full replica of each ledger (None:
    all), the rest follow its verified head (heads_path). start() raises OSError when the
    listener cannot be bound."""

    def __init__(self, tls, trust, cell, ledger, replicas, host="127.0.0.1", port=0, seeds=(),
                 interval=0.5, timeout=0.3, rng=None, advertise=None, trust_dir=None, pin=False,
                 fanout=None, heads_path=None, archive=None, shards_dir=None):
        self.cell, self.ledger, self.tls = cell, ledger, tls
        self.advertise = advertise
        self.rng = rng or random.Random()
        self.trust = dict(trust)
        self.trust_dir, self.pin, self.fanout = trust_dir, pin, fanout
        key, _pub = ledger.signing_key()
        self.trust[cell] = (ledger.origin, _pub)
        self.agg = VersionedAggregate(cell, signing_key=key, keys={c: p for c, (_o, p) in self.trust.items()},
                                      ttl=max(5.0, 10 * interval))
        self.store = ReplicaStore(replicas, {o: p for c, (o, p) in self.trust.items() if c != cell})
        self.heads = HeadTracker(heads_path or os.path.join(replicas, "heads.json"), self.store)
        # each cell witnesses its peers' checkpoints and has its own cosigned (host/mesh/cosign.py)
        self.cosign = MeshCosigning(cell, ledger, key, os.path.join(replicas, "witness"),
                                    {c: (o, p) for c, (o, p) in self.trust.items()},
                                    every=max(5.0, 10 * interval))
        # one kept TLS connection per peer, shared by SWIM, anti-entropy and replication
        self.pool = ConnectionPool(tls, cell)
        self.swim = SwimNode(tls, cell, host, port, seeds=seeds, interval=interval, timeout=timeout,
                             rng=self.rng, advertise=advertise, pool=self.pool)
        self.io_timeout = max(1.0, 4 * timeout)
        self.ae = AntiEntropy(self.agg, tls, cell, rng=self.rng, timeout=self.io_timeout, pool=self.pool)
        self.rep = Replicator(ledger, self.store, tls, cell, timeout=self.io_timeout,
                              replicate=self.replicates, heads=self.heads, pool=self.pool)
        # one listener: SWIM's server dispatches to the other services by message shape
        self.swim.server.handler = self._dispatch
        self.alerts = []
        self.pin_refused = {}         # cell -> why (a peer whose ledger key differs from the pinned one)
        # the trust folder and the CRL beside ca.pem are live: reloaded when they change or on
        # request (SIGHUP), no restart (docs/MESH.md "Trust")
        self.watch = TrustWatch(trust_dir) if trust_dir and os.path.isdir(trust_dir) else None
        # archive = (k, n, segment entries): seal and place this ledger's segments (archiving.py);
        # a cell holds others' shards whether or not it seals its own
        k, n, seg = archive or (3, 5, 0)
        self.archiver = Archiver(ledger, shards_dir or os.path.join(os.path.dirname(os.path.abspath(replicas)),
                                                                    "shards"),
                                 k=k, n=n, segment=seg or 1 << 62, cell=cell)
        self._crl_seen = None
        self._reload = False
        self.reloads = 0

    # ------------------------------------------------------------ trust and placement
    def replicates(self, origin):
        """Whether this cell keeps a full replica of `origin`'s ledger: the `fanout` cells after
        the origin on the consistent-hashing ring of the trusted cells (host/mesh/ring.py)."""
        if self.fanout is None:
            return True
        owner = self.origin_cell(origin)
        if owner is None:
            return False
        return self.cell in ledger_holders(self.trust, self.fanout).get(owner, ())

    def add_trust(self, cell, origin, pub_pem):
        pub = ckpt.load_public_key(pub_pem.encode("ascii"))
        self.trust[cell] = (origin, pub)
        self.agg.keys[cell] = pub
        self.store.keys[origin] = pub
        self.cosign.trust(cell, origin, pub)
        if self.trust_dir:
            write_trust_entry(self.trust_dir, cell, origin, pub_pem)

    def request_reload(self):
        """Reload trust files and the CRL at the next period (from a signal handler or any thread)."""
        self._reload = True
        if self.watch is not None:
            self.watch.request()

    def reload_trust(self, trust):
        """Trust exactly `trust` ({cell: (origin, key)}) from now on (this cell kept): a new cell's
        values and ledger are taken, a removed one's refused and its value dropped from T_global."""
        own = self.trust[self.cell]
        trust = dict(trust)
        trust[self.cell] = own
        gone = set(self.trust) - set(trust)
        self.trust = trust
        self.agg.keys.clear()
        self.agg.keys.update({c: p for c, (_o, p) in trust.items()})
        for c in gone:
            self.agg.entries.pop(c, None)
            self.agg.seen.pop(c, None)
            self.cosign.forget(c)
        for c, (o, p) in trust.items():
            self.cosign.trust(c, o, p)
        self.store.keys = {o: p for c, (o, p) in trust.items() if c != self.cell}
        for c in list(self.pin_refused):
            if c in trust:
                del self.pin_refused[c]
        self.reloads += 1
        return gone

    async def _maybe_reload(self):
        tls_crl = os.path.join(os.path.expanduser(self.tls), "ca.pem")
        crl = os.path.join(os.path.dirname(tls_crl), CRL_FILE)
        try:
            crl_m = os.stat(crl).st_mtime_ns
        except FileNotFoundError:
            crl_m = None
        if self.watch is not None and self.watch.changed():
            self.reload_trust(load_trust(self.trust_dir))
        if crl_m != self._crl_seen or self._reload:
            self._crl_seen, self._reload = crl_m, False
            # connections kept to or from a certificate revoked now are cut; new ones are refused
            await self.pool.drop_revoked()
            self.swim.server.drop_revoked()

    async def _pin_new(self, peers):
        """Pin the ledger identity of alive peers we have no trust entry for, asked over mutual
        TLS (the certificate names the cell, so a cell can only present its own identity)."""
        for host, port, name in peers:
            if name in self.trust or name in self.pin_refused:
                continue
            try:
                conn = await asyncio.wait_for(self.pool.connect(host, port, expect=name,
                                                                timeout=self.io_timeout), self.io_timeout)
            except (MeshTLSError, asyncio.TimeoutError, OSError):
                continue
            try:
                got = json.loads(await asyncio.wait_for(conn.request(b'{"op":"identity"}'), self.io_timeout))
                if not (isinstance(got, dict) and got.get("cell") == name and isinstance(got.get("origin"), str)
                        and isinstance(got.get("public_key_pem"), str)):
                    self.pin_refused[name] = "bad identity answer %.100r" % (got,)
                    continue
                self.add_trust(name, got["origin"], got["public_key_pem"])
            except (MeshTLSError, asyncio.TimeoutError, OSError, ValueError):
                pass                          # unreachable now: asked again next period
            finally:
                try:
                    await conn.close()
                except Exception:
                    pass

    # ------------------------------------------------------------ serving
    async def _dispatch(self, peer, payload):
        try:
            msg = json.loads(payload)
        except ValueError:
            msg = None
        if isinstance(msg, dict) and msg.get("op") in ("digest", "push"):
            return await self.ae.handle(peer, payload)
        if isinstance(msg, dict) and msg.get("op") in ("heads", "entries", "checkpoint", "consistency"):
            return await self.rep.handle(peer, payload)
        if isinstance(msg, dict) and msg.get("op") in ("shard", "shards"):
            sender = self.trust.get(peer, (None, None))[0]
            try:
                if msg["op"] == "shard" and sender is None:
                    raise ValueError("no trust file for cell %r: its shards are not kept" % peer)
                out = serve_shards(self.archiver, msg, sender)
            except (ValueError, ArchiveError) as e:
                out = {"error": "%s: %s" % (self.cell, e)}
            return json.dumps(out).encode("ascii")
        if isinstance(msg, dict) and msg.get("op") == "add-checkpoint":
            return await self.cosign.handle(msg)
        if isinstance(msg, dict) and msg.get("op") == "identity":
            return json.dumps({"cell": self.cell, "origin": self.ledger.origin,
                               "public_key_pem": self.ledger.public_key_pem()}).encode("ascii")
        return await self.swim.handle(peer, payload)

    async def start(self):
        return await self.swim.start()

    def _peers(self):
        out = []
        for m in self.swim.swim.members.values():
            if m.state == "alive" and m.addr:
                host, _, port = m.addr.rpartition(":")
                out.append((host, int(port), m.name))
        return out

    async def period(self, t_hat=None, devices=0):
        """One protocol period: probe, publish, one anti-entropy exchange and one pull."""
        await self._maybe_reload()
        await self.swim.swim.probe_once()
        if t_hat is not None:
            self.agg.publish(t_hat, devices)
        peers = self._peers()
        if self.pin:
            await self._pin_new(peers)
        peers = [p for p in peers if p[2] in self.trust]
        if peers:
            peer = self.rng.choice(peers)
            await self.ae.exchange(peer)
            rep = await self.rep.pull(peer)
            self.alerts += rep["alerts"]
            await self.cosign.period(peer[2], self._requester(peer))
        if self.archiver.due():
            addr = {name: (host, port) for host, port, name in peers}

            async def send(cell, blob):
                host, port = addr[cell]
                conn = await asyncio.wait_for(self.pool.connect(host, port, expect=cell, timeout=self.io_timeout),
                                              self.io_timeout)
                try:
                    got = json.loads(await asyncio.wait_for(conn.request(json.dumps(
                        {"op": "shard", "blob": base64.b64encode(blob).decode("ascii")}).encode("ascii")), 10.0))
                finally:
                    await conn.close()
                return isinstance(got, dict) and bool(got.get("stored"))
            await self.archiver.step(sorted(addr) + [self.cell], send)

    def _requester(self, peer):
        host, port, name = peer

        async def request(payload):
            conn = await asyncio.wait_for(self.pool.connect(host, port, expect=name,
                                                            timeout=self.io_timeout), self.io_timeout)
            try:
                return await asyncio.wait_for(conn.request(payload), self.io_timeout)
            finally:
                await conn.close()            # back to the pool
        return request

    def alive_count(self):
        """Cells not declared dead (alive or suspect), this one included."""
        return self.swim.swim.alive_count()

    def members(self):
        sw = self.swim.swim
        out = {self.cell: {"state": "alive", "incarnation": sw.incarnation, "addr": sw.addr}}
        for mb in sw.members.values():
            out[mb.name] = {"state": mb.state, "incarnation": mb.incarnation, "addr": mb.addr}
        return out

    def head_size(self, origin):
        return self.heads.size(origin)

    def status_fields(self):
        return {"listen": "%s:%d" % (self.swim.host, self.swim.port), "advertise": self.advertise,
                "exchange_failures": self.ae.failures, "pin_refused": dict(self.pin_refused),
                "archive": self.archiver.status()}

    def status(self):
        t, w = self.agg.t_global()
        return {"cell": self.cell, "view": self.swim.swim.view(), "t_global": [t.real, t.imag],
                "weights": w, "size": self.ledger.size,
                "replicas": {c: self.store.size(o) for c, (o, _p) in self.trust.items()
                             if c != self.cell and self.replicates(o)},
                "heads": {c: self.heads.size(o) for c, (o, _p) in self.trust.items()
                          if c != self.cell and not self.replicates(o)},
                "alerts": len(self.alerts), "refused_values": self.agg.refused,
                "cosigning": self.cosign.status(),
                "exchange_failures": self.ae.failures, "last_error": self.ae.last_error}

    async def close(self):
        await self.swim.close()
        await self.pool.close()
