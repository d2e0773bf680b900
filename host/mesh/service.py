"""The mesh as a service of a running coordinator: one background thread with its own asyncio
loop runs this cell's mesh (`sync.backend: embedded`: host/mesh/node.py over mutual TLS;
`nats`: host/mesh/natsbackend.py over NATS JetStream) once per `sync.mesh.interval`.

    svc = MeshService(cfg, ledger, data_dir)     # paths and names from the config (docs/MESH.md)
    svc.check()                  # UserError naming what is missing (TLS material: the exact
                                 # `becomingone mesh init` command) before anything starts
    svc.start()                  # thread + loop; returns once the listener / connection is up
    svc.publish(T_hat, devices)  # this cell's value for the next period (any thread)
    svc.status() -> dict         # the last period's snapshot (any thread; docs/MESH.md "status")
    svc.alerts_since(n) -> (alerts, n')   split-view / forged-entry alerts not yet taken
    svc.stop()

Nothing here blocks the coordinator: the coordinator's processing thread only reads snapshots.
"""
import asyncio
import os
import socket
import threading
import time

from becomingone.errors import UserError

MAX_ALERTS_SHOWN = 20


def _advertise(m):
    if m.advertise:
        return m.advertise
    if m.listen not in ("0.0.0.0", "::", ""):
        return m.listen
    for p in m.peers:        # the local address the route to the first peer leaves from
        try:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                s.connect((p.host, int(p.port)))
                return s.getsockname()[0]
            finally:
                s.close()
        except OSError:
            continue
    return "127.0.0.1"


class MeshService:
    def __init__(self, cfg, ledger, data_dir):
        m = cfg.sync.mesh
        self.cfg, self.ledger = cfg, ledger
        self.backend = cfg.sync.backend
        self.cell = m.cell or cfg.becomingone.name
        base = os.path.join(data_dir, "mesh")
        self.tls_dir = os.path.abspath(os.path.expanduser(m.tls_dir)) if m.tls_dir else os.path.join(base, "tls")
        self.trust_dir = os.path.abspath(os.path.expanduser(m.trust_dir)) if m.trust_dir else os.path.join(base, "trust")
        self.replicas_dir = os.path.join(base, "replicas")
        self.interval, self.timeout = float(m.interval), float(m.probe_timeout)
        self.seeds = ["%s:%d" % (p.host, p.port) for p in m.peers]
        self.listen, self.port = m.listen, int(m.port)
        self.advertise = None
        self._value = (0j, 0)
        self._lock = threading.Lock()
        self._status = {"enabled": True, "cell": self.cell, "backend": self.backend, "running": False}
        self._alerts = []
        self.thread = self.loop = self._stop = None
        self._ready = threading.Event()
        self._error = None
        self.node = self.nats = None
        self.periods = self.errors = 0
        self.last_error = None

    # ------------------------------------------------------------ coordinator side
    def check(self):
        from becomingone.mesh.tls import init_mesh  # noqa: F401  (the cryptography package is there)
        if self.backend != "embedded":
            return
        missing = [p for p in (os.path.join(self.tls_dir, "ca.pem"),
                               os.path.join(self.tls_dir, "cells", self.cell + ".pem"),
                               os.path.join(self.tls_dir, "cells", self.cell + ".key"))
                   if not os.path.exists(p)]
        if missing:
            raise UserError(
                "sync.mesh_enabled is true but the mesh TLS material for cell %r is missing (%s). "
                "Make it with `becomingone mesh init --dir %s --cells %s` (one CA for the whole mesh: "
                "run it once with every cell name and copy ca.pem and cells/CELL.pem|.key to each "
                "cell), or point sync.mesh.tls_dir at the folder holding them"
                % (self.cell, ", ".join(missing), self.tls_dir, self.cell))

    def start(self, timeout=20.0):
        self.check()
        self.thread = threading.Thread(target=self._main, name="mesh", daemon=True)
        self.thread.start()
        if not self._ready.wait(timeout):
            raise UserError("the mesh did not start within %g s" % timeout)
        if self._error is not None:
            self.thread.join(5)
            raise self._error
        return self

    def publish(self, t_hat, devices):
        with self._lock:
            self._value = (complex(t_hat), int(devices))

    def status(self):
        with self._lock:
            return dict(self._status)

    def alerts_since(self, n):
        with self._lock:
            return list(self._alerts[n:]), len(self._alerts)

    def stop(self):
        if self.loop is not None and self._stop is not None and self.thread.is_alive():
            self.loop.call_soon_threadsafe(self._stop.set)
            self.thread.join(10)

    # ------------------------------------------------------------ the mesh thread
    def _main(self):
        self.loop = asyncio.new_event_loop()
        try:
            self.loop.run_until_complete(self._run())
        finally:
            self.loop.close()

    async def _run(self):
        self._stop = asyncio.Event()
        try:
            await (self._open_embedded() if self.backend == "embedded" else self._open_nats())
        except Exception as e:
            self._error = e if isinstance(e, UserError) else UserError("the mesh could not start: %s: %s"
                                                                       % (type(e).__name__, e))
            self._ready.set()
            return
        self._ready.set()
        try:
            while not self._stop.is_set():
                t0 = time.monotonic()
                try:
                    await (self._period_embedded() if self.node is not None else self._period_nats())
                except Exception as e:       # counted and shown; the next period tries again
                    self.errors += 1
                    self.last_error = "%s: %s" % (type(e).__name__, e)
                self.periods += 1
                self._snapshot()
                try:
                    await asyncio.wait_for(self._stop.wait(), max(0.0, self.interval - (time.monotonic() - t0)))
                except asyncio.TimeoutError:
                    pass
        finally:
            await self._close()
            with self._lock:
                self._status["running"] = False

    async def _open_embedded(self):
        from becomingone.mesh.backends.embedded import MeshNode, load_trust, write_trust
        m = self.cfg.sync.mesh
        self.advertise = _advertise(m)
        write_trust(self.trust_dir, self.cell, self.ledger)
        self.node = MeshNode(self.tls_dir, load_trust(self.trust_dir), self.cell, self.ledger,
                             self.replicas_dir, host=self.listen, port=self.port, seeds=self.seeds,
                             interval=self.interval, timeout=self.timeout, advertise=self.advertise,
                             trust_dir=self.trust_dir, pin=bool(m.pin_peers), fanout=int(m.replication_fanout))
        try:
            self.port = await self.node.start()
        except OSError as e:
            raise UserError("mesh listener %s:%d: %s (sync.mesh.listen / sync.mesh.port)"
                            % (self.listen, self.port, e.strerror or e)) from None

    async def _open_nats(self):
        from becomingone.ledger import checkpoint as ckpt
        from becomingone.mesh.aggregate import VersionedAggregate
        from becomingone.mesh.backends.nats import NatsCell
        from becomingone.mesh.backends.embedded import load_trust, write_trust
        from becomingone.mesh.replica import ReplicaStore
        n = self.cfg.sync.nats
        write_trust(self.trust_dir, self.cell, self.ledger)
        self.trust = load_trust(self.trust_dir)
        key, _pub = ckpt.load_or_create_key(os.path.dirname(os.path.abspath(self.ledger.path)))
        agg = VersionedAggregate(self.cell, signing_key=key, keys={c: p for c, (_o, p) in self.trust.items()},
                                 ttl=max(5.0, 10 * self.interval))
        store = ReplicaStore(self.replicas_dir, {o: p for c, (o, p) in self.trust.items() if c != self.cell})
        self.nats = NatsCell(n.url, self.cell, ledger=self.ledger, store=store, agg=agg,
                             replicas=int(n.replicas), member_ttl=float(n.member_ttl))
        await self.nats.connect()
        self.nats_members, self.nats_alerts, self._next_publish = [], [], 0.0

    async def _close(self):
        try:
            if self.node is not None:
                await self.node.close()
            if self.nats is not None:
                await self.nats.close()
        except Exception:
            pass

    async def _period_embedded(self):
        with self._lock:
            t_hat, devices = self._value
        await self.node.period(t_hat, devices)

    async def _period_nats(self):
        from becomingone.mesh.replica import ReplicaError
        c = self.nats
        with self._lock:
            t_hat, devices = self._value
        await c.heartbeat()
        now = time.monotonic()
        if now >= self._next_publish:
            self._next_publish = now + float(self.cfg.sync.mesh.checkpoint_interval)
            await c.publish_ledger()
        await c.publish_value(t_hat, devices)
        await c.fetch_values()
        self.nats_members = await c.members()
        for cell, (origin, _p) in sorted(self.trust.items()):
            if cell == self.cell or origin in c.store.untrusted:
                continue
            try:
                await c.pull(origin)
            except ReplicaError as e:
                why = str(e)
                self.nats_alerts.append({"status": "split-view" if why.startswith("split view") else "forged",
                                         "origin": origin, "peer": "nats", "why": why})

    # ------------------------------------------------------------ status snapshot
    def _origin_rows(self, trust, store, replicates, heads):
        rows = {}
        for cell, (origin, _p) in sorted(trust.items()):
            if cell == self.cell:
                continue
            full = replicates(origin)
            latest = store.latest(origin) if full else None
            signed = 0
            if latest:
                from becomingone.ledger import checkpoint as ckpt
                signed = ckpt.parse_note(latest)["size"]
            size = store.size(origin) if full else (heads.size(origin) if heads is not None else 0)
            rows[cell] = {"origin": origin, "mode": "replica" if full else "head", "size": size,
                          "verified": size > 0 and (not full or signed == size),
                          "untrusted": origin in store.untrusted,
                          "alerts": sum(1 for a in self._alerts if a.get("origin") == origin)}
        return rows

    def _snapshot(self):
        from becomingone.ledger import checkpoint as ckpt
        st = {"enabled": True, "running": True, "cell": self.cell, "backend": self.backend,
              "interval": self.interval, "periods": self.periods, "errors": self.errors,
              "last_error": self.last_error}
        led_note = self.ledger.latest_checkpoint()
        st["ledger"] = {"origin": self.ledger.origin, "size": self.ledger.size,
                        "signed": ckpt.parse_note(led_note)["size"] if led_note else 0}
        if self.node is not None:
            nd = self.node
            new_alerts = nd.alerts[len(self._alerts):]
            members = {self.cell: {"state": "alive", "incarnation": nd.swim.swim.incarnation,
                                   "addr": nd.swim.swim.addr}}
            for mb in nd.swim.swim.members.values():
                members[mb.name] = {"state": mb.state, "incarnation": mb.incarnation, "addr": mb.addr}
            agg, store, rep = nd.agg, nd.store, nd.replicates
            st.update(listen="%s:%d" % (self.listen, self.port), advertise=self.advertise,
                      alive=nd.alive_count(), refused_values=agg.refused,
                      exchange_failures=nd.ae.failures, pin_refused=dict(nd.pin_refused))
            rows = lambda: self._origin_rows(nd.trust, store, rep, nd.heads)  # noqa: E731
        else:
            c = self.nats
            new_alerts = self.nats_alerts[len(self._alerts):]
            live = set(self.nats_members)
            members = {cell: {"state": "alive" if cell in live else "dead", "incarnation": None, "addr": None}
                       for cell in set(self.trust) | live}
            agg, store = c.agg, c.store
            st.update(url=self.cfg.sync.nats.url, alive=len(live | {self.cell}), refused_values=agg.refused)
            rows = lambda: self._origin_rows(self.trust, store, lambda o: True, None)  # noqa: E731
        t, w = agg.t_global()
        with self._lock:
            self._alerts += [dict(a, cell=self._cell_of(a.get("origin")), t=time.time()) for a in new_alerts]
        st.update(members=members, t_global=[t.real, t.imag], coherence=abs(t) ** 2, weights=w,
                  values={o: [e["re"], e["im"], e["devices"]] for o, e in agg.entries.items() if o in w},
                  published={"t_hat": [self._value[0].real, self._value[0].imag], "devices": self._value[1]},
                  replicas=rows(), alert_count=len(self._alerts), alerts=self._alerts[-MAX_ALERTS_SHOWN:],
                  split_views=sorted(store.untrusted))
        with self._lock:
            self._status = st

    def _cell_of(self, origin):
        trust = self.node.trust if self.node is not None else self.trust
        return next((c for c, (o, _p) in trust.items() if o == origin), None)
