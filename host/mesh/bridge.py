"""The coordinator's side of the mesh (`sync.mesh_enabled: true`; docs/MESH.md "In the coordinator").

MeshBridge runs in the coordinator's processing thread (tick) and talks to the mesh thread
(host/mesh/service.py) only through snapshots:
- every mesh interval it publishes this cell's T_hat: the mean of the sync layer's T_sync over
  the devices evaluated in the last STALE_S seconds (|T_hat| <= 1), with their number as n_P
  (T_global's weight, SPEC 4.3), and records T_global and each live cell's value and weight in
  memory's mesh_sync table;
- it signs a ledger checkpoint every sync.mesh.checkpoint_interval while the ledger grows (what
  peers replicate up to);
- a split view, forged entries or an inconsistent head from a peer become a `witness` ledger
  entry (layer meta, device 0, witness "mesh_alert");
- sync.mesh.pulse_follows_mesh: the T_Lambda pulse's P = cells alive in the mesh (alive or
  suspect, this one included), damped against churn: P moves only when the count has held for
  two mesh periods AND differs from P by at least max(1, sync.mesh.pulse_hysteresis x P). Each
  move is ONE ledger `config` entry (target "mesh:pulse": old and new P and period, cells
  alive); a device gets CONFIG pulse_p (through DeviceConfigs: ACK, retry; no ledger entry per
  device) only when its own beat period, in whole microseconds, actually changes (at large P
  the period hardly moves: T = T1 ln U / (1 - 1/(kP))); devices that come online later get it
  on their next mesh tick.
"""
import json
import os
import time

from becomingone.core.pulses import pulse_period_s
from becomingone.mesh.service import MeshService
from becomingone.util.atomic import write_json

__all__ = ["MeshBridge", "STALE_S"]

STALE_S = 10.0


class MeshBridge:
    """Owns the MeshService (the mesh thread) and the pulse state (DATA/mesh/pulse.json); runs
    tick() in the coordinator's processing thread. Ports: ledger (checkpoints, size), submit(kind,
    data) (ledger entries), micro(kind, **data) (witnessing), sync (the SyncLayer, or None),
    memory (the Memory store, or None), configure_devices(changes, note) (CONFIG to every online
    device whose state differs; -> how many). Raises UserError/MeshError from start() (missing
    TLS material, a listener that cannot be bound, a NATS cluster that cannot be reached)."""

    def __init__(self, cfg, data_dir, ledger, submit, micro, sync=None, memory=None,
                 configure_devices=None):
        self.cfg = cfg
        self.ledger = ledger
        self.submit = submit
        self.micro = micro
        self.sync = sync
        self.memory = memory
        self.configure_devices = configure_devices
        self.svc = MeshService(cfg, ledger, data_dir)
        self.interval = float(cfg.sync.mesh.interval)
        self.ckpt_every = float(cfg.sync.mesh.checkpoint_interval)
        self.follow = bool(cfg.sync.mesh.pulse_follows_mesh)
        self.hysteresis = float(cfg.sync.mesh.pulse_hysteresis)
        self._next = self._next_ckpt = 0.0
        self._alerts_taken = 0
        self._last_period = -1
        self._count_seen = (None, 0)        # (alive count, consecutive periods seen)
        self.pulse_path = os.path.join(data_dir, "mesh", "pulse.json")
        self.pulse = {"P": float(cfg.pulse.P), "version": 0, "cells_alive": None,
                      "period_us": int(round(cfg.beat_period() * 1e6))}
        if os.path.exists(self.pulse_path):
            try:
                with open(self.pulse_path) as f:
                    self.pulse.update(json.load(f))
            except (ValueError, OSError):
                pass
        self.counters = {"published": 0, "alerts": 0, "pulse_changes": 0, "checkpoints": 0,
                         "pulse_sent": 0, "pulse_damped": 0}

    def start(self):
        self.svc.start()
        return self

    def stop(self):
        self.svc.stop()

    def reload(self):
        """Trust files and the certificate revocation list, now (SIGHUP)."""
        self.svc.reload()

    def status(self):
        st = self.svc.status()
        st["pulse"] = dict(self.pulse, follows_mesh=self.follow)
        st["bridge"] = dict(self.counters)
        return st

    # ------------------------------------------------------------ processing thread
    def local_value(self, now_wall=None):
        """(T_hat, devices): the mean T_sync of the devices the sync layer evaluated recently."""
        if self.sync is None:
            return 0j, 0
        return self.sync.recent_mean(time.time() if now_wall is None else now_wall, STALE_S)

    def tick(self, now):
        if now < self._next:
            return
        self._next = now + min(self.interval, 1.0)
        t_hat, n = self.local_value()
        self.svc.publish(t_hat, n)
        self.counters["published"] += 1
        self._checkpoint(now)
        self._take_alerts()
        st = self.svc.status()
        if st.get("periods", 0) != self._last_period and st.get("running"):
            self._last_period = st["periods"]
            self._record(st)
            if self.follow:
                self._follow(st)
        if self.follow:
            self._tell_devices()

    def _checkpoint(self, now):
        led = self.ledger
        if now < self._next_ckpt:
            return
        self._next_ckpt = now + self.ckpt_every
        if led.size > led.signed_size():
            led.checkpoint()
            self.counters["checkpoints"] += 1

    def _take_alerts(self):
        alerts, self._alerts_taken = self.svc.alerts_since(self._alerts_taken)
        for a in alerts:
            self.counters["alerts"] += 1
            data = {"device": 0, "layer": "meta", "witness": "mesh_alert", "status": str(a.get("status")),
                    "origin": str(a.get("origin")), "cell": a.get("cell"), "peer": a.get("peer"),
                    "why": str(a.get("why", "")), "evidence": a.get("evidence")}
            self.submit("witness", {k: v for k, v in data.items() if v is not None})
            self.micro("mesh_alert", **{k: v for k, v in data.items() if k not in ("device", "layer")})

    def _record(self, st):
        mem = self.memory
        if mem is None:
            return
        t = time.time()
        tg = st.get("t_global") or [0.0, 0.0]
        mem.mesh_state(t, "T_global", complex(tg[0], tg[1]), weight=1.0,
                       extra={"cell": st.get("cell"), "alive": st.get("alive"),
                              "members": {c: m["state"] for c, m in st.get("members", {}).items()}})
        for origin, w in (st.get("weights") or {}).items():
            v = (st.get("values") or {}).get(origin)
            if v is not None:
                mem.mesh_state(t, origin, complex(v[0], v[1]), weight=w, extra={"devices": v[2]})

    # ------------------------------------------------------------ the pulse follows the mesh
    def band(self, P):
        """How far the live-cell count must move from P before P follows (the hysteresis)."""
        return max(1, int(round(self.hysteresis * P)))

    def _follow(self, st):
        n = st.get("alive")
        if not isinstance(n, int) or n < 1:
            return
        cnt, k = self._count_seen
        self._count_seen = (n, k + 1 if cnt == n else 1)
        P = self.pulse["P"]
        if self._count_seen[1] < 2 or float(n) == P:
            return
        if abs(n - P) < self.band(P):
            self.counters["pulse_damped"] += 1    # churn inside the band: nothing moves
            return
        p = self.cfg.pulse
        period = pulse_period_s(float(p.k), float(n), float(p.T1), float(p.U))
        if period is None:                    # k*P <= 1: T_Lambda undefined, keep the pulse
            self.pulse["skipped"] = "k*P = %g <= 1 at %d cells" % (p.k * n, n)
            return
        old, old_us = self.pulse["P"], self.pulse.get("period_us")
        self.pulse.update(P=float(n), version=int(self.pulse["version"]) + 1, cells_alive=n,
                          period_us=int(round(period * 1e6)), t=time.time())
        self.pulse.pop("skipped", None)
        self._save_pulse()
        self.counters["pulse_changes"] += 1
        alive = sorted(c for c, m in st.get("members", {}).items() if m["state"] != "dead")
        entry = {"target": "mesh:pulse", "version": self.pulse["version"],
                 "change": {"pulse_p": [old, float(n)]}, "cells_alive": n,
                 "period_us": self.pulse["period_us"], "period_us_before": old_us,
                 "k": float(p.k), "T1": float(p.T1)}
        if len(alive) <= 64:                  # a large mesh: the count, not every name
            entry["cells"] = alive
        self.submit("config", entry)

    def _period_changes(self, state):
        """Whether moving this device to the mesh's P changes its beat period (whole µs)."""
        p = self.cfg.pulse
        k = float(state.get("pulse_k", p.k))
        new = pulse_period_s(k, float(self.pulse["P"]), float(p.T1), float(p.U))
        if new is None:
            return False
        try:
            old = pulse_period_s(k, float(state.get("pulse_p", p.P)), float(p.T1), float(p.U))
        except (TypeError, ValueError):
            old = None
        return old is None or int(round(old * 1e6)) != int(round(new * 1e6))

    def _save_pulse(self):
        os.makedirs(os.path.dirname(self.pulse_path), exist_ok=True)
        write_json(self.pulse_path, self.pulse, sort_keys=True)

    def _tell_devices(self):
        if not self.pulse.get("version"):
            return                            # the mesh has not moved the pulse: config defaults hold
        self.counters["pulse_sent"] += self.configure_devices(
            {"pulse_p": self.pulse["P"]}, "mesh: %s cells alive" % self.pulse.get("cells_alive"),
            when=self._period_changes, record=False)
