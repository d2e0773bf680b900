"""One cell's mesh services on ONE mutual-TLS listener: SWIM membership, anti-entropy of the
versioned T_global map, and verified ledger replication, with peers taken from the live
membership. Messages are dispatched by shape: {"type": ...} -> SWIM, {"op": "digest"|"push"}
-> anti-entropy, {"op": "heads"|"entries"|"checkpoint"|"consistency"} -> replication,
{"op": "identity"} -> this cell's ledger origin and Ed25519 public key (pinned by peers on first
contact when `pin` is on).

Trust: a folder of `<cell>.json` files {"cell", "origin", "public_key_pem"} (one per cell: its
ledger origin and Ed25519 key, which also signs its T_global entries). Written by `write_trust`.

Process entry (used by the multi-process tests; prints one JSON status line per period):
    python -m becomingone.mesh.backends.embedded --tls DIR --trust DIR --cell NAME --ledger DB --replicas DIR
        --port P [--host H] [--seed H:P ...] [--interval 0.5] [--t-hat RE,IM] [--devices N]
        [--append-every K]
"""
import argparse
import asyncio
import json
import os
import random
import sys

from becomingone.ledger import checkpoint as ckpt
from becomingone.mesh.aggregate import VersionedAggregate
from becomingone.mesh.antientropy import AntiEntropy
from becomingone.mesh.heads import HeadTracker
from becomingone.mesh.replica import ReplicaStore
from becomingone.mesh.replication import Replicator
from becomingone.mesh.swimnet import SwimNode
from becomingone.mesh.tls import ConnectionPool, MeshTLSError


def write_trust(folder, cell, ledger):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, cell + ".json"), "w") as f:
        json.dump({"cell": cell, "origin": ledger.origin, "public_key_pem": ledger.public_key_pem()}, f)


def load_trust(folder):
    out = {}
    for name in sorted(os.listdir(folder)):
        if name.endswith(".json"):
            with open(os.path.join(folder, name)) as f:
                t = json.load(f)
            out[t["cell"]] = (t["origin"], ckpt.load_public_key(t["public_key_pem"].encode("ascii")))
    return out


class MeshNode:
    """One cell's mesh services. trust: {cell: (origin, Ed25519 public key)} (load_trust);
    trust_dir: where peers pinned on first contact are written (pin=True); fanout: cells keeping
    a full replica of each ledger (None: all), the rest follow its verified head (heads_path)."""

    def __init__(self, tls, trust, cell, ledger, replicas, host="127.0.0.1", port=0, seeds=(),
                 interval=0.5, timeout=0.3, rng=None, advertise=None, trust_dir=None, pin=False,
                 fanout=None, heads_path=None):
        self.cell, self.ledger, self.tls = cell, ledger, tls
        self.rng = rng or random.Random()
        self.trust = dict(trust)
        self.trust_dir, self.pin, self.fanout = trust_dir, pin, fanout
        key, _pub = ckpt.load_or_create_key(os.path.dirname(os.path.abspath(ledger.path)))
        self.trust[cell] = (ledger.origin, _pub)
        self.agg = VersionedAggregate(cell, signing_key=key, keys={c: p for c, (_o, p) in self.trust.items()},
                                      ttl=max(5.0, 10 * interval))
        self.store = ReplicaStore(replicas, {o: p for c, (o, p) in self.trust.items() if c != cell})
        self.heads = HeadTracker(heads_path or os.path.join(replicas, "heads.json"), self.store)
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
        self._ring = None

    # ------------------------------------------------------------ trust and placement
    def origin_cell(self, origin):
        return next((c for c, (o, _p) in self.trust.items() if o == origin), None)

    def replicates(self, origin):
        """Whether this cell keeps a full replica of `origin`'s ledger: the `fanout` cells after
        the origin on the consistent-hashing ring of the trusted cells (host/mesh/ring.py)."""
        if self.fanout is None:
            return True
        cells = sorted(self.trust)
        if self._ring is None or self._ring[0] != cells:
            from becomingone.mesh.ring import Ring
            self._ring = (cells, Ring(cells))
        owner = self.origin_cell(origin)
        if owner is None:
            return False
        holders = [c for c in self._ring[1].get_n("ledger:" + owner, len(cells)) if c != owner]
        return self.cell in holders[:self.fanout]

    def add_trust(self, cell, origin, pub_pem):
        pub = ckpt.load_public_key(pub_pem.encode("ascii"))
        self.trust[cell] = (origin, pub)
        self.agg.keys[cell] = pub
        self.store.keys[origin] = pub
        if self.trust_dir:
            os.makedirs(self.trust_dir, exist_ok=True)
            path = os.path.join(self.trust_dir, cell + ".json")
            tmp = path + ".tmp"
            with open(tmp, "w") as f:
                json.dump({"cell": cell, "origin": origin, "public_key_pem": pub_pem}, f)
            os.replace(tmp, path)

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
            return await self.ae._handle(peer, payload)
        if isinstance(msg, dict) and msg.get("op") in ("heads", "entries", "checkpoint", "consistency"):
            return await self.rep._handle(peer, payload)
        if isinstance(msg, dict) and msg.get("op") == "identity":
            return json.dumps({"cell": self.cell, "origin": self.ledger.origin,
                               "public_key_pem": self.ledger.public_key_pem()}).encode("ascii")
        return await self.swim._handle(peer, payload)

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

    def alive_count(self):
        """Cells not declared dead (alive or suspect), this one included."""
        return self.swim.swim.alive_count()

    def status(self):
        t, w = self.agg.t_global()
        return {"cell": self.cell, "view": self.swim.swim.view(), "t_global": [t.real, t.imag],
                "weights": w, "size": self.ledger.size,
                "replicas": {c: self.store.size(o) for c, (o, _p) in self.trust.items()
                             if c != self.cell and self.replicates(o)},
                "heads": {c: self.heads.size(o) for c, (o, _p) in self.trust.items()
                          if c != self.cell and not self.replicates(o)},
                "alerts": len(self.alerts), "refused_values": self.agg.refused,
                "exchange_failures": self.ae.failures, "last_error": self.ae.last_error}

    async def close(self):
        await self.swim.close()
        await self.pool.close()


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m becomingone.mesh.backends.embedded")
    for flag in ("--tls", "--trust", "--cell", "--ledger", "--replicas"):
        p.add_argument(flag, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=18789)
    p.add_argument("--seed", action="append", default=[])
    p.add_argument("--interval", type=float, default=0.5)
    p.add_argument("--timeout", type=float, default=0.3)
    p.add_argument("--t-hat", default="0,0")
    p.add_argument("--devices", type=int, default=1)
    p.add_argument("--append-every", type=int, default=0, help="append an entry and sign a checkpoint every K periods")
    a = p.parse_args(argv)
    from becomingone.ledger import Ledger
    re_, im_ = (float(x) for x in a.t_hat.split(","))

    async def go():
        led = Ledger(a.ledger)
        node = MeshNode(a.tls, load_trust(a.trust), a.cell, led, a.replicas, a.host, a.port,
                        seeds=a.seed, interval=a.interval, timeout=a.timeout)
        await node.start()
        k = 0
        while True:
            k += 1
            if a.append_every and k % a.append_every == 0:
                led.append("action", {"action": "tick", "period": k})
                led.checkpoint()
            await node.period(complex(re_, im_), a.devices)
            sys.stdout.write(json.dumps(node.status(), sort_keys=True) + "\n")
            sys.stdout.flush()
            await asyncio.sleep(a.interval)
    try:
        asyncio.run(go())
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
