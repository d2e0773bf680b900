"""The mesh as a service of a running coordinator: one background thread with its own asyncio
loop runs this cell's mesh backend (mesh/backends/: `sync.backend: embedded` over mutual TLS,
`nats` over NATS JetStream; both a MeshBackend) once per `sync.mesh.interval`.

    svc = MeshService(cfg, ledger, data_dir)     # paths and names from the config (docs/MESH.md)
    svc.check()                  # UserError naming what is missing (TLS material: the exact
                                 # `becomingone mesh init` command) before anything starts
    svc.start()                  # thread + loop; returns once the listener / connection is up
    svc.publish(T_hat, devices)  # this cell's value for the next period (any thread)
    svc.status() -> dict         # the last period's snapshot (any thread; docs/MESH.md "status")
    svc.alerts_since(n) -> (alerts, n')   split-view / forged-entry alerts not yet taken
    svc.reload()                 # trust files and CRL now (SIGHUP; both are also watched)
    svc.stop()

Nothing here blocks the coordinator: the coordinator's processing thread only reads snapshots.
"""
import asyncio
import os
import socket
import threading
import time

from becomingone.errors import BecomingOneError, MeshError, UserError
from becomingone.ledger import checkpoint as ckpt
from becomingone.mesh.backends.embedded import MeshNode
from becomingone.mesh.backends.nats import NatsMesh
from becomingone.mesh.trust import load_trust, write_trust

__all__ = ["MeshService", "BACKENDS"]

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
    """The mesh thread of a coordinator: owns the asyncio loop, the MeshBackend that
    sync.backend names (BACKENDS) and the last period's status snapshot and alerts; other
    threads only publish a value and read snapshots. Raises UserError or MeshError from
    check()/start() (missing TLS material, a listener that cannot be bound, a cluster that
    cannot be reached)."""
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
        self.node = None          # the MeshBackend, once started
        self.periods = self.errors = 0
        self.last_error = None

    # ------------------------------------------------------------ coordinator side
    def check(self):
        """What the backend needs before anything starts (UserError naming the fix)."""
        check = CHECKS.get(self.backend)
        if check is not None:
            check(self)

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

    def reload(self):
        """Reload the trust folder and the certificate revocation list now (SIGHUP); they are
        also watched, so this only hurries it. Any thread."""
        node = self.node
        if node is not None and self.loop is not None:
            self.loop.call_soon_threadsafe(node.request_reload)

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
            self.node = BACKENDS[self.backend](self)
            try:
                await self.node.start()
            except OSError as e:
                raise UserError("mesh listener %s:%d: %s (sync.mesh.listen / sync.mesh.port)"
                                % (self.listen, self.port, e.strerror or e)) from None
        except Exception as e:
            self._error = e if isinstance(e, BecomingOneError) else MeshError(
                "the mesh could not start: %s: %s" % (type(e).__name__, e))
            self._ready.set()
            return
        self._ready.set()
        try:
            while not self._stop.is_set():
                t0 = time.monotonic()
                with self._lock:
                    t_hat, devices = self._value
                try:
                    await self.node.period(t_hat, devices)
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
            try:
                await self.node.close()
            except Exception:
                pass
            with self._lock:
                self._status["running"] = False

    # ------------------------------------------------------------ status snapshot
    def _origin_rows(self, b):
        rows = {}
        for cell, (origin, _p) in sorted(b.trust.items()):
            if cell == self.cell:
                continue
            full = b.replicates(origin)
            latest = b.store.latest(origin) if full else None
            signed = ckpt.parse_note(latest)["size"] if latest else 0
            size = b.store.size(origin) if full else b.head_size(origin)
            rows[cell] = {"origin": origin, "mode": "replica" if full else "head", "size": size,
                          "verified": size > 0 and (not full or signed == size),
                          "untrusted": origin in b.store.untrusted,
                          "alerts": sum(1 for a in self._alerts if a.get("origin") == origin)}
        return rows

    def _snapshot(self):
        b = self.node
        st = {"enabled": True, "running": True, "cell": self.cell, "backend": self.backend,
              "interval": self.interval, "periods": self.periods, "errors": self.errors,
              "last_error": self.last_error}
        led_note = self.ledger.latest_checkpoint()
        st["ledger"] = {"origin": self.ledger.origin, "size": self.ledger.size,
                        "signed": ckpt.parse_note(led_note)["size"] if led_note else 0}
        new_alerts = b.alerts[len(self._alerts):]
        st.update(b.status_fields())
        st.update(alive=b.alive_count(), refused_values=b.agg.refused)
        t, w = b.agg.t_global()
        with self._lock:
            self._alerts += [dict(a, cell=b.origin_cell(a.get("origin")), t=time.time())
                             for a in new_alerts]
        st.update(members=b.members(), t_global=[t.real, t.imag], coherence=abs(t) ** 2, weights=w,
                  values={o: [e["re"], e["im"], e["devices"]] for o, e in b.agg.entries.items() if o in w},
                  published={"t_hat": [self._value[0].real, self._value[0].imag], "devices": self._value[1]},
                  replicas=self._origin_rows(b), alert_count=len(self._alerts),
                  alerts=self._alerts[-MAX_ALERTS_SHOWN:], split_views=sorted(b.store.untrusted))
        with self._lock:
            self._status = st


def _check_tls(svc):
    """The embedded backend needs this cell's mutual-TLS material."""
    missing = [p for p in (os.path.join(svc.tls_dir, "ca.pem"),
                           os.path.join(svc.tls_dir, "cells", svc.cell + ".pem"),
                           os.path.join(svc.tls_dir, "cells", svc.cell + ".key"))
               if not os.path.exists(p)]
    if missing:
        raise UserError(
            "sync.mesh_enabled is true but the mesh TLS material for cell %r is missing (%s). "
            "Make it with `becomingone mesh init --dir %s --cells %s` (one CA for the whole mesh: "
            "run it once with every cell name and copy ca.pem and cells/CELL.pem|.key to each "
            "cell), or point sync.mesh.tls_dir at the folder holding them"
            % (svc.cell, ", ".join(missing), svc.tls_dir, svc.cell))


def _embedded(svc):
    """The embedded backend: MeshNode (SWIM, anti-entropy, replication over mutual TLS)."""
    m = svc.cfg.sync.mesh
    svc.advertise = _advertise(m)
    write_trust(svc.trust_dir, svc.cell, svc.ledger)
    return MeshNode(svc.tls_dir, load_trust(svc.trust_dir), svc.cell, svc.ledger, svc.replicas_dir,
                    host=svc.listen, port=svc.port, seeds=svc.seeds, interval=svc.interval,
                    timeout=svc.timeout, advertise=svc.advertise, trust_dir=svc.trust_dir,
                    pin=bool(m.pin_peers), fanout=int(m.replication_fanout), archive=_archive(m),
                    shards_dir=os.path.join(os.path.dirname(svc.replicas_dir), "shards"))


def _nats(svc):
    """The NATS JetStream backend (nats-py, the `nats` extra)."""
    n = svc.cfg.sync.nats
    m = svc.cfg.sync.mesh
    return NatsMesh(n.url, svc.cell, svc.ledger, svc.trust_dir, svc.replicas_dir,
                    interval=svc.interval, replicas=int(n.replicas), member_ttl=float(n.member_ttl),
                    publish_every=float(m.checkpoint_interval), fanout=int(m.replication_fanout),
                    group_size=int(n.group_size), archive=_archive(m),
                    shards_dir=os.path.join(os.path.dirname(svc.replicas_dir), "shards"))


def _archive(m):
    """(k, n, segment entries) of sync.mesh.archive (segment 0: this cell seals nothing)."""
    a = m.archive
    if int(a.k) > int(a.n):
        raise UserError("sync.mesh.archive.k (%d) must be <= sync.mesh.archive.n (%d)" % (a.k, a.n))
    return int(a.k), int(a.n), int(a.segment_entries)


# sync.backend -> the MeshBackend it runs, and what it checks before the mesh thread starts
BACKENDS = {"embedded": _embedded, "nats": _nats}
CHECKS = {"embedded": _check_tls}
