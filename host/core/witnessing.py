"""Witnessing layers (the manifest's "Witnessing Dynamics"): micro, meso, macro, meta.

| layer | what is witnessed                                  | when                                 | stored in            |
|-------|----------------------------------------------------|--------------------------------------|----------------------|
| micro | individual operations (config applied, model pushed, quarantine cleared, device WITNESS records, ...) | as they happen | memory witness_log |
| meso  | transducer state per integration cycle: every device's Master windows (C, coverage) and its Emissary window, and the sync state | at most every master.witness_interval / emissary.witness_interval per device | memory coherence_history (kinds master, emissary, sync) |
| macro | system coherence: collapse events of the sync layer | on each collapse (edge) | memory witness_log + the ledger (on_macro callback) |
| meta  | the host observing itself: ingest lag, loss, queue depths (from the caller), plus the witnessing's own counters and the memory's write load | every witnessing.meta_interval | memory witness_log |

Each layer is on when witnessing.enabled is true and the layer is in witnessing.layers.  A
collapse is always handed to on_macro (the ledger is the system of record, whatever the
witnessing config); the macro layer only decides whether it is also kept in memory.  Phase
snapshots (temporal signatures) are taken every memory.snapshot_interval per device by
observe(), independent of the layers (they are memory, not witnessing).

Public API
----------
    w = Witnessing(memory=None, enabled=True, layers=LAYERS, master_interval=0.1,
                   emissary_interval=0.01, meta_interval=1.0, snapshot_interval=1.0,
                   on_macro=None, logger=None)
    w = Witnessing.from_config(cfg, memory=None, on_macro=None, logger=None)
    w.on(layer) -> bool
    w.micro(kind, device_id=None, t=None, **data) -> record or None
    w.macro(event) -> record or None        usable as SyncLayer(on_collapse=w.macro)
    w.meta(health, t=None, force=False) -> record or None   (rate-limited by meta_interval)
    w.observe(master, sync=None, t=None, emissary_s=1.0, master_s=10.0, device_c=None,
              device_threat=None) -> dict
        one integration cycle over every stream of the Master: runs the sync layer (collapses go
        to sync.on_collapse, normally w.macro), writes meso rows and phase snapshots when their
        intervals are due; returns counts {devices, meso_master, meso_emissary, snapshots,
        collapsed}. Rows carry each window's fill; C and T_hat are NULL while a window does not
        exist (fill below 90 %, core/master.py) and for a device the sync layer did not evaluate.
        Snapshots cover the Emissary window and the Master's; device_threat {device: 0..1} is
        the signature's condition component (memory/signature.py).
    w.stats() -> dict (records per layer, suppressed, memory writes)
A record is a dict: layer, kind, t, device_id (or None), plus the fields of the event.
"""
import logging
import time

import numpy as np

from becomingone.core.sync import sync_from_master

LAYERS = ("micro", "meso", "macro", "meta")


def _none(v):
    """NaN (a window that does not exist yet, a device not evaluated) -> None (NULL)."""
    return None if v != v else v


class Witnessing:
    """The witnessing layers (module docstring): owns their schedules and counters and
    writes records to memory; macro events also go to on_macro (the ledger). Raises
    ValueError for an unknown layer."""
    def __init__(self, memory=None, enabled=True, layers=LAYERS, master_interval=0.1,
                 emissary_interval=0.01, meta_interval=1.0, snapshot_interval=1.0, on_macro=None,
                 logger=None):
        for layer in layers:
            if layer not in LAYERS:
                raise ValueError("unknown witnessing layer %r (allowed: %s)" % (layer, ", ".join(LAYERS)))
        self.memory = memory
        self.enabled = bool(enabled)
        self.layers = frozenset(layers)
        self.master_interval = float(master_interval)
        self.emissary_interval = float(emissary_interval)
        self.meta_interval = float(meta_interval)
        self.snapshot_interval = float(snapshot_interval)
        self.on_macro = on_macro
        self.log = logger
        self.counts = {layer: 0 for layer in LAYERS}
        self.suppressed = {layer: 0 for layer in LAYERS}
        self.macro_forwarded = 0
        self._next_meta = 0.0
        self._next_master = {}       # device_id -> t of its next meso master record
        self._next_emissary = {}
        self._next_snapshot = {}
        self._boot = {}
        self.cycles = 0
        self.cycle_seconds = 0.0

    @classmethod
    def from_config(cls, cfg, memory=None, on_macro=None, logger=None):
        w = cfg.witnessing
        return cls(memory=memory, enabled=w.enabled, layers=w.layers,
                   master_interval=cfg.master.witness_interval,
                   emissary_interval=cfg.emissary.witness_interval, meta_interval=w.meta_interval,
                   snapshot_interval=cfg.memory.snapshot_interval, on_macro=on_macro,
                   logger=logger if logger is not None or not cfg.logging.witness_logs
                   else logging.getLogger("becomingone.witness"))

    def on(self, layer):
        return self.enabled and layer in self.layers

    def _record(self, layer, kind, t, device_id, data):
        rec = dict(data)
        rec.update(layer=layer, kind=kind, t=time.time() if t is None else float(t),
                   device_id=None if device_id is None else int(device_id))
        self.counts[layer] += 1
        if self.memory is not None:
            self.memory.witness(rec)
        if self.log is not None:
            self.log.debug("witness %s", rec)
        return rec

    # ------------------------------------------------------------------ layers
    def micro(self, kind, device_id=None, t=None, **data):
        if not self.on("micro"):
            self.suppressed["micro"] += 1
            return None
        return self._record("micro", kind, t, device_id, data)

    def macro(self, event):
        """A collapse (or other system-coherence event) of the sync layer."""
        ev = dict(event)
        if self.on_macro is not None:
            self.on_macro(dict(event))
            self.macro_forwarded += 1
        if not self.on("macro"):
            self.suppressed["macro"] += 1
            return None
        return self._record("macro", ev.pop("kind", "collapse"), ev.pop("t", None),
                            ev.pop("device_id", None), ev)

    def meta(self, health, t=None, force=False):
        t = time.time() if t is None else float(t)
        if not self.on("meta"):
            self.suppressed["meta"] += 1
            return None
        if not force and t < self._next_meta:
            return None
        self._next_meta = t + self.meta_interval
        data = dict(health or {})
        data["witnessing"] = self.stats()
        return self._record("meta", "health", t, None, data)

    def stats(self):
        out = dict(records=dict(self.counts), suppressed=dict(self.suppressed),
                   macro_forwarded=self.macro_forwarded, cycles=self.cycles,
                   cycle_seconds=round(self.cycle_seconds, 6))
        m = self.memory
        if m is not None:
            out["memory"] = dict(written=dict(m.written), flush_seconds=round(m.flush_seconds, 6),
                                 pending_rows=m.pending_rows, write_errors=m.write_errors,
                                 last_error=m.last_error)
        return out

    # ------------------------------------------------------------------ integration cycle
    def _due(self, table, dev, boot, t, interval):
        if self._boot.get(dev) != boot:          # a new stream: everything is due at once
            self._boot[dev] = boot
            self._next_master.pop(dev, None)
            self._next_emissary.pop(dev, None)
            self._next_snapshot.pop(dev, None)
        if t >= table.get(dev, -np.inf):
            table[dev] = t + interval
            return True
        return False

    def observe(self, master, sync=None, t=None, emissary_s=1.0, master_s=10.0, device_c=None,
                device_threat=None):
        t0 = time.perf_counter()
        t = time.time() if t is None else float(t)
        out = dict(devices=0, meso_master=0, meso_emissary=0, snapshots=0, collapsed=0)
        n = len(master.device_ids())
        if n == 0:
            return out
        has = master.last[:n] >= master.first[:n]
        if not has.any():
            return out
        idx = np.flatnonzero(has)
        ids = master.dev_id[idx].tolist()
        boots = master.boot[idx].tolist()
        out["devices"] = len(ids)
        r = None
        if sync is not None:
            r = sync_from_master(master, sync, emissary_s, master_s, t=t, emissary_c_device=device_c)
            out["collapsed"] = int(r["collapsed"].sum()) if r is not None else 0
        meso = self.on("meso") and self.memory is not None
        if not meso:
            self.suppressed["meso"] += 1
        want_m = np.array([self._due(self._next_master, d, b, t, self.master_interval)
                           for d, b in zip(ids, boots)], dtype=bool)
        want_e = np.array([self._due(self._next_emissary, d, b, t, self.emissary_interval)
                           for d, b in zip(ids, boots)], dtype=bool)
        want_s = np.array([self._due(self._next_snapshot, d, b, t, self.snapshot_interval)
                           for d, b in zip(ids, boots)], dtype=bool)
        mem = self.memory
        rows = []
        if (meso and want_m.any()) or (mem is not None and want_s.any()):
            # the Emissary window first (the signature's shortest window), then the Master's
            mw = tuple(master.window_seconds)
            o = 0 if float(emissary_s) in mw else 1
            q = master.query_windows(((float(emissary_s),) if o else ()) + mw)
            if meso and want_m.any():
                W = q["window"].tolist()[o:]
                sel = idx[want_m]
                ok = q["ready"][sel, o:]
                th = q["T_hat"][sel, o:]
                re = np.where(ok, th.real, np.nan).tolist()
                im = np.where(ok, th.imag, np.nan).tolist()
                C = np.where(ok, q["C"][sel, o:], np.nan).tolist()
                cov = q["coverage"][sel, o:].tolist()
                fill = q["fill"][sel, o:].tolist()
                for j, (d, b) in enumerate(zip(master.dev_id[sel].tolist(), master.boot[sel].tolist())):
                    for k, w in enumerate(W):
                        rows.append((t, d, b, "master", w, _none(C[j][k]), cov[j][k], fill[j][k],
                                     _none(re[j][k]), _none(im[j][k]), None, None, None, None))
                out["meso_master"] = int(sel.shape[0])
            if mem is not None and want_s.any():
                sel = np.zeros(n, dtype=bool)
                sel[idx[want_s]] = True
                out["snapshots"] = mem.snapshot_many(t, q, boot_ids=master.boot[:n], select=sel,
                                                     threat=device_threat)
        if meso and want_e.any():
            je = np.flatnonzero(want_e)
            qe = master.query(idx[je], emissary_s)
            eok = qe["ready"]
            the = qe["T_hat"]
            ere = np.where(eok, the.real, np.nan).tolist()
            eim = np.where(eok, the.imag, np.nan).tolist()
            ec = np.where(eok, qe["C"], np.nan).tolist()
            ecov, efill = qe["coverage"].tolist(), qe["fill"].tolist()
            if r is not None:
                sok = r["ready"][je]
                ts = r["T_sync"][je]
                sre = np.where(sok, ts.real, np.nan).tolist()
                sim = np.where(sok, ts.imag, np.nan).tolist()
                sc = r["C_sync"][je].tolist()
                dp = r["delta_phase"][je].tolist()
                fl = (r["coherent"][je].astype(np.int64) | (r["collapsed"][je].astype(np.int64) << 1)).tolist()
                # the sync row's fill: the smaller of its two windows' fills
                sfill = np.minimum(r["master_fill"][je], r["emissary_fill"][je]).tolist()
            for jj, j in enumerate(je.tolist()):
                d, b = ids[j], boots[j]
                dc = device_c.get(d) if device_c else None
                rows.append((t, d, b, "emissary", float(emissary_s), _none(ec[jj]), ecov[jj], efill[jj],
                             _none(ere[jj]), _none(eim[jj]), None, None, dc, None))
                if r is not None:
                    rows.append((t, d, b, "sync", float(master_s), _none(sc[jj]), None, sfill[jj],
                                 _none(sre[jj]), _none(sim[jj]), _none(dp[jj]), fl[jj], None, None))
            out["meso_emissary"] = int(je.shape[0])
        if rows:
            mem.coherence_rows(rows)
        self.counts["meso"] += out["meso_master"] + out["meso_emissary"]
        self.cycles += 1
        self.cycle_seconds += time.perf_counter() - t0
        return out
