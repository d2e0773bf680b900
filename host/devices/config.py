"""Device configuration as an event-sourced history per device (ET Eq 29, "TimeTraveler":
S_t = S_0 ∘ D_1 ∘ … ∘ D_t, undo = S_t ∘ D_t^{-1}).

Every change is an event D_v = {key: [old, new]} (version v = 1, 2, …); the state at version
v is the defaults S_0 with D_1..D_v applied. `apply` records a new event (dropping any redo
tail), `undo`/`redo` move one version, `goto(v)` moves to any version 0..latest; each returns
the *effective change* {key: value} that brings the device from its current state to the
new one. `DeviceConfigs` (the coordinator's part) sends that change to the device in a CONFIG
frame, resends it every `retry_s` until the device ACKs it or `timeout_s` passes, and writes a
ledger entry of kind "config" with status "acked", "refused" or "timeout". Histories persist as
JSON in the data folder (devconfig.json), so undo/redo survive a restart. When a device starts a
new boot, its whole current configuration (what differs from the defaults) is sent again.

Before a change is stored it is checked as a whole with the firmware's own rules
(device/config_rules.py via `check_config`: ranges, alert <= quarantine, k > 0, P > 0, k*P > 1,
both PIDs' gains at the beat period, the period within the board limits the device announced in
its HELLO), on the values the device will see (q16 keys rounded as on the wire); a change that
fails is refused with the key named and nothing is stored. Should a device still refuse a CONFIG
(ACK BAD_VALUE / UNSUPPORTED, or ERROR naming the key: e.g. a history written by an older host,
or a board with other limits), the events it carried are marked refused and leave the effective
state, and that change is never sent again, at a HELLO or otherwise: a device is not crash-looped
or nagged by a configuration it cannot take.
"""
import json
import os
import time

from becomingone.errors import UserError
from becomingone.util.atomic import write_json
from shared import protocol as P
from shared.protocol_codes import POW_BITS_DEFAULT

__all__ = ["ConfigHistory", "DeviceConfigs", "DEVICE_DEFAULTS", "device_defaults", "to_pairs",
           "check_config", "hello_limits", "config_key_of"]

# Version 0 of every device's history: the documented firmware defaults (SPEC §3-§4), with
# the host config's values laid over them by device_defaults(cfg). Keys and wire scaling come
# from shared/protocol.py CONFIG_KEYS ("q16" values are sent as round(value * 65536)).
DEVICE_DEFAULTS = {
    "telemetry_every": 1, "pow_bits": POW_BITS_DEFAULT, "coherence_threshold": 0.95, "period_us": 4211,
    "pid_kp": 0.6, "pid_ki": 0.1, "pid_kd": 0.05, "setpoint": 0.5, "alert_threshold": 0.6,
    "quarantine_threshold": 0.85, "batch_beats": 1, "heartbeat_every": 238, "lag_samples": 0,
    "omega": 0.0, "anomaly_z": 5.4, "output_safe": 0.0, "pulse_k": 4.0, "pulse_p": 5.0,
    "act_kp": 2.0, "act_ki": 8.0, "act_kd": 0.0, "act_mode": 0, "act_manual": 0.0,
    "act_p_on_m": 0,
}
KEY_IDS = {}
for _kid, (_name, _scale) in P.CONFIG_KEYS.items():
    KEY_IDS[_name] = (_kid, _scale)


def device_defaults(cfg=None):
    """DEVICE_DEFAULTS restricted to the keys the protocol knows, overlaid with host config."""
    d = {k: v for k, v in DEVICE_DEFAULTS.items() if k in KEY_IDS}
    for name, (_kid, scale) in KEY_IDS.items():
        d.setdefault(name, 0.0 if scale == "q16" else 0)
    if cfg is not None:
        d["pow_bits"] = int(cfg.admission.pow_bits)
        d["telemetry_every"] = int(cfg.devices.telemetry_every)
        d["coherence_threshold"] = float(cfg.kairos.coherence_threshold)
        d["omega"] = float(cfg.kairos.omega)
        d["lag_samples"] = cfg.lag_samples()           # 0: learned; else at the nominal f_k
        d["period_us"] = int(round(cfg.beat_period() * 1e6))
        d["pulse_k"] = float(cfg.pulse.k)
        d["pulse_p"] = float(cfg.pulse.P)
    return d


def wire_value(name, v):
    """What the device sees of a value: q16 keys as round(v * 65536) / 65536."""
    return round(v * 65536) / 65536.0 if KEY_IDS[name][1] == "q16" else v


def config_key_of(text):
    """The key a device's ERROR about a CONFIG names: its text is "<key id> <name>" (16
    characters, the name possibly cut; docs/PROTOCOL.md 2.5) -> the full name, or None."""
    head = (text or "").split(" ", 1)[0]
    if not head.isdigit():
        return None
    spec = P.CONFIG_KEYS.get(int(head))
    return spec[0] if spec else "key %s" % head


def hello_limits(hello):
    """The board limits a device announced in its HELLO (docs/PROTOCOL.md 2.1), or None."""
    if not hello or not hello.get("spb_max"):
        return None
    return {"f_s": hello.get("fs_hz"), "spb_max": hello["spb_max"],
            "period_min_us": hello.get("period_min_us", 500)}


def check_config(state, changed, limits=None):
    """The firmware's rules (device/config_rules.py) on a whole configuration `state` with the
    keys `changed` set; UserError naming the key otherwise. limits: hello_limits(), or None."""
    from device.config_rules import Refused, check, key_of, message_of
    seen = {k: wire_value(k, v) for k, v in state.items()}
    try:
        check(seen.__getitem__, list(changed), limits)
    except Refused as e:
        key = key_of(e)
        raise UserError("config %s = %r refused (the device would refuse it too): %s"
                        % (key, state.get(key), message_of(e))) from None


def to_pairs(changes):
    """{name: value} -> CONFIG pairs [[key id, i32], ...] (q16 values scaled by 65536)."""
    out = []
    for name, v in sorted(changes.items()):
        kid, scale = KEY_IDS[name]
        iv = int(round(v * 65536)) if scale == "q16" else int(v)
        if not -0x80000000 <= iv <= 0x7FFFFFFF:
            raise UserError("config %s = %r does not fit the wire (i32%s)"
                            % (name, v, ", value x 65536" if scale == "q16" else ""))
        out.append([kid, iv])
    return out


class ConfigHistory:
    """One device's configuration history: the defaults (version 0), the change events and
    the current position. Raises UserError for unknown keys, wrong types or a version that
    does not exist."""
    def __init__(self, defaults, events=None, position=None):
        self.defaults = dict(defaults)
        self.events = [dict(e) for e in (events or [])]
        self.position = len(self.events) if position is None else int(position)
        if not 0 <= self.position <= len(self.events):
            raise ValueError("config position %d outside 0..%d" % (self.position, len(self.events)))

    @property
    def latest(self):
        return len(self.events)

    def state(self, version=None):
        """The effective configuration at a version: events the device refused do not count."""
        v = self.position if version is None else version
        s = dict(self.defaults)
        for ev in self.events[:v]:
            if ev.get("refused"):
                continue
            for k, (_old, new) in ev["delta"].items():
                s[k] = new
        return s

    def refuse(self, versions, detail, key=None):
        """The device refused the CONFIG carrying these event versions; when it named the key,
        only the events that set that key (the latest of them) are marked."""
        evs = [self.events[v - 1] for v in versions if 1 <= v <= len(self.events)]
        if key is not None and any(key in e["delta"] for e in evs):
            evs = [e for e in evs if key in e["delta"]][-1:]
        for e in evs:
            e["refused"] = detail

    def validate(self, changes):
        if not isinstance(changes, dict) or not changes:
            raise UserError("a config change is a non-empty mapping key -> value")
        bad = sorted(k for k in changes if k not in self.defaults)
        if bad:
            raise UserError("unknown config key(s) %s (allowed: %s)"
                            % (", ".join(map(str, bad)), ", ".join(sorted(self.defaults))))
        for k, v in changes.items():
            d = self.defaults[k]
            if isinstance(d, bool) or not isinstance(d, (int, float)):
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise UserError("config %s must be a number (got %r)" % (k, v))
            if isinstance(d, int) and not isinstance(v, int):
                if float(v).is_integer():
                    changes[k] = int(v)
                else:
                    raise UserError("config %s must be an integer (got %r)" % (k, v))

    def apply(self, changes, note=None, check=None):
        """Record a change (a new event); `check(new_state, changed)` may refuse it first."""
        changes = dict(changes)
        self.validate(changes)
        cur = self.state()
        if check is not None:
            new = dict(cur)
            new.update(changes)
            check(new, [k for k in changes if cur[k] != changes[k]])
        delta = {k: [cur[k], v] for k, v in changes.items() if cur[k] != v}
        if not delta:
            return {}
        del self.events[self.position:]
        self.events.append({"version": len(self.events) + 1, "delta": delta,
                            "t": time.time(), "note": note})
        self.position = len(self.events)
        return {k: nv for k, (_o, nv) in delta.items()}

    def goto(self, version):
        try:
            version = int(version)
        except (TypeError, ValueError):
            raise UserError("config version must be an integer (got %r)" % (version,)) from None
        if not 0 <= version <= self.latest:
            raise UserError("config version %d does not exist (allowed: 0..%d)"
                            % (version, self.latest))
        before = self.state()
        self.position = version
        after = self.state()
        return {k: v for k, v in after.items() if before.get(k) != v}

    def undo(self):
        if self.position == 0:
            raise UserError("nothing to undo (already at version 0)")
        return self.goto(self.position - 1)

    def redo(self):
        if self.position >= self.latest:
            raise UserError("nothing to redo (at the latest version %d)" % self.latest)
        return self.goto(self.position + 1)

    def to_dict(self):
        return {"position": self.position, "events": self.events}


class DeviceConfigs:
    """Histories of all devices + CONFIG delivery with ACK/retry + ledger entries.

    send(device_id, changes, config_version) sends one CONFIG frame (config_version: a
    per-device counter that only grows, persisted, so a device can tell a retry or a stale
    frame; the device's ACK carries it in `ref`); ledger_append(kind, data) records the
    outcome."""

    def __init__(self, defaults, path=None, send=None, ledger_append=None,
                 retry_s=0.5, timeout_s=10.0, clock=time.monotonic, limits=None):
        """limits(device_id) -> the board limits of its HELLO (hello_limits), or None; when the
        defaults hold every CONFIG key, changes are checked with check_config first."""
        self.defaults = dict(defaults)
        self.limits = limits
        self.refused = {}      # device -> the last change set it refused (never sent again)
        self.path = path
        self.send = send
        self.ledger_append = ledger_append
        self.retry_s = retry_s
        self.timeout_s = timeout_s
        self.clock = clock
        self.histories = {}
        self.pending = {}      # device -> dict(version, changes, op, seq, sent, first, attempts)
        self.cfg_seq = {}      # device -> last config_version used on the wire
        self.counters = {"sent": 0, "acked": 0, "timeouts": 0, "retries": 0, "refused": 0,
                         "not_resent": 0}
        if path and os.path.exists(path):
            self._load()

    def _load(self):
        try:
            with open(self.path, encoding="utf-8") as f:
                data = json.load(f)
            for d, h in data.get("devices", {}).items():
                self.histories[int(d)] = ConfigHistory(self.defaults, h["events"], h["position"])
            for d, v in data.get("cfg_seq", {}).items():
                self.cfg_seq[int(d)] = int(v)
            for d, v in data.get("refused", {}).items():
                self.refused[int(d)] = tuple((k, x) for k, x in v)
        except (ValueError, KeyError, TypeError) as e:
            raise UserError("device config history %s is damaged (%s)" % (self.path, e)) from None

    def _save(self):
        if not self.path:
            return
        data = {"devices": {str(d): h.to_dict() for d, h in self.histories.items()},
                "cfg_seq": {str(d): v for d, v in self.cfg_seq.items()},
                "refused": {str(d): [list(kv) for kv in v] for d, v in self.refused.items()}}
        write_json(self.path, data, mode=0o600, sort_keys=True)

    def history(self, device_id):
        h = self.histories.get(device_id)
        if h is None:
            h = self.histories[device_id] = ConfigHistory(self.defaults)
        return h

    def _checker(self, device_id):
        if not all(k in self.defaults for k in KEY_IDS):
            return None            # partial defaults (tests of the history alone)
        lim = self.limits(device_id) if self.limits is not None else None
        return lambda state, changed: check_config(state, changed, lim)

    def _change(self, device_id, op, changes, versions=()):
        self._save()
        h = self.history(device_id)
        if changes:
            self._deliver(device_id, op, h.position, changes, versions)
        return {"device_id": device_id, "op": op, "version": h.position, "latest": h.latest,
                "changes": changes, "state": h.state()}

    def apply(self, device_id, changes, note=None):
        h = self.history(device_id)
        ch = h.apply(changes, note, check=self._checker(device_id))
        return self._change(device_id, "apply", ch, [h.position] if ch else [])

    def _move(self, device_id, op, fn, *a):
        """undo / redo / goto: the state it leads to is checked before the history moves."""
        h = self.history(device_id)
        pos = h.position
        ch = fn(*a)
        chk = self._checker(device_id)
        if chk is not None and ch:
            try:
                chk(h.state(), list(ch))
            except UserError:
                h.position = pos
                raise
        return self._change(device_id, op, ch)

    def undo(self, device_id):
        h = self.history(device_id)
        return self._move(device_id, "undo", h.undo)

    def redo(self, device_id):
        h = self.history(device_id)
        return self._move(device_id, "redo", h.redo)

    def goto(self, device_id, version):
        h = self.history(device_id)
        return self._move(device_id, "goto", h.goto, version)

    def resync(self, device_id):
        """A device started a new boot: send its whole non-default configuration again."""
        h = self.histories.get(device_id)
        if h is None:
            return None
        diff = {k: v for k, v in h.state().items() if self.defaults[k] != v}
        if diff and self.refused.get(device_id) == _key(diff):
            self.counters["not_resent"] += 1       # refused before: never sent again
            return {}
        if diff:
            # the events the diff comes from (a refusal marks the one that set the bad key)
            vers = [e["version"] for e in h.events[:h.position]
                    if not e.get("refused") and any(k in diff for k in e["delta"])]
            self._deliver(device_id, "resync", h.position, diff, vers)
        return diff

    def push(self, device_id, changes, op="resync"):
        """Send `changes` to the device as part of its current version (no new history event):
        a value the device must hold whatever its history says (the host's PoW difficulty)."""
        self._deliver(device_id, op, self.history(device_id).position, changes)

    def _deliver(self, device_id, op, version, changes, versions=()):
        versions = list(versions)
        old = self.pending.pop(device_id, None)
        if old is not None:        # superseded: merge so nothing is lost on the device
            merged = dict(old["changes"])
            merged.update(changes)
            changes = merged
            versions = list(old.get("versions", ())) + versions
            self._record(device_id, old, "superseded")
        now = self.clock()
        seq = self.cfg_seq[device_id] = self.cfg_seq.get(device_id, 0) + 1
        self._save()
        p = {"version": version, "changes": dict(changes), "op": op, "seq": seq,
             "first": now, "sent": None, "attempts": 0, "versions": versions}
        self.pending[device_id] = p
        self._send(device_id, p, now)

    def _send(self, device_id, p, now):
        p["sent"] = now
        p["attempts"] += 1
        if p["attempts"] > 1:
            self.counters["retries"] += 1
        self.counters["sent"] += 1
        if self.send is not None:
            self.send(device_id, p["changes"], p["seq"])

    def on_ack(self, device_id, ref, status=0, key=None):
        """A device's ACK of CONFIG (ref = config_version). status 0 (OK) or 4 (STALE: it had
        applied this version already) count as delivered; other statuses (or an ERROR about the
        CONFIG, `key` = the key it named) mean the device refused the change: recorded as
        "refused", the events it carried leave the effective state, and the same change is never
        sent again."""
        p = self.pending.get(device_id)
        if p is None or ref != p["seq"]:
            return False
        del self.pending[device_id]
        if status in (P.ACK_OK, P.ACK_STALE):
            self.counters["acked"] += 1
            self._record(device_id, p, "acked")
        else:
            self.counters["refused"] += 1
            detail = {"ack_status": status, "config_version": p["seq"]}
            if key:
                detail["key"] = key
            h = self.history(device_id)
            h.refuse(p.get("versions", ()), detail, key if key in self.defaults else None)
            self.refused[device_id] = _key(p["changes"])
            self._save()
            self._record(device_id, p, "refused", **detail)
        return True

    def on_reset(self, device_id, cause):
        """The device came back from a crash or a watchdog reset (HELLO reset_cause) while a
        CONFIG waited for its ACK: that CONFIG took it down; it is refused, never sent again."""
        p = self.pending.get(device_id)
        if p is None:
            return False
        return self.on_ack(device_id, p["seq"], status=P.ACK_REJECTED,
                           key="reset:%s" % ("crash" if cause == P.RESET_CRASH else "watchdog"))

    def tick(self, now=None):
        now = self.clock() if now is None else now
        for d, p in list(self.pending.items()):
            if now - p["first"] >= self.timeout_s:
                del self.pending[d]
                self.counters["timeouts"] += 1
                self._record(d, p, "timeout")
            elif now - p["sent"] >= self.retry_s:
                self._send(d, p, now)

    def _record(self, device_id, p, status, **extra):
        if self.ledger_append is not None:
            data = {"target": "device:%d" % device_id, "device": device_id, "op": p["op"],
                    "version": p["version"], "change": p["changes"], "status": status,
                    "attempts": p["attempts"], "config_version": p["seq"]}
            data.update(extra)
            self.ledger_append("config", data)

    def listing(self, device_id):
        h = self.history(device_id)
        return {"device_id": device_id, "version": h.position, "latest": h.latest,
                "state": h.state(), "events": h.events,
                "pending": self.pending.get(device_id)}


def _key(changes):
    """A change set as a comparable value (a refused one is never sent again)."""
    return tuple(sorted(changes.items()))
