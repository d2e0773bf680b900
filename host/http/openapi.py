"""The OpenAPI 3.1 description of the HTTP API, built from the route table (host/http/api.py
ROUTES) and the schemas below (JSON Schema 2020-12, as OpenAPI 3.1 uses). Served at
/openapi.json; tests/test_http_openapi.py checks that every route is described and that real
responses validate against these schemas."""
import re

__all__ = ["document", "SCHEMAS"]


def _obj(props, required=(), extra=True):
    return {"type": "object", "properties": props, "required": list(required),
            "additionalProperties": extra}


NUM = {"type": "number"}
INT = {"type": "integer"}
STR = {"type": "string"}
BOOL = {"type": "boolean"}
NUM_N = {"type": ["number", "null"]}
INT_N = {"type": ["integer", "null"]}
STR_N = {"type": ["string", "null"]}
COMPLEX = {"type": "array", "items": NUM_N, "minItems": 2, "maxItems": 2,
           "description": "a complex number as [re, im]"}
DECISION = {"type": "string", "enum": ["NOOP", "APPLY_BALANCE", "APPLY_OPTIMIZE", "ALERT",
                                       "QUARANTINE", "INVALID"]}
REF = lambda name: {"$ref": "#/components/schemas/" + name}   # noqa: E731
NULLABLE = lambda name: {"oneOf": [REF(name), {"type": "null"}]}   # noqa: E731

TIME = {"type": "string", "format": "date-time", "description": "ISO 8601 UTC"}
TIME_N = {"type": ["string", "null"], "format": "date-time", "description": "ISO 8601 UTC"}

SESSION = {
    "device_id": INT, "boot_id": INT, "online": BOOL, "opened": NUM, "last_seen": NUM,
    "frames": INT, "bytes": INT, "highest_seq": INT, "lost": INT, "duplicates": INT,
    "reordered": INT, "witness": INT, "last_telemetry": {"type": ["object", "null"]},
    "by_type": {"type": "object"}, "hello": {"type": ["object", "null"]}, "link": STR_N,
    "addr": {}, "clock": {"type": "object"}}

# the decoded device state (host/devices/state.py): physical units, ISO 8601 UTC times
STATE_WINDOW = _obj({"window": {"type": "string", "pattern": "^[0-9.e+-]+s$",
                                "description": "window length with its unit, e.g. 10s"},
                     "window_s": NUM, "C": NUM_N, "fill": NUM_N},
                    ["window", "window_s", "C", "fill"], extra=False)
DEVICE_STATE = {
    "device_id": INT, "boot_id": INT_N, "online": BOOL, "board": STR_N, "firmware": STR_N,
    "decision": {"oneOf": [DECISION, {"type": "null"}], "description": "QUARANTINE while "
                 "latched, else the last beat's decision"},
    "beat_decision": {"oneOf": [DECISION, {"type": "null"}]}, "quarantined": {"type": ["boolean", "null"]},
    "beat": INT_N, "coherence": NUM_N, "threat": NUM_N, "pid_error": NUM_N, "pid_output": NUM_N,
    "o_weight": NUM_N, "collapse": {"type": ["boolean", "null"]},
    "lateness_s": NUM_N, "period_s": NUM_N, "heartbeat": {"type": ["object", "null"]},
    "frames": INT_N, "lost": INT_N, "duplicates": INT_N, "reordered": INT_N, "witness": INT_N,
    "samples_lost": INT_N, "last_seen": TIME_N, "opened": TIME_N, "age_s": NUM_N,
    "windows": {"type": "array", "items": STATE_WINDOW},
    "sync": {"oneOf": [{"type": "null"}, _obj({
        "C_sync": NUM_N, "delta_phase": NUM_N, "coherent": {"type": ["boolean", "null"]},
        "collapsed": BOOL, "since": TIME_N, "evaluated": BOOL, "master_fill": NUM_N,
        "emissary_fill": NUM_N}, ["C_sync", "collapsed", "evaluated"], extra=False)]},
    "telemetry": {"oneOf": [{"$ref": "#/components/schemas/Telemetry"}, {"type": "null"}]}}
DEVICE_STATE_REQUIRED = ["device_id", "online", "decision", "quarantined", "threat", "coherence",
                         "lateness_s", "lost", "last_seen", "windows", "sync", "telemetry"]

SCHEMAS = {
    "Error": _obj({"error": STR}, ["error"]),
    "Probe": _obj({"status": STR, "checks": {"type": "object", "additionalProperties": BOOL},
                   "processing_loop": BOOL, "answered_in_s": NUM,
                   "closed_links": {"type": "array", "items": STR_N}}, ["status"]),
    "Empty": _obj({}, extra=True),
    "Telemetry": _obj({
        "beat": INT, "period_us": INT, "lateness_us": INT, "coherence": NUM, "pid_error": NUM,
        "pid_output": NUM, "threat": NUM, "o_weight": NUM, "decision": DECISION,
        "decision_code": INT, "collapse": BOOL, "quarantined": BOOL,
        "level": NUM, "kurt": NUM, "crest": NUM, "anoms": INT},
        ["beat", "lateness_us", "coherence", "pid_error", "pid_output", "threat", "decision",
         "quarantined"], extra=True),
    "Session": _obj(SESSION, ["device_id", "boot_id", "online", "frames", "lost"]),
    "DeviceState": _obj(DEVICE_STATE, DEVICE_STATE_REQUIRED, extra=True),
    "Device": {"allOf": [REF("DeviceState"), _obj({
        "highest_seq": INT, "bytes": INT, "by_type": {"type": "object"},
        "hello": {"type": ["object", "null"]}, "link": STR_N, "addr": {},
        "clock": {"type": "object"}})]},
    "DeviceList": _obj({"devices": {"type": "array", "items": REF("Device")}}, ["devices"]),
    "Window": _obj({
        "window": NUM, "C": NUM_N, "T_hat": {"oneOf": [COMPLEX, {"type": "null"}]},
        "coverage": NUM_N, "fill": NUM, "ready": BOOL, "beats": INT,
        "seconds": NUM, "span_beats": INT, "first_beat": INT_N, "last_beat": INT_N},
        ["window", "C", "T_hat", "coverage", "fill", "ready", "beats"], extra=False),
    "SyncState": _obj({
        "device_id": INT, "time": TIME, "C_sync": NUM_N, "delta_phase": NUM_N,
        "T_sync": {"oneOf": [COMPLEX, {"type": "null"}]}, "coherent": {"type": ["boolean", "null"]},
        "collapsed": BOOL, "since": TIME_N, "evaluated": BOOL, "master_fill": NUM_N,
        "emissary_fill": NUM_N},
        ["device_id", "C_sync", "delta_phase", "coherent", "collapsed", "evaluated"], extra=False),
    "DeviceDetail": {"allOf": [REF("Device"), _obj({
        "master_windows": {"type": "array", "items": REF("Window")},
        "config": {"type": "object"}}, ["windows", "master_windows", "sync", "config"])]},
    "History": _obj({
        "device_id": INT, "since": TIME, "until": TIME, "rows": INT,
        "decision_names": {"type": "array", "items": STR},
        "telemetry": _obj({k: {"type": "array"} for k in (
            "t_epoch_s", "coherence", "threat", "pid_error", "pid_output", "lateness_s",
            "decision")}, ["t_epoch_s", "decision"]),
        "master": {"type": "array", "items": _obj({"window": STR, "t_epoch_s": {"type": "array"},
                                                  "C": {"type": "array"}}, ["window", "t_epoch_s", "C"])},
        "emissary": _obj({"t_epoch_s": {"type": "array"}, "C": {"type": "array"}}),
        "events": {"type": "array", "items": REF("TimelineEvent")}},
        ["device_id", "since", "until", "telemetry", "master", "events"], extra=False),
    "Windows": _obj({"device_id": INT, "windows": {"type": "array", "items": REF("Window")}},
                    ["device_id", "windows"], extra=False),
    "ConfigListing": _obj({"device_id": INT, "version": INT, "latest": INT, "state": {"type": "object"},
                           "events": {"type": "array"}, "pending": {}},
                          ["device_id", "version", "latest", "state", "events"]),
    "ConfigMove": _obj({"device_id": INT, "op": STR, "version": INT, "latest": INT,
                        "changes": {"type": "object"}, "state": {"type": "object"}},
                       ["device_id", "op", "version", "latest", "changes", "state"]),
    "ClearResult": _obj({"device_id": INT, "sent": BOOL}, ["device_id", "sent"], extra=False),
    "ModelResult": _obj({"model_version": INT, "sent_to": {"type": "array", "items": INT}},
                        ["model_version", "sent_to"], extra=False),
    "ConfigRequest": _obj({"changes": {"type": "object", "description": "CONFIG keys "
                                       "(docs/PROTOCOL.md) -> new values"}, "note": STR_N},
                          ["changes"], extra=False),
    "GotoRequest": _obj({"version": INT}, ["version"], extra=False),
    "PowRequest": _obj({"bits": {"type": "integer", "minimum": 0, "maximum": 32}}, ["bits"], extra=False),
    "ModelRequest": _obj({"device": {"oneOf": [INT, {"const": "all"}]}, "bias": NUM,
                          "w_level": NUM, "w_kurt": NUM, "w_crest": NUM, "w_anoms": NUM,
                          "w": NUM, "b": NUM}, [], extra=False),
    "TimelineEvent": _obj({
        "index": INT, "time": TIME, "device": INT_N, "boot": INT_N, "beat": INT_N,
        "event": {"type": "string", "enum": ["decision", "quarantine_cleared", "clear"]},
        "decision": {"oneOf": [DECISION, {"type": "null"}]}, "threat": NUM_N, "sent": BOOL},
        ["index", "time", "device", "event", "decision"], extra=False),
    "CollapseEvent": _obj({"index": INT, "time": TIME, "device": INT_N, "C_sync": NUM_N,
                           "delta_phase": NUM_N}, ["index", "time", "device"], extra=False),
    "Sync": _obj({
        "enabled": BOOL, "collapses": INT, "releases": INT, "I_c": NUM, "phase_threshold": NUM,
        "hysteresis": NUM, "devices": {"type": "array", "items": REF("SyncState")},
        "recent": {"type": "array", "items": REF("CollapseEvent")}},
        ["enabled", "collapses", "releases", "devices", "recent"], extra=False),
    "Decisions": _obj({"events": {"type": "array", "items": REF("TimelineEvent")},
                       "counts": {"type": "object", "additionalProperties": INT}},
                      ["events", "counts"], extra=False),
    "Checkpoint": _obj({"size": INT, "root": STR, "origin": STR, "time": TIME, "note": STR},
                       ["size", "root", "origin", "time", "note"], extra=False),
    "Cosignatures": _obj({"cosignatures": {"type": "array", "items": _obj(
        {"size": INT, "name": STR, "timestamp": INT, "line": STR},
        ["size", "name", "timestamp", "line"], extra=False)}, "count": INT},
        ["cosignatures", "count"], extra=False),
    "Ledger": _obj({"size": INT, "root": STR, "origin": STR, "checkpoint": NULLABLE("Checkpoint"),
                    "public_key": STR_N}, ["size", "root", "origin", "checkpoint", "public_key"],
                   extra=False),
    "Entry": _obj({"index": INT, "timestamp": NUM, "data": _obj({"kind": STR}, ["kind"]),
                   "previous_hash": STR, "hash": STR},
                  ["index", "timestamp", "data", "previous_hash", "hash"], extra=False),
    "LedgerEntries": _obj({"size": INT, "start": INT, "entries": {"type": "array", "items": REF("Entry")}},
                          ["size", "start", "entries"], extra=False),
    "InclusionProof": _obj({"type": STR, "index": INT, "tree_size": INT, "entry_hash": STR,
                            "leaf_hash": STR, "root": STR, "path": {"type": "array", "items": STR}},
                           ["type", "index", "tree_size", "leaf_hash", "root", "path"]),
    "EntryProof": _obj({"entry": REF("Entry"), "proof": REF("InclusionProof")}, ["entry", "proof"],
                       extra=False),
    "MemoryRows": _obj({"table": STR, "rows": {"type": "array", "items": {"type": "object"}}},
                       ["table", "rows"], extra=False),
    "Reconstruct": _obj({"device_id": INT, "t": NUM, "snapshot_t": NUM_N, "age_s": NUM_N,
                         "boot_id": INT_N, "windows": {"type": "array"}, "coherence": {"type": "array"}},
                        ["device_id", "t", "windows", "coherence"]),
    "Similar": _obj({"results": {"type": "array", "items": _obj({
        "id": INT, "t": NUM, "device_id": INT, "similarity": NUM, "theta": NUM},
        ["id", "t", "device_id", "similarity", "theta"])}}, ["results"], extra=False),
    "Mesh": _obj({"enabled": BOOL, "reason": STR, "cell": STR, "members": {"type": "object"},
                  "t_global": COMPLEX}, ["enabled"]),
    "Status": _obj({
        "running": BOOL, "pid": INT, "uptime_s": NUM, "data_dir": STR,
        "devices_seen": INT, "devices_online": INT, "frames_received": INT, "frames_accepted": INT,
        "frames_rejected": {"type": "object", "additionalProperties": INT}, "frames_sent": INT,
        "frames_awaiting_handshake": INT, "beats": INT, "witness": {"type": "object"}, "ledger": {"type": "object"},
        "sessions": {"type": "object", "additionalProperties": REF("Device")}},
        ["running", "devices_seen", "frames_received", "frames_accepted", "frames_rejected",
         "frames_sent", "ledger", "sessions"]),
    "SnapshotDevice": REF("DeviceState"),
    "Snapshot": _obj({
        "seq": INT, "time": TIME, "uptime_s": NUM, "running": BOOL, "name": STR, "I_c": NUM,
        "windows": {"type": "array", "items": STR}, "interval": NUM,
        "frames": _obj({"received": INT, "accepted": INT, "sent": INT,
                        "rejected": {"type": "object", "additionalProperties": INT}},
                       ["received", "accepted", "sent", "rejected"]),
        "devices_seen": INT, "devices_online": INT,
        "devices": {"type": "array", "items": REF("SnapshotDevice")},
        "decisions": {"type": "array", "items": REF("TimelineEvent")},
        "collapses": _obj({"sync": INT, "releases": INT,
                           "recent": {"type": "array", "items": REF("CollapseEvent")}},
                          ["sync", "releases", "recent"], extra=False),
        "ledger": _obj({"size": INT_N, "checkpoint": {"oneOf": [{"type": "null"}, _obj({
            "size": INT, "root": STR, "time": TIME}, ["size", "root", "time"], extra=False)]}},
            ["size", "checkpoint"], extra=False),
        "mesh": REF("Mesh")},
        ["seq", "time", "frames", "devices", "decisions", "collapses", "ledger", "mesh"], extra=False),
}

PATH_PARAMS = {"device": ("integer", "device id 1..65535"), "index": ("integer", "ledger entry index"),
               "table": ("string", "phase_snapshots, coherence_history, witness_log, mesh_sync, "
                                   "signatures (or snapshots, coherence, witness, mesh)")}


def _operation(r):
    op = {"summary": r.summary, "tags": [r.tag], "operationId": "%s_%s" % (
        r.method.lower(), re.sub(r"[^a-z0-9]+", "_", r.path.lower()).strip("_")), "parameters": []}
    for name in re.findall(r"\{(\w+)\}", r.path):
        t, desc = PATH_PARAMS[name]
        op["parameters"].append({"name": name, "in": "path", "required": True,
                                 "description": desc, "schema": {"type": t}})
    for name, t, desc in r.query:
        op["parameters"].append({"name": name, "in": "query", "required": False,
                                 "description": desc, "schema": {"type": t}})
    err = {"description": "error", "content": {"application/json": {"schema": REF("Error")}}}
    if r.raw is not None:
        ok = {"description": r.summary, "content": {r.raw: {"schema": {"type": "string"}}}}
    else:
        ok = {"description": r.summary, "content": {"application/json": {"schema": REF(r.response)}}}
    op["responses"] = {"200": ok, "400": err, "401": err, "404": err, "503": err}
    if r.body is not None:
        op["requestBody"] = {"required": r.body != "Empty", "content": {
            "application/json": {"schema": REF(r.body)}}}
    return op


def document(routes):
    """The OpenAPI 3.1 document of `routes` (becomingone/http/api.py ROUTES)."""
    paths = {}
    for r in routes:
        paths.setdefault(r.path, {})[r.method.lower()] = _operation(r)
    paths["/"] = {"get": {"summary": "The live dashboard (HTML)", "tags": ["dashboard"],
                          "operationId": "get_dashboard",
                          "responses": {"200": {"description": "the page", "content": {
                              "text/html": {"schema": {"type": "string"}}}}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "BecomingONE host coordinator", "version": "1",
                 "description": "Devices, Master windows, sync state, decisions, ledger with proofs, "
                                "memory, mesh, operator actions (docs/HTTP.md). With a token, send "
                                "Authorization: Bearer TOKEN."},
        "components": {"schemas": SCHEMAS, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}, {}],
        "paths": paths,
    }
