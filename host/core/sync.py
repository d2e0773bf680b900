"""Synchronization layer (SPEC 4.3): Master vs Emissary, coherence, collapse; T_global helper.

Public API
----------
    s = SyncLayer(phase_threshold=0.1, coherence_threshold=0.95, hysteresis=0.02,
                  on_collapse=None, on_release=None)
    s = SyncLayer.from_config(cfg, on_collapse=None, on_release=None)
    s.update(device_id, T_hat_master, T_hat_emissary, t=None, boot_id=None, info=None, ready=True)
        -> dict
    s.update_many(device_ids, T_hat_master, T_hat_emissary, t=None, boot_ids=None, info=None,
                  ready=None)
        -> dict of arrays (delta_phase, T_sync, C_sync, coherent, collapsed, entered, left, ready)
        numpy, O(devices); NaN delta_phase / C_sync where not ready
    s.state(device_id) -> dict or None: t, evaluated, C_sync, T_sync, delta_phase, coherent,
        collapsed, since, master_fill, emissary_fill (None values while not evaluated)
    s.collapses -> int (events so far)
    s.forget(device_id)            a new stream (boot id) starts out of collapse
    s.recent_mean(now_wall, stale_s) -> (value, devices)   the cell's value for the mesh (mean
        |T_sync| of the devices evaluated recently: comparable across devices and cells)
    window_states(master, sync, device_ids) -> ({device: sync state}, {device: [{window, C, fill}]})
        what the surfaces show (C None until a window exists)
    sync_from_master(master, sync, emissary_s, master_s, t=None) -> dict of arrays
        both values from the Master's windows of the same partials (see "Emissary" below);
        update_many's arrays plus master_fill, emissary_fill
    t_global(values, weights=None) -> complex           SPEC 4.3 mesh aggregate
    mesh_weights(counts=None, n=None) -> numpy weights summing to 1

Maths (per device):  delta_phase = | |T_m| - |T_e| |,  T_sync = (T_m + T_e) / 2,
coherent = delta_phase < phase_threshold,  C_sync = |T_sync|^2,  collapse when C_sync >= I_c.

Windows that exist: a device is evaluated only when both windows hold at least MIN_FILL (90 %) of
their span in device time (core/master.py, "Fill"); before that (or when a dead or stuck
sensor empties them) its state is "not evaluated" and it is never in collapse.

Collapse events are edge-triggered with hysteresis: a device *enters* collapse when
C_sync >= I_c while it was not in collapse; it *leaves* only when C_sync < I_c - hysteresis.  Each
entry calls on_collapse(event) once (the macro witness event; the coordinator writes it to the
ledger); each exit calls on_release(event).  Event dict: kind ("collapse" / "collapse_end"),
device_id, boot_id, t, T_sync [re, im], C_sync, delta_phase, coherent, T_master [re, im],
T_emissary [re, im], I_c, plus whatever `info` carried (window lengths, coverage).

Emissary value.  TELEMETRY carries the device's Emissary coherence as Q16 (= |T_e|^2), which has
no phase, so it cannot form T_sync = (T_m + T_e)/2.  The host therefore takes T_e from the Master's
own window of emissary.tau_max (1 s) over the very same integer partials the device summed: it is
the device's Emissary value (same sums, same beats) but complex, and it exists for every device at
any evaluation time.  The device's Q16 value is kept beside it in the event (`emissary_c_device`,
when the caller passes it in `info`) so a disagreement (lost frames, a device bug) stays visible.

T_global (mesh): T_global = sum_P w_P T_hat_P with w_P >= 0 and sum w_P = 1.  Default weights are
equal (1/P); mesh_weights(counts) gives weights proportional to each cell's beats present in the
window (cells that saw more data count more), normalised to sum 1.  What each cell contributes
(recent_mean) is the mean |T_sync| of its evaluated devices: a magnitude, because the phases of
different streams start at different epochs (see recent_mean).
"""
import cmath
import math
import time

import numpy as np


class SyncLayer:
    """The sync layer (module docstring): owns each device's last evaluation (T_sync,
    C_sync, collapse state) and the collapse/release counts; calls on_collapse / on_release
    at each edge. Raises ValueError for bad thresholds or mismatched inputs."""
    def __init__(self, phase_threshold=0.1, coherence_threshold=0.95, hysteresis=0.02,
                 on_collapse=None, on_release=None):
        if not phase_threshold > 0:
            raise ValueError("phase_threshold must be > 0, got %r" % (phase_threshold,))
        if not 0 < coherence_threshold <= 1:
            raise ValueError("coherence_threshold must be in (0, 1], got %r" % (coherence_threshold,))
        if not 0 <= hysteresis < coherence_threshold:
            raise ValueError("hysteresis must be in [0, coherence_threshold), got %r" % (hysteresis,))
        self.phase_threshold = float(phase_threshold)
        self.I_c = float(coherence_threshold)
        self.hysteresis = float(hysteresis)
        self.on_collapse = on_collapse
        self.on_release = on_release
        self._in = {}            # device_id -> state dict (last evaluation)
        self.collapses = 0
        self.releases = 0

    @classmethod
    def from_config(cls, cfg, on_collapse=None, on_release=None):
        return cls(cfg.sync.phase_threshold, cfg.kairos.coherence_threshold, cfg.sync.hysteresis,
                   on_collapse, on_release)

    def state(self, device_id):
        st = self._in.get(int(device_id))
        return dict(st) if st is not None else None

    def forget(self, device_id):
        self._in.pop(int(device_id), None)

    def recent_mean(self, now_wall, stale_s):
        """(value, devices): the cell's value for the mesh's T_global (SPEC 4.3) = the mean of
        |T_sync| over the devices evaluated within stale_s seconds of now_wall (0j, 0 when
        none), a real number in [0, 1] carried as a complex.

        Why magnitudes: a device's T_hat has the phase of its own stream's origin (theta_n counts
        KAIROS samples from the stream's start: boot, a new lag), so the phases of two devices,
        or of two cells, are not referred to a common epoch and their complex mean cancels for no
        physical reason; at omega = 0 (the default) T_hat is real and its magnitude is what C
        measures. |T_sync| is comparable across devices and cells at any omega."""
        vals = [abs(st["T_sync"]) for st in self._in.values()
                if st["evaluated"] and now_wall - st["t"] <= stale_s]
        if not vals:
            return 0j, 0
        return complex(min(1.0, sum(vals) / len(vals)), 0.0), len(vals)

    def update(self, device_id, T_hat_master, T_hat_emissary, t=None, boot_id=None, info=None,
               ready=True):
        r = self.update_many([device_id], [T_hat_master], [T_hat_emissary], t=t,
                             boot_ids=None if boot_id is None else [boot_id],
                             info=None if info is None else [info], ready=[ready])
        return {k: (v[0].item() if hasattr(v[0], "item") else v[0]) for k, v in r.items()}

    def update_many(self, device_ids, T_hat_master, T_hat_emissary, t=None, boot_ids=None, info=None,
                    ready=None):
        """Evaluate devices; `ready` (bool per device, default all): both windows exist (hold
        >= MIN_FILL of their span, core/master.py). A device whose windows are not ready is not
        evaluated: its state says so (evaluated False, C_sync None) and a collapse it was in
        ends (a collapse_end event with reason "window_not_filled": a dead or stuck sensor, a
        restarted stream)."""
        t = time.time() if t is None else float(t)
        ids = np.asarray(device_ids, dtype=np.int64).ravel()
        tm = np.asarray(T_hat_master, dtype=np.complex128).ravel()
        te = np.asarray(T_hat_emissary, dtype=np.complex128).ravel()
        if not (ids.shape == tm.shape == te.shape):
            raise ValueError("device_ids, T_hat_master and T_hat_emissary differ in length")
        ok = np.ones(ids.shape, dtype=bool) if ready is None else np.asarray(ready, dtype=bool).ravel()
        if ok.shape != ids.shape:
            raise ValueError("ready and device_ids differ in length")
        delta = np.where(ok, np.abs(np.abs(tm) - np.abs(te)), np.nan)
        ts = np.where(ok, (tm + te) / 2.0, 0j)
        c = np.where(ok, ts.real * ts.real + ts.imag * ts.imag, np.nan)
        coherent = ok & (np.nan_to_num(delta, nan=np.inf) < self.phase_threshold)
        above = ok & (np.nan_to_num(c) >= self.I_c)
        below = ~ok | (np.nan_to_num(c) < self.I_c - self.hysteresis)
        was = np.array([bool(self._in.get(int(d), {}).get("collapsed", False)) for d in ids.tolist()],
                       dtype=bool)
        collapsed = np.where(was, ~below, above)
        entered = collapsed & ~was
        left = was & ~collapsed
        for j, d in enumerate(ids.tolist()):
            if ok[j]:
                st = dict(t=t, evaluated=True, delta_phase=float(delta[j]), T_sync=complex(ts[j]),
                          C_sync=float(c[j]), coherent=bool(coherent[j]), collapsed=bool(collapsed[j]))
            else:
                st = dict(t=t, evaluated=False, delta_phase=None, T_sync=None, C_sync=None,
                          coherent=None, collapsed=False)
            if info is not None and info[j]:
                for k in ("master_fill", "emissary_fill"):
                    if k in info[j]:
                        st[k] = info[j][k]
            prev = self._in.get(d)
            st["since"] = prev["since"] if prev and prev["collapsed"] == st["collapsed"] else t
            self._in[d] = st
            if entered[j] or left[j]:
                ev = dict(kind="collapse" if entered[j] else "collapse_end", device_id=d,
                          boot_id=None if boot_ids is None else int(boot_ids[j]), t=t,
                          T_sync=[float(ts[j].real), float(ts[j].imag)],
                          C_sync=float(c[j]) if ok[j] else None,
                          delta_phase=float(delta[j]) if ok[j] else None, coherent=bool(coherent[j]),
                          T_master=[float(tm[j].real), float(tm[j].imag)],
                          T_emissary=[float(te[j].real), float(te[j].imag)], I_c=self.I_c)
                if not ok[j]:
                    ev["reason"] = "window_not_filled"
                if info is not None and info[j]:
                    for k, v in info[j].items():
                        ev.setdefault(k, v)
                if entered[j]:
                    self.collapses += 1
                    if self.on_collapse is not None:
                        self.on_collapse(ev)
                else:
                    self.releases += 1
                    if self.on_release is not None:
                        self.on_release(ev)
        return dict(device_id=ids, delta_phase=delta, T_sync=ts, C_sync=c, coherent=coherent,
                    collapsed=collapsed, entered=entered, left=left, ready=ok)


def sync_from_master(master, sync, emissary_s, master_s, t=None, emissary_c_device=None):
    """Evaluate the sync layer for every stream of `master` that has data: T_m from its window of
    master_s seconds, T_e from its window of emissary_s seconds (see module docstring); a device
    is evaluated only when both windows exist (their fill >= MIN_FILL, core/master.py).
    emissary_c_device: optional {device_id: C from TELEMETRY (0..1)} kept in the events."""
    n = len(master.device_ids())
    idx = np.arange(n, dtype=np.int64)
    if n == 0:
        return None
    has = master.last[:n] >= master.first[:n]
    idx = idx[has]
    if idx.shape[0] == 0:
        return None
    qm = master.query(idx, master_s)
    qe = master.query(idx, emissary_s)
    ids = master.dev_id[idx]
    info = []
    for j, d in enumerate(ids.tolist()):
        x = dict(master_window=float(master_s), emissary_window=float(emissary_s),
                 master_coverage=float(qm["coverage"][j]), emissary_coverage=float(qe["coverage"][j]),
                 master_fill=float(qm["fill"][j]), emissary_fill=float(qe["fill"][j]),
                 last_beat=int(qm["last_beat"][j]))
        if emissary_c_device and d in emissary_c_device:
            x["emissary_c_device"] = float(emissary_c_device[d])
        info.append(x)
    out = sync.update_many(ids, qm["T_hat"], qe["T_hat"], t=t, boot_ids=master.boot[idx], info=info,
                           ready=qm["ready"] & qe["ready"])
    out["master_fill"], out["emissary_fill"] = qm["fill"], qe["fill"]
    return out


def window_states(master, sync, device_ids):
    """({device: sync state for a surface}, {device: [{window, C, fill}]}) of these devices: what
    `status`, the API, the dashboard and /metrics show. C is None until a window exists (fill
    >= MIN_FILL, core/master.py); master or sync may be None."""
    states = {}
    if sync is not None:
        for d in device_ids:
            s = sync.state(d)
            if s is not None:
                states[d] = {"C_sync": s["C_sync"], "delta_phase": s["delta_phase"],
                             "coherent": s["coherent"], "collapsed": s["collapsed"],
                             "since": s["since"], "evaluated": s.get("evaluated", True),
                             "master_fill": s.get("master_fill"),
                             "emissary_fill": s.get("emissary_fill")}
    windows = {}
    if master is not None and master.device_ids():
        want = set(int(d) for d in device_ids)
        q = master.query_all()
        C, fill, last = q["C"].tolist(), q["fill"].tolist(), q["last_beat"].tolist()
        ready = q["ready"].tolist()
        ws = q["window"].tolist()
        for i, d in enumerate(q["device_id"].tolist()):
            if d in want:
                windows[d] = [{"window": w, "C": C[i][j] if ready[i][j] else None, "fill": fill[i][j]}
                              for j, w in enumerate(ws) if last[i][j] >= 0]
    return states, windows


def mesh_weights(counts=None, n=None):
    """Weights w_P >= 0 summing to 1: proportional to `counts` (e.g. beats present per cell), or
    equal (1/n) when counts is None or all zero."""
    if counts is None:
        if not n or n < 1:
            raise ValueError("mesh_weights needs counts or n >= 1")
        return np.full(int(n), 1.0 / int(n))
    c = np.asarray(counts, dtype=np.float64).ravel()
    if c.shape[0] == 0:
        raise ValueError("mesh_weights: no cells")
    if np.any(c < 0) or not np.all(np.isfinite(c)):
        raise ValueError("mesh_weights: counts must be finite and >= 0")
    s = c.sum()
    if s == 0:
        return np.full(c.shape[0], 1.0 / c.shape[0])
    return c / s


def t_global(values, weights=None):
    """T_global = sum_P w_P T_hat_P (SPEC 4.3). weights: None (equal) or >= 0 summing to 1
    (within 1e-9); |T_global| <= max |T_hat_P|."""
    v = np.asarray(values, dtype=np.complex128).ravel()
    if v.shape[0] == 0:
        raise ValueError("t_global: no values")
    if weights is None:
        w = np.full(v.shape[0], 1.0 / v.shape[0])
    else:
        w = np.asarray(weights, dtype=np.float64).ravel()
        if w.shape != v.shape:
            raise ValueError("t_global: %d weights for %d values" % (w.shape[0], v.shape[0]))
        if np.any(w < 0) or not math.isclose(float(w.sum()), 1.0, abs_tol=1e-9):
            raise ValueError("t_global: weights must be >= 0 and sum to 1 (sum = %r)" % float(w.sum()))
    return complex(np.dot(w, v))
