"""The host's integration core in one object: Master -> sync layer -> witnessing -> memory/ledger.

The coordinator owns the Master (it feeds TELEMETRY into it); this object does the rest on
each tick of the coordinator's processing loop.

Public API
----------
    core = Integration(cfg, master, ledger_submit=None, memory=True, writer_thread=False)
        ledger_submit(kind, data) -> anything: called with ("collapse", event) for every
        collapse (a macro witness event; SPEC 4.3); memory=False runs without a memory store;
        writer_thread=True commits the memory store on its own thread (Memory.start_writer)
    core.tick(now=None, health=None) -> dict or None
        one integration cycle when master.witness_interval / emissary.witness_interval are due
        (cheap otherwise): sync layer over every stream, meso rows, phase snapshots; a meta
        record of `health` (ingest lag, loss, queue depths...) every witnessing.meta_interval
    core.telemetry_coherence(device_id, q16, threat_q16=None)
        the device's own Emissary C (TELEMETRY, Q16), kept beside the host's value in events /
        meso rows, and its threat (Q16): the condition component of its memory signatures
    core.new_stream(device_id)                  a device rebooted: its sync state starts afresh
    core.micro(kind, device_id=None, **data)    an operation witnessed (config, model, clear, ...)
    core.status() -> dict;  core.close()
    core.memory, core.witnessing, core.sync     the parts (host/memory/store.py, host/core/witnessing.py,
                                                host/core/sync.py)
"""
import logging
import time

from becomingone.core.sync import SyncLayer
from becomingone.core.witnessing import Witnessing
from becomingone.memory.store import Memory


def _native(v):
    """numpy scalars/arrays and tuples -> plain JSON types (the ledger checks exact types)."""
    if isinstance(v, dict):
        return {str(k): _native(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_native(x) for x in v]
    if hasattr(v, "tolist"):          # numpy scalar or array
        return _native(v.tolist())
    if isinstance(v, complex):
        return [v.real, v.imag]
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, int):
        return int(v)
    if isinstance(v, float):
        return float(v)
    return str(v)


def ledger_event(event):
    """A sync-layer collapse event as a ledger `collapse` entry: native types, and the
    collapse's coherence |T_sync|^2 under the field name the entry kind requires."""
    data = _native(dict(event))
    data["coherence"] = float(data.get("C_sync", 0.0))
    if data.get("device_id") is not None:
        data.setdefault("device", int(data["device_id"]))
    return data


class Integration:
    """The integration core of a coordinator: owns the memory store, the witnessing layers
    and the sync layer, and runs their cycle on tick(). Raises nothing from tick() for a
    ledger failure (counted); a Memory error at construction."""
    def __init__(self, cfg, master, ledger_submit=None, memory=True, writer_thread=False):
        self.cfg = cfg
        self.master = master
        self.ledger_submit = ledger_submit
        self.memory = Memory.from_config(cfg) if memory else None
        if self.memory is not None and writer_thread:
            self.memory.start_writer()
        self.witnessing = Witnessing.from_config(cfg, memory=self.memory, on_macro=self._to_ledger)
        self.sync = SyncLayer.from_config(cfg, on_collapse=self.witnessing.macro)
        self.use_sync = bool(cfg.emissary.enabled) and master is not None
        self.emissary_s = float(cfg.emissary.tau_max)
        self.master_s = float(cfg.sync.master_window)
        self.interval = min(float(cfg.master.witness_interval), float(cfg.emissary.witness_interval))
        self._next = 0.0
        self.device_c = {}
        self.device_threat = {}
        self.last_cycle = None
        self.ledger_errors = 0

    def _to_ledger(self, event):
        if self.ledger_submit is None:
            return
        try:
            self.ledger_submit("collapse", ledger_event(event))
        except Exception:       # counted and logged: a ledger failure must not stop the loop
            self.ledger_errors += 1
            logging.getLogger("becomingone.integration").exception("collapse not written to the ledger")

    def telemetry_coherence(self, device_id, q16, threat_q16=None):
        self.device_c[int(device_id)] = int(q16) / 65536.0
        if threat_q16 is not None:
            self.device_threat[int(device_id)] = int(threat_q16) / 65536.0

    def new_stream(self, device_id):
        self.sync.forget(device_id)
        self.device_c.pop(int(device_id), None)
        self.device_threat.pop(int(device_id), None)

    def micro(self, kind, device_id=None, **data):
        return self.witnessing.micro(kind, device_id=device_id, **data)

    def tick(self, now=None, health=None):
        now = time.time() if now is None else float(now)
        out = None
        if self.master is not None and now >= self._next:
            self._next = now + self.interval
            out = self.witnessing.observe(self.master, self.sync if self.use_sync else None, t=now,
                                          emissary_s=self.emissary_s, master_s=self.master_s,
                                          device_c=self.device_c,
                                          device_threat=self.device_threat)
            self.last_cycle = out
        if health is not None:
            self.witnessing.meta(health, t=now)
        return out

    def status(self):
        return dict(witnessing=self.witnessing.stats(), collapses=self.sync.collapses,
                    releases=self.sync.releases, last_cycle=self.last_cycle,
                    memory=None if self.memory is None else self.memory.path,
                    ledger_errors=self.ledger_errors)

    def close(self):
        if self.memory is not None:
            self.memory.close()
