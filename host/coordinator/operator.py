"""Operator actions and reads of a running coordinator, and the control socket's commands
(docs/HOST.md, "Control socket"). Everything here runs in the coordinator's processing thread;
other threads reach it through CoordinatorView (becomingone/coordinator/view.py)."""
import math
import os

from becomingone.core.sync import window_states
from becomingone.devices.state import device_state
from becomingone.errors import UserError
from becomingone.ingest.keystore import parse_device_id
from becomingone.ledger import verify_path
from becomingone.model.features import model_fields
from shared import protocol as P

__all__ = ["Operator", "COMMANDS"]


class Operator:
    """Owns the model version counter and nothing else: it acts through the coordinator's
    parts. Ports: sessions, sender (FrameSender), devconfig (DeviceConfigs), admission,
    keystore, receiver (its `auth` map follows a keys reload), ledger, submit(kind, data),
    micro(kind, device_id, **data), master (or None), core (the integration core, or None),
    status() (the status object), stop(), keys_changed(device ids) (a keys reload replaced or
    removed those devices' keys: their pending handshakes are void). Raises UserError for a device that was not seen, a
    bad device id or value, an unknown control command."""

    def __init__(self, sessions, sender, devconfig, admission, keystore, receiver, ledger, submit,
                 micro, master, core, status, stop, keys_changed=None):
        self.sessions = sessions
        self.sender = sender
        self.devconfig = devconfig
        self.admission = admission
        self.keystore = keystore
        self.receiver = receiver
        self.ledger = ledger
        self.submit = submit
        self.micro = micro
        self.master = master
        self.core = core
        self.status = status
        self.stop = stop
        self.keys_changed = keys_changed   # fn(device ids): their session keys are void
        self.model_version = 0

    # ------------------------------------------------------------------ actions
    def session(self, device_id):
        """The current session of a device; UserError when this coordinator has not seen it."""
        d = parse_device_id(device_id)
        s = self.sessions.get(d)
        if s is None:
            raise UserError("device %d has not been seen by this coordinator" % d)
        return s

    def clear(self, device_id):
        """CLEAR: the device leaves QUARANTINE (a ledger `action` entry)."""
        s = self.session(device_id)
        ok = self.sender.send(s, P.CLEAR, {"reason": P.CLEAR_OPERATOR, "ref": 0})
        self.submit("action", {"action": "clear", "device": s.device_id, "sent": ok})
        self.micro("clear", device_id=s.device_id, sent=ok)
        return {"device_id": s.device_id, "sent": ok}

    def push_model(self, device, model):
        """MODEL frames with the entropy model to one device or all ("all" or None). ``model``:
        a dict with the feature model's bias, w_level, w_kurt, w_crest, w_anoms (missing
        weights are 0), or the seed's form w, b (threat = sigmoid(w * anoms + b));
        host/model/features.py model_fields() checks it."""
        fields = model_fields(model)
        targets = list(self.sessions.current.values()) if device in ("all", None) \
            else [self.session(device)]
        self.model_version += 1
        sent = []
        for s in targets:
            if self.sender.send(s, P.MODEL, dict(fields, model_version=self.model_version)):
                sent.append(s.device_id)
        self.submit("action", dict(fields, action="model", model_version=self.model_version,
                                   devices=sent))
        self.micro("model", model_version=self.model_version, devices=sent, **fields)
        return {"model_version": self.model_version, "sent_to": sent}

    def set_pow_bits(self, device_id, bits):
        """Require `bits`-bit stamps from a device (and tell it: CONFIG pow_bits)."""
        d = parse_device_id(device_id)
        if isinstance(bits, bool) or not isinstance(bits, int):
            raise UserError("pow bits must be an integer (got %r; allowed: 0..32, never "
                            "rounded)" % (bits,))
        self.admission.set_pow_bits(d, bits)
        return self.devconfig.apply(d, {"pow_bits": int(bits)}, note="pow difficulty")

    def configure_online(self, changes, note, when=None, record=True):
        """Apply `changes` to every online device (its HELLO seen) whose state differs and, with
        `when`, for which when(state) is true; record=False: no ledger entry per device (the
        caller records the change once). Returns how many got a change."""
        n = 0
        for s in list(self.sessions.current.values()):
            if not s.online or s.hello is None:
                continue
            state = self.devconfig.history(s.device_id).state()
            if any(state.get(k) != v for k, v in changes.items()) and (when is None or when(state)):
                self.devconfig.apply(s.device_id, changes, note=note, record=record)
                n += 1
        return n

    def reload_keys(self):
        if os.path.exists(self.keystore.path):
            self.keystore.load()
        changed = self.admission.reload_keys()
        self.receiver.auth = self.admission.auths
        for d in changed:
            self.sessions.drop_key(d)
        if changed and self.keys_changed is not None:
            self.keys_changed(changed)
        return {"keyed_devices": sorted(self.admission.auths)}

    def verify(self):
        self.ledger.flush(10)
        return verify_path(self.ledger.path).to_dict()

    # ------------------------------------------------------------------ reads
    def devices(self):
        """Every device's session summary, by device id."""
        return [s.summary() for _, s in sorted(self.sessions.current.items())]

    def device(self, device_id):
        """One device: its session summary, Master windows, sync state and configuration."""
        s = self.session(device_id)
        d = s.device_id
        out = dict(s.summary())
        m = self.master
        out["windows"] = m.windows(d) if m is not None and m.index_of(d) is not None else []
        out["sync"] = self.core.sync.state(d) if self.core is not None else None
        out["config"] = self.devconfig.history(d).state()
        return out

    def windows(self, device_id, seconds=None):
        """The device's Master windows (every configured one, or one of `seconds`)."""
        if self.master is None:
            raise UserError("the Master is not running (master.enabled: false)")
        d = self.session(device_id).device_id
        return [self.master.window(d, seconds)] if seconds is not None else self.master.windows(d)

    def sync_states(self):
        """The sync layer's settings and every seen device's state (None: no integration)."""
        if self.core is None:
            return None
        sy = self.core.sync
        return {"enabled": bool(self.core.use_sync), "collapses": sy.collapses,
                "releases": sy.releases, "I_c": sy.I_c, "phase_threshold": sy.phase_threshold,
                "hysteresis": sy.hysteresis,
                "states": {d: st for d in sorted(self.sessions.current)
                           if (st := sy.state(d)) is not None}}

    def dashboard(self):
        """(status object, {device: sync state}, {device: [{window, C, fill}]}): what a
        dashboard snapshot and a /metrics scrape read in one visit."""
        return (self.status(),) + self._sync_and_windows()

    def device_reads(self):
        """([session summary], {device: sync state}, {device: [{window, C, fill}]}): what
        the decoded device states (becomingone.devices.state) are made of."""
        return (self.devices(),) + self._sync_and_windows()

    def _sync_and_windows(self):
        return window_states(self.master, None if self.core is None else self.core.sync,
                             list(self.sessions.current))

    def device_states(self):
        """Every device's decoded state (becomingone.devices.state.device_state) from its
        session alone (no sync/Master reads: the MQTT bridge asks 4 times a second)."""
        out = []
        for dev, s in self.sessions.current.items():
            out.append(device_state({"device_id": dev, "boot_id": s.boot_id, "online": s.online,
                                     "hello": s.hello, "last_telemetry": s.last_telemetry,
                                     "last_seen": s.last_seen, "opened": s.opened,
                                     "frames": s.frames, "lost": s.lost,
                                     "duplicates": s.duplicates, "reordered": s.reordered,
                                     "witness": s.witness,
                                     "heartbeat": s.extra.get("heartbeat")}))
        return out

    # ------------------------------------------------------------------ control socket
    def command(self, request):
        """One control request {"cmd": NAME, ...} (docs/HOST.md) -> its result."""
        cmd = request["cmd"]
        if cmd == "ping":
            return "pong"
        fn = COMMANDS.get(cmd)
        if fn is None:
            raise UserError("unknown control command %r (allowed: ping, %s)"
                            % (cmd, ", ".join(sorted(COMMANDS))))
        return fn(self, request)


def _config(op, req):
    d = parse_device_id(req["device"])
    if req.get("changes"):
        return op.devconfig.apply(d, req["changes"], note=req.get("note"))
    return op.devconfig.listing(d)


def _stop(op, req):
    op.stop()
    return "stopping"


COMMANDS = {
    "status": lambda op, r: op.status(),
    "devices": lambda op, r: op.devices(),
    "device": lambda op, r: op.session(r["device"]).summary(),
    "config": _config,
    "undo": lambda op, r: op.devconfig.undo(parse_device_id(r["device"])),
    "redo": lambda op, r: op.devconfig.redo(parse_device_id(r["device"])),
    "goto": lambda op, r: op.devconfig.goto(parse_device_id(r["device"]), r["version"]),
    "clear": lambda op, r: op.clear(r["device"]),
    "model": lambda op, r: op.push_model(r.get("device", "all"), r),
    "pow": lambda op, r: op.set_pow_bits(r["device"], r["bits"]),
    "keys_reload": lambda op, r: op.reload_keys(),
    "verify": lambda op, r: op.verify(),
    "stop": _stop,
}
