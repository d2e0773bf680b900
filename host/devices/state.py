"""One decoded device state: the single place that turns what the host knows of a device (its
session summary: last TELEMETRY, last HEARTBEAT, HELLO, sequence counters; plus the sync
layer's state and the Master's windows when the caller has them) into the values every user
surface shows: `becomingone status`, `device list`, the HTTP API, the event stream, /metrics,
MQTT and the dashboard (docs/HTTP.md, "Device state").

    st = device_state(summary, sync=None, windows=None)

Values are physical (coherence, threat, PID output 0..1; PID error -1..1; lateness in
seconds), decided once here:

- `decision` is the device's effective decision: QUARANTINE for as long as the device is
  latched in quarantine (until a CLEAR), else the decision of its last beat; the beat's own
  decision is `beat_decision`. `quarantined` is the latch bit.
- `windows`: one entry per Master window, `{"window": "10s", "window_s": 10.0, "C": ...,
  "fill": ...}`: fill = the share of the window's span, in device time, that it holds from a
  working sensor (0..1; becomingone.core.master "Fill"); C is None until the window exists
  (fill >= 0.9).
- `sync`: the sync layer's state: C_sync (None while not evaluated: a window still filling, a
  dead or stuck sensor), delta_phase, coherent, collapsed, since, evaluated, and the fills of
  its Master and Emissary windows.
- `lateness_s`: how late the last beat started; `heartbeat` the device's own percentiles in s.
- `lost`: sequence gaps of the session; `samples_lost` from HEARTBEAT when the device sends it.
- times (`last_seen`, `opened`) as ISO 8601 UTC text; `age_s` seconds since last_seen;
  `beat_time` the device's own time of its last beat mapped to the host clock by the TIME_SYNC
  fit (`clock`: offset, drift in ppm, residual), None before the first sample.

New TELEMETRY fields decoded by becomingone.wire.telemetry.decode_telemetry (and new HEARTBEAT
fields) appear here without a change: every decoded field is carried under `telemetry`, and the
known ones are lifted to the top level.
"""
import time

from becomingone.util.times import fmt_time
from becomingone.wire.telemetry import decode_telemetry

__all__ = ["device_state", "window_label", "DECISIONS", "state_time"]

DECISIONS = ("NOOP", "APPLY_BALANCE", "APPLY_OPTIMIZE", "ALERT", "QUARANTINE")
# telemetry fields lifted to the top level of the state (physical units already); always there
_LIFT = ("beat", "coherence", "threat", "pid_error", "pid_output", "o_weight", "collapse")
# lifted when the device's TELEMETRY carries them (newer protocol versions)
_LIFT_IF_PRESENT = ("level", "kurt", "crest", "anoms", "coherence_lost", "sensor_fault",
                    "lag_locked")


def window_label(seconds):
    """The unit-carrying label of a window length: 10 -> "10s", 0.5 -> "0.5s"."""
    return "%gs" % float(seconds)


def state_time(t):
    """A time as every surface shows it: ISO 8601 UTC (None stays None)."""
    return None if t is None else fmt_time(float(t))


def _window(w):
    fill = w.get("fill")
    c = w.get("C") if w.get("ready", True) else None     # a Master window dict: C once it exists
    return {"window": window_label(w["window"]), "window_s": float(w["window"]),
            "C": None if c is None else float(c),
            "fill": None if fill is None else float(fill)}


def _opt(v):
    return None if v is None else float(v)


def device_state(summary, sync=None, windows=None, now=None):
    """The decoded state of one device (module docstring) from its session summary (a dict as
    Session.summary() / status()["sessions"][id] give it), the sync layer's state of the device
    (or None) and its Master windows ([{window, C, fill}] or None)."""
    s = summary or {}
    hello = s.get("hello") or {}
    tel = decode_telemetry(s.get("last_telemetry"), hello or None)
    now = time.time() if now is None else now
    last_seen = s.get("last_seen")
    fw = ("%d.%d.%d" % (hello["fw_major"], hello["fw_minor"], hello["fw_patch"])
          if "fw_major" in hello else None)
    out = {"device_id": int(s["device_id"]), "boot_id": s.get("boot_id"),
           "online": bool(s.get("online")), "board": hello.get("board"), "firmware": fw,
           "decision": None, "beat_decision": None, "quarantined": None}
    for k in _LIFT:
        out[k] = None
    out.update(lateness_s=None, period_s=None)
    if tel is not None:
        for k in _LIFT:
            out[k] = tel[k]
        for k in _LIFT_IF_PRESENT:
            if k in tel:
                out[k] = tel[k]
        out["beat_decision"] = tel["decision"]
        out["quarantined"] = bool(tel["quarantined"])
        out["decision"] = "QUARANTINE" if tel["quarantined"] else tel["decision"]
        out["lateness_s"] = tel["lateness_us"] / 1e6
        out["period_s"] = tel["period_us"] / 1e6
    hb = s.get("heartbeat")
    out["heartbeat"] = None if not hb else {
        "beats": hb.get("beats"), "late_p50_s": _us(hb.get("late_p50_us")),
        "late_p99_s": _us(hb.get("late_p99_us")), "late_max_s": _us(hb.get("late_max_us")),
        "heap_free": hb.get("heap_free"), "witness_queue": hb.get("witness_queue"),
        "samples_lost": hb.get("samples_lost")}
    out.update(frames=s.get("frames"), lost=s.get("lost"), duplicates=s.get("duplicates"),
               reordered=s.get("reordered"), witness=s.get("witness"),
               samples_lost=(hb or {}).get("samples_lost"),
               last_seen=state_time(last_seen), opened=state_time(s.get("opened")),
               beat_time=state_time(s.get("beat_time_unix")),
               clock=_clock(s.get("clock")),
               age_s=None if last_seen is None else max(0.0, now - float(last_seen)),
               lateness_histogram=s.get("lateness"))
    out["windows"] = [_window(w) for w in (windows or [])]
    out["sync"] = None if sync is None else {
        "C_sync": _opt(sync.get("C_sync")), "delta_phase": sync.get("delta_phase"),
        "coherent": sync.get("coherent"), "collapsed": bool(sync.get("collapsed")),
        "since": state_time(sync.get("since")), "evaluated": bool(sync.get("evaluated", True)),
        "master_fill": _opt(sync.get("master_fill")),
        "emissary_fill": _opt(sync.get("emissary_fill"))}
    out["telemetry"] = tel
    return out


def _clock(c):
    """The device clock's fit against the host's (TIME_SYNC): offset, drift, residual."""
    if not c or not c.get("samples"):
        return None
    return {"samples": c["samples"], "offset_s": c["offset_us"] / 1e6,
            "drift_ppm": c["drift_ppm"], "rms_s": c["rms_us"] / 1e6,
            "discarded": c.get("discarded", 0)}


def _us(v):
    return None if v is None else float(v) / 1e6
