"""The HTTP API's routes and handlers (docs/HTTP.md; the OpenAPI document is
becomingone/http/openapi.py).

Every handler reaches the coordinator through its narrow view (becomingone/coordinator/view.py
CoordinatorView) with `Api.ask(read, ...)`: the read runs in the processing thread with a short
timeout, so a request never holds the processing loop for more than one small read, and a busy
coordinator answers 503. The ledger (thread-safe) and a read-only connection to the memory
database are read in the HTTP thread. Operator actions are the control socket's commands.
"""
import datetime
import json
import os
import re
import threading
import time

import numpy as np

from becomingone.devices.state import DECISIONS, device_state, state_time, window_label
from becomingone.errors import BecomingOneError, MemoryStoreError
from becomingone.http.events import Hub
from becomingone.http.metrics import Metrics
from becomingone.http.openapi import SCHEMAS, document
from becomingone.http.responses import ApiError, Raw, dumps
from becomingone.ingest.keystore import parse_device_id
from becomingone.ledger.checkpoint import PUB_FILE
from becomingone.memory.plots import load_device
from becomingone.memory.queries import TABLES
from becomingone.memory.store import Memory
from becomingone.util.times import parse_time

__all__ = ["Api", "ROUTES", "match_route", "validate_body"]

CALL_TIMEOUT = 2.0
KEEP_EVENTS = 1000
MAX_LEDGER_PAGE = 500


class Route:
    """One API route: method, path pattern, handler, and what the OpenAPI document says of
    it."""
    __slots__ = ("method", "path", "handler", "summary", "response", "query", "body", "stream",
                 "tag", "regex", "raw")

    def __init__(self, method, path, handler, summary, response=None, query=(), body=None,
                 stream=False, tag="coordinator", raw=None):
        self.method, self.path, self.handler, self.summary = method, path, handler, summary
        self.response, self.query, self.body, self.stream, self.tag = response, query, body, stream, tag
        self.raw = raw                  # content type of a non-JSON response
        self.regex = re.compile("^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(path)) + "$")


# session details the API adds to the decoded device state (becomingone.devices.state)
_SESSION_KEYS = ("highest_seq", "bytes", "by_type", "hello", "link", "addr", "clock",
                 "last_error", "master_error")


def device_view(summary, sync=None, windows=None):
    """A device for the API (built outside the processing thread): its decoded state
    (becomingone.devices.state: physical units, the effective decision, ISO 8601 times) and the
    session's details; no raw wire values."""
    d = device_state(summary, sync=sync, windows=windows)
    d.pop("lateness_histogram", None)      # /metrics exports it
    for k in _SESSION_KEYS:
        if k in summary:
            d[k] = summary[k]
    return d


def window_view(w):
    """A Master window for the API: C and T_hat only once the window exists (fill >= 90 %,
    becomingone.core.master "Fill"), null before."""
    ready = bool(w["ready"])
    return {"window": w["window"], "C": w["C"] if ready else None,
            "T_hat": w["T_hat"] if ready else None, "coverage": w["coverage"],
            "fill": float(w["fill"]), "ready": ready,
            "beats": int(w["beats"]), "seconds": w["seconds"], "span_beats": int(w["span_beats"]),
            "first_beat": w["first_beat"], "last_beat": w["last_beat"]}


def sync_view(device_id, st):
    if st is None:
        return None
    return {"device_id": int(device_id), "time": state_time(st["t"]), "C_sync": st["C_sync"],
            "delta_phase": st["delta_phase"], "T_sync": st["T_sync"], "coherent": st["coherent"],
            "collapsed": st["collapsed"], "since": state_time(st["since"]),
            "evaluated": bool(st.get("evaluated", True)), "master_fill": st.get("master_fill"),
            "emissary_fill": st.get("emissary_fill")}


def _int(q, name, default=None, lo=None, hi=None):
    v = q.get(name)
    if v is None or v == "":
        return default
    try:
        n = int(v)
    except ValueError:
        raise ApiError(400, "query parameter %s must be an integer (got %r)" % (name, v)) from None
    if (lo is not None and n < lo) or (hi is not None and n > hi):
        raise ApiError(400, "query parameter %s=%d is out of range (allowed: %s..%s)"
                       % (name, n, lo if lo is not None else "", hi if hi is not None else ""))
    return n


def iso_epoch(text):
    """ISO 8601 UTC text (as the API writes it) -> seconds since the epoch."""
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _time(q, name):
    v = q.get(name)
    if not v:
        return None
    return parse_time(v)


class Api:
    """The handlers' shared state: the coordinator's view, the snapshot hub, a read-only
    memory connection, the prepared OpenAPI document and the metrics registry. Raises ApiError
    (an HTTP status and a message) from handle()."""

    def __init__(self, view, server):
        self.view = view
        self.server = server
        self.hub = Hub(view, server.settings.sse_interval)
        self._mem = None
        self._mem_lock = threading.Lock()
        self._openapi = None
        self.metrics = Metrics(self)

    # ------------------------------------------------------------------ plumbing
    def ask(self, read, *args, timeout=CALL_TIMEOUT):
        """read(*args) of the coordinator's view, or ApiError 503 when it is busy."""
        try:
            return read(*args, timeout=timeout)
        except TimeoutError:
            raise ApiError(503, "the coordinator did not answer within %.0f s (busy); try again"
                           % timeout) from None

    def dumps(self, obj):
        return dumps(obj)

    def handle(self, route, params, query, body):
        try:
            return route.handler(self, params, query, body)
        except ApiError:
            raise
        except KeyError as e:              # the Master's "no stream" and missing fields
            msg = e.args[0] if e.args and isinstance(e.args[0], str) and " " in e.args[0] \
                else "missing %s" % e
            raise ApiError(404 if "no stream" in msg else 400, msg) from None
        except MemoryStoreError as e:
            raise ApiError(503, str(e)) from None
        except (BecomingOneError, ValueError, TypeError) as e:
            msg = str(e)
            raise ApiError(404 if ("has not been seen" in msg or msg.startswith("no entry")
                                   or " has no " in msg) else 400, msg) from None

    # ------------------------------------------------------------------ probes
    def liveness(self):
        """(ok, report) for /healthz: the process serves HTTP and its processing loop answers
        (a ping through the inbox within 2 s)."""
        t0 = time.monotonic()
        try:
            loop = bool(self.view.alive(timeout=2.0, loop_only=True))
        except Exception:                  # busy, stopped or not yet running
            loop = False
        return loop, {"status": "ok" if loop else "unavailable", "processing_loop": loop,
                      "answered_in_s": round(time.monotonic() - t0, 4)}

    def readiness(self):
        """(ok, report) for /readyz: the ledger is open and its folder writable, every link
        open, the coordinator running (each check named in the report)."""
        checks = {}
        led = self.view.ledger
        folder = os.path.dirname(os.path.abspath(led.path)) if led is not None else None
        checks["ledger_writable"] = bool(led is not None and os.access(folder, os.W_OK)
                                         and (not os.path.exists(led.path)
                                              or os.access(led.path, os.W_OK))
                                         and led.writer_alive())
        try:
            st = self.view.status(timeout=2.0)
            checks["running"] = bool(st.get("running"))
            links = st.get("links") or []
            checks["links_open"] = bool(links) and all(l.get("open") for l in links)
            closed = [l.get("url") for l in links if not l.get("open")]
        except TimeoutError:
            checks["running"] = False
            checks["links_open"] = False
            closed = None
        ok = all(checks.values())
        rep = {"status": "ready" if ok else "not ready", "checks": checks}
        if closed:
            rep["closed_links"] = closed
        return ok, rep

    def memory(self):
        path = self.view.memory_path
        if path is None:
            raise ApiError(404, "memory is not enabled on this coordinator")
        with self._mem_lock:
            if self._mem is None:
                self._mem = Memory.open_readonly(path)
            return self._mem

    def close(self):
        with self._mem_lock:
            if self._mem is not None:
                self._mem.close()
                self._mem = None


def _dev(p):
    return parse_device_id(p["device"])


# ---------------------------------------------------------------------- handlers
def h_status(api, p, q, b):
    """The status object, its sessions as decoded device states (physical units, ISO times:
    the wire's raw TELEMETRY values are not an API field)."""
    st = api.ask(api.view.status)
    st["sessions"] = {k: device_view(v) for k, v in (st.get("sessions") or {}).items()}
    return st


def h_devices(api, p, q, b):
    rows, sync, windows = api.ask(api.view.device_reads)
    return {"devices": [device_view(x, sync.get(x["device_id"]), windows.get(x["device_id"]))
                        for x in rows]}


def h_device(api, p, q, b):
    d = _dev(p)
    out = api.ask(api.view.device, d)
    res = device_view(out, sync=out["sync"], windows=out["windows"])
    res["master_windows"] = [window_view(w) for w in out["windows"]]
    res["config"] = out["config"]
    return res


def h_windows(api, p, q, b):
    d = _dev(p)
    secs = q.get("seconds")
    try:
        secs = None if secs in (None, "") else float(secs)
    except ValueError:
        raise ApiError(400, "query parameter seconds must be a number (got %r)" % secs) from None

    if not api.view.has_master:
        raise ApiError(404, "the Master is not running (master.enabled: false)")
    ws = api.ask(api.view.windows, d, secs)
    return {"device_id": d, "windows": [window_view(w) for w in ws]}


def h_sync(api, p, q, b):
    st = api.ask(api.view.sync_states)
    if st is None:
        out = {"enabled": False, "collapses": 0, "releases": 0, "devices": []}
    else:
        states = st.pop("states")
        out = dict(st, devices=[sync_view(d, v) for d, v in states.items()])
    out["recent"] = api.hub.collapses(limit=_int(q, "limit", 50, 1, 1000))
    return out


def h_decisions(api, p, q, b):
    dev = q.get("device")
    dev = parse_device_id(dev) if dev not in (None, "") else None
    return {"events": api.hub.decisions(device=dev, limit=_int(q, "limit", 100, 1, 1000)),
            "counts": api.hub.decision_counts()}


def _post(cmd, fields=()):
    def handler(api, p, q, b):
        req = dict(b or {})
        if "device" in p:
            req["device"] = _dev(p)
        for f in fields:
            if f not in req:
                raise ApiError(400, "the request body needs %r (a JSON object with: %s)"
                               % (f, ", ".join(fields)))
        req["cmd"] = cmd
        return api.ask(api.view.command, req, timeout=10.0)
    return handler


def h_config_get(api, p, q, b):
    return api.ask(api.view.config_listing, _dev(p))


def h_ledger(api, p, q, b):
    led = api.view.ledger
    cp = api.hub.checkpoint()
    # the key is made at the first checkpoint; a GET must not create it
    has_key = os.path.exists(os.path.join(led.key_folder, PUB_FILE))
    return {"size": led.size, "root": led.root().hex(), "origin": led.origin,
            "checkpoint": cp, "public_key": led.public_key_pem() if has_key else None}


def h_checkpoint(api, p, q, b):
    cp = api.hub.checkpoint()
    if cp is None:
        raise ApiError(404, "the ledger has no checkpoint yet")
    return cp


def h_cosignatures(api, p, q, b):
    """Witnesses' cosignatures stored for this ledger's checkpoints (docs/LEDGER.md §11); who
    they are trusted as is `ledger verify`'s business (the config's witnesses, the mesh)."""
    rows = api.view.ledger.cosignatures()
    return {"cosignatures": [{"size": s, "name": n, "timestamp": t, "line": ln}
                             for s, n, t, ln in rows[-MAX_LEDGER_PAGE:]],
            "count": len(rows)}


def h_entries(api, p, q, b):
    led = api.view.ledger
    size = led.size
    limit = _int(q, "limit", 50, 1, MAX_LEDGER_PAGE)
    start = _int(q, "start", max(0, size - limit), 0)
    stop = min(size, start + limit)
    return {"size": size, "start": start,
            "entries": [e.to_dict() for e in led.entries(start, stop)] if start < size else []}


def h_entry(api, p, q, b):
    led = api.view.ledger
    try:
        index = int(p["index"])
    except ValueError:
        raise ApiError(400, "entry index must be an integer (got %r)" % p["index"]) from None
    size = _int(q, "size", None, 1)
    e = led.get(index)
    return {"entry": e.to_dict(), "proof": led.inclusion_proof(index, size)}


TABLE_ALIASES = {"snapshots": "phase_snapshots", "coherence": "coherence_history",
                 "witness": "witness_log", "mesh": "mesh_sync"}


def h_memory_table(api, p, q, b):
    table = TABLE_ALIASES.get(p["table"], p["table"])
    if table not in TABLES:
        raise ApiError(404, "unknown memory table %r (allowed: %s)"
                       % (p["table"], ", ".join(TABLES + tuple(TABLE_ALIASES))))
    dev = q.get("device")
    mem = api.memory()
    with api._mem_lock:
        rows = mem.query(table, device_id=parse_device_id(dev) if dev else None,
                         since=_time(q, "since"), until=_time(q, "until"),
                         limit=_int(q, "limit", 100, 1, 10000), layer=q.get("layer") or None,
                         kind=q.get("kind") or None)
    return {"table": table, "rows": rows}


HISTORY_DEFAULT_S = 600


def _thin_keep_changes(n, points, codes):
    """Row indices: every k-th row so that about `points` remain, plus every row where the
    decision changes (an ALERT between two kept rows is never lost)."""
    if n <= points:
        return np.arange(n)
    k = int(np.ceil(n / points))
    idx = np.arange(0, n, k)
    change = np.flatnonzero(np.diff(codes)) + 1
    return np.union1d(np.union1d(idx, change), np.union1d(change - 1, [n - 1]))


def h_history(api, p, q, b):
    """A device's history from the memory store, columnar for charts: telemetry samples (the
    effective decision, physical units), every Master window's C, the host's Emissary C, and
    the ledger's decision/CLEAR events in the range."""
    d = _dev(p)
    now = time.time()
    until = _time(q, "until") or now
    since = _time(q, "since") or until - HISTORY_DEFAULT_S
    if since >= until:
        raise ApiError(400, "since must be before until (got since=%s, until=%s)"
                       % (state_time(since), state_time(until)))
    points = _int(q, "points", 1500, 10, 20000)
    mem = api.memory()
    with api._mem_lock:
        data = load_device(mem, d, since, until)
    tel = data["tel"]
    dec = tel["decision"].astype(np.int64)
    keep = _thin_keep_changes(len(tel["t"]), points, dec)

    def col(name, scale=1.0, digits=5):
        v = tel[name][keep] * scale if scale != 1.0 else tel[name][keep]
        return np.round(v, digits).tolist()
    master = []
    for w in sorted(data["master"]):
        t, c = data["master"][w]
        k = np.arange(len(t)) if len(t) <= points else np.arange(0, len(t), int(np.ceil(len(t) / points)))
        master.append({"window": window_label(w), "t_epoch_s": np.round(t[k], 3).tolist(),
                       "C": np.round(c[k], 5).tolist()})
    et, ec = data["emissary"]
    k = np.arange(len(et)) if len(et) <= points else np.arange(0, len(et), int(np.ceil(len(et) / points)))
    events = [e for e in api.hub.decisions(device=d, limit=KEEP_EVENTS)
              if since <= iso_epoch(e["time"]) <= until]
    return {"device_id": d, "since": state_time(since), "until": state_time(until),
            "rows": int(len(tel["t"])), "decision_names": list(DECISIONS),
            "telemetry": {"t_epoch_s": np.round(tel["t"][keep], 3).tolist(),
                          "coherence": col("coherence"), "threat": col("threat"),
                          "pid_error": col("pid_error"), "pid_output": col("pid_output"),
                          "lateness_s": col("lateness_us", 1e-6, 7),
                          "decision": dec[keep].tolist()},
            "master": master,
            "emissary": {"t_epoch_s": np.round(et[k], 3).tolist(), "C": np.round(ec[k], 5).tolist()},
            "events": events}


def h_reconstruct(api, p, q, b):
    if not q.get("device"):
        raise ApiError(400, "reconstruct needs ?device=N (and optionally at=TIME)")
    d = parse_device_id(q["device"])
    at = _time(q, "at") or time.time()
    mem = api.memory()
    with api._mem_lock:
        st = mem.reconstruct(d, at)
    if st is None:
        raise ApiError(404, "device %d has nothing in memory at or before t=%s" % (d, at))
    return st


def h_similar(api, p, q, b):
    vec = q.get("vector")
    if vec:
        try:
            vec = [float(x) for x in vec.split(",")]
        except ValueError:
            raise ApiError(400, "vector must be comma-separated numbers") from None
    elif not q.get("device"):
        raise ApiError(400, "similar needs ?device=N (its signature at ?at=TIME) or ?vector=v1,v2,...")
    dev = parse_device_id(q["device"]) if q.get("device") else None
    mem = api.memory()
    other = q.get("other_devices") in ("1", "true", "yes")
    with api._mem_lock:
        res = mem.similar(vector=vec or None, device_id=dev, t=_time(q, "at"),
                          top=_int(q, "top", 5, 1, 1000), exclude_device=other)
    return {"results": res}


def h_mesh(api, p, q, b):
    mesh = api.ask(api.view.status).get("mesh")
    if not mesh:
        return {"enabled": False, "reason": "this coordinator runs no mesh (sync.mesh_enabled: "
                                            "false, or the mesh is not wired into it)"}
    out = dict(mesh)
    out.setdefault("enabled", True)
    return out


def h_snapshot(api, p, q, b):
    return Raw(api.hub.get().json, "application/json")


def h_events(api, p, q, b):           # served by the server's stream loop (route.stream)
    raise ApiError(500, "the event stream is served by the server")


def h_probe(api, p, q, b):          # answered by the server before authentication
    raise ApiError(500, "probes are served by the server")


def h_metrics(api, p, q, b):
    body, ctype = api.metrics.render()
    return Raw(body, ctype)


def h_openapi(api, p, q, b):
    if api._openapi is None:
        api._openapi = json.dumps(document(ROUTES), indent=1).encode()
    return Raw(api._openapi, "application/json")


Q_LIMIT = ("limit", "integer", "rows to return")
ROUTES = [
    Route("GET", "/api/status", h_status, "The coordinator's status object (as `becomingone status --json`)",
          "Status"),
    Route("GET", "/api/devices", h_devices, "Every device's current session, with its last TELEMETRY "
          "in physical units", "DeviceList", tag="devices"),
    Route("GET", "/api/devices/{device}", h_device, "One device: session, telemetry, Master windows, "
          "sync state, configuration", "DeviceDetail", tag="devices"),
    Route("GET", "/api/devices/{device}/windows", h_windows, "The device's Master windows (every "
          "configured one, or one of `seconds`)", "Windows",
          query=(("seconds", "number", "one window of this length (s), <= master.tau_max"),),
          tag="devices"),
    Route("GET", "/api/devices/{device}/history", h_history, "The device's history from memory, "
          "columnar for charts: telemetry (effective decision, physical units), Master windows, "
          "Emissary, and the ledger's decision/CLEAR events (series times `t_epoch_s`: seconds "
          "since the epoch, UTC)", "History",
          query=(("since", "string", "time (epoch s, ISO 8601, now, -10m; default until - 10 min)"),
                 ("until", "string", "time (default now)"),
                 ("points", "integer", "at most about this many samples per series (1500)")),
          tag="devices"),
    Route("GET", "/api/devices/{device}/config", h_config_get, "The device's configuration history "
          "and current state", "ConfigListing", tag="devices"),
    Route("POST", "/api/devices/{device}/clear", _post("clear"), "Send CLEAR: the device leaves "
          "QUARANTINE (a ledger `action` entry)", "ClearResult", body="Empty", tag="actions"),
    Route("POST", "/api/devices/{device}/config", _post("config", ("changes",)), "Apply a "
          "configuration change (CONFIG frame, resent until ACKed)", "ConfigMove",
          body="ConfigRequest", tag="actions"),
    Route("POST", "/api/devices/{device}/undo", _post("undo"), "Undo the last configuration change",
          "ConfigMove", body="Empty", tag="actions"),
    Route("POST", "/api/devices/{device}/redo", _post("redo"), "Redo a configuration change",
          "ConfigMove", body="Empty", tag="actions"),
    Route("POST", "/api/devices/{device}/goto", _post("goto", ("version",)), "Move to a "
          "configuration version", "ConfigMove", body="GotoRequest", tag="actions"),
    Route("POST", "/api/devices/{device}/pow", _post("pow", ("bits",)), "Set the proof-of-work "
          "difficulty required from the device", "ConfigMove", body="PowRequest", tag="actions"),
    Route("POST", "/api/model", _post("model"), "Send a MODEL (bias, w_level, w_kurt, w_crest, "
          "w_anoms; or the seed form w, b) to one device or all", "ModelResult", body="ModelRequest", tag="actions"),
    Route("GET", "/api/sync", h_sync, "Sync layer: per-device Master vs Emissary state, collapse "
          "counts, recent collapse entries", "Sync", query=(Q_LIMIT,), tag="sync"),
    Route("GET", "/api/decisions", h_decisions, "Decision timeline: devices' decision WITNESS "
          "records, quarantine releases and CLEAR actions from the ledger", "Decisions",
          query=(("device", "integer", "only this device"), Q_LIMIT), tag="sync"),
    Route("GET", "/api/ledger", h_ledger, "Ledger size, root, origin, public key, latest checkpoint",
          "Ledger", tag="ledger"),
    Route("GET", "/api/ledger/checkpoint", h_checkpoint, "The latest signed checkpoint",
          "Checkpoint", tag="ledger"),
    Route("GET", "/api/ledger/cosignatures", h_cosignatures,
          "Witnesses' cosignatures of the ledger's checkpoints (C2SP tlog-cosignature lines)",
          "Cosignatures", tag="ledger"),
    Route("GET", "/api/ledger/entries", h_entries, "A page of ledger entries (default: the last 50)",
          "LedgerEntries", query=(("start", "integer", "first index"), Q_LIMIT), tag="ledger"),
    Route("GET", "/api/ledger/entries/{index}", h_entry, "One entry with its Merkle inclusion proof",
          "EntryProof", query=(("size", "integer", "tree size of the proof (default: now)"),),
          tag="ledger"),
    Route("GET", "/api/memory/tables/{table}", h_memory_table, "Rows of a memory table, newest "
          "`limit`, oldest first", "MemoryRows",
          query=(("device", "integer", "device id"), ("since", "string", "time (epoch s, ISO 8601, "
                 "now, -10m)"), ("until", "string", "time"), ("layer", "string", "witness_log: layer"),
                 ("kind", "string", "witness_log / coherence_history: kind"), Q_LIMIT), tag="memory"),
    Route("GET", "/api/memory/reconstruct", h_reconstruct, "A device's coherence state at a time",
          "Reconstruct", query=(("device", "integer", "device id"), ("at", "string", "time")),
          tag="memory"),
    Route("GET", "/api/memory/similar", h_similar, "Nearest temporal signatures (ET Eq 24)",
          "Similar", query=(("device", "integer", "device id"), ("at", "string", "time"),
                            ("vector", "string", "comma-separated signature"),
                            ("top", "integer", "results"),
                            ("other_devices", "boolean", "only other devices")), tag="memory"),
    Route("GET", "/api/mesh", h_mesh, "Mesh status: peers, T_global (or enabled: false)", "Mesh",
          tag="sync"),
    Route("GET", "/api/snapshot", h_snapshot, "The dashboard snapshot (what the event stream sends)",
          "Snapshot", tag="dashboard"),
    Route("GET", "/api/events", h_events, "Server-sent events: one `snapshot` event every "
          "http.sse_interval s", None, stream=True, tag="dashboard",
          query=(("max_events", "integer", "close after this many events"),), raw="text/event-stream"),
    Route("GET", "/healthz", h_probe, "Liveness: the process serves and its processing loop "
          "answers (no token needed; 200 or 503)", "Probe", tag="meta"),
    Route("GET", "/readyz", h_probe, "Readiness: ledger writable, every link open, running (no "
          "token needed; 200 or 503 naming the failed check)", "Probe", tag="meta"),
    Route("GET", "/metrics", h_metrics, "Prometheus metrics (text exposition format)", None,
          tag="metrics", raw="text/plain"),
    Route("GET", "/openapi.json", h_openapi, "This OpenAPI document", None, tag="meta",
          raw="application/json"),
]


def _check(value, schema, where):
    """A small JSON Schema check of a request body (the subset SCHEMAS' request bodies use:
    type, minimum, maximum, required, additionalProperties, oneOf, const); ApiError 400 naming
    the field, what it got and what is allowed. An integer field refuses 3.5 (no truncation)
    and booleans."""
    if "oneOf" in schema:
        errs = []
        for alt in schema["oneOf"]:
            try:
                return _check(value, alt, where)
            except ApiError as e:
                errs.append(e.message)
        raise ApiError(400, "%s: %r is not allowed (%s)" % (where, value, "; or ".join(errs)))
    if "const" in schema:
        if value != schema["const"]:
            raise ApiError(400, "%s must be %r (got %r)" % (where, schema["const"], value))
        return
    t = schema.get("type")
    types = t if isinstance(t, list) else [t] if t else []
    ok = not types or any(
        (x == "integer" and isinstance(value, int) and not isinstance(value, bool))
        or (x == "number" and isinstance(value, (int, float)) and not isinstance(value, bool))
        or (x == "string" and isinstance(value, str)) or (x == "boolean" and isinstance(value, bool))
        or (x == "object" and isinstance(value, dict)) or (x == "array" and isinstance(value, list))
        or (x == "null" and value is None) for x in types)
    if not ok:
        raise ApiError(400, "%s must be %s (got %s)" % (
            where, " or ".join("an integer" if x == "integer" else "a " + x for x in types),
            json.dumps(value)[:60]))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        lo, hi = schema.get("minimum"), schema.get("maximum")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise ApiError(400, "%s=%s is out of range (allowed: %s..%s)" % (
                where, value, "" if lo is None else lo, "" if hi is None else hi))
    if isinstance(value, dict) and schema.get("properties") is not None:
        props = schema["properties"]
        for k in schema.get("required", ()):
            if k not in value:
                raise ApiError(400, "the request body needs %r (a JSON object with: %s)"
                               % (k, ", ".join(schema.get("required", ()))))
        for k, v in value.items():
            if k in props:
                _check(v, props[k], k if where == "the request body" else where + "." + k)
            elif schema.get("additionalProperties") is False:
                raise ApiError(400, "unknown field %r in the request body (allowed: %s)"
                               % (k, ", ".join(props) or "none"))


def validate_body(route, body):
    """Check a POST body against the route's request schema (host/http/openapi.py SCHEMAS)."""
    if route.body is not None:
        _check(body if body is not None else {}, SCHEMAS[route.body], "the request body")


def match_route(method, path):
    """(route, params) or (None, "method") when the path exists for another method, or (None, None)."""
    other = False
    for r in ROUTES:
        m = r.regex.match(path)
        if m:
            if r.method == method:
                return r, m.groupdict()
            other = True
    return None, ("method" if other else None)
