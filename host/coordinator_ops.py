"""Operator actions, status and control-socket commands of the coordinator (a mixin of
host/coordinator.py's Coordinator; they run in its processing thread). The control protocol
is described in docs/HOST.md, "Control socket"."""
import json
import math
import os
import tempfile
import time

from host.errors import UserError
from host.keystore import parse_device_id
from shared import protocol as P

__all__ = ["OperatorMixin", "COMMANDS"]


class OperatorMixin:
    # ------------------------------------------------------------------ operator actions
    def _session(self, device_id):
        d = parse_device_id(device_id)
        s = self.sessions.get(d)
        if s is None:
            raise UserError("device %d has not been seen by this coordinator" % d)
        return s

    def clear(self, device_id):
        s = self._session(device_id)
        ok = self.send(s, P.CLEAR, {"reason": P.CLEAR_OPERATOR, "ref": 0})
        self._ledger_submit("action", {"action": "clear", "device": s.device_id, "sent": ok})
        self._micro("clear", device_id=s.device_id, sent=ok)
        return {"device_id": s.device_id, "sent": ok}

    def push_model(self, device, model):
        """MODEL frames with the entropy model to one device or all. ``model``: a dict with
        the feature model's bias, w_level, w_kurt, w_crest, w_anoms (missing weights are 0), or
        the seed's form w, b (threat = sigmoid(w * anoms + b))."""
        from host.model.features import model_fields
        fields = model_fields(model)
        targets = list(self.sessions.current.values()) if device in ("all", None) \
            else [self._session(device)]
        self.model_version += 1
        sent = []
        for s in targets:
            if self.send(s, P.MODEL, dict(fields, model_version=self.model_version)):
                sent.append(s.device_id)
        self._ledger_submit("action", dict(fields, action="model",
                                           model_version=self.model_version, devices=sent))
        self._micro("model", model_version=self.model_version, devices=sent, **fields)
        return {"model_version": self.model_version, "sent_to": sent}

    def set_pow_bits(self, device_id, bits):
        d = parse_device_id(device_id)
        self.admission.set_pow_bits(d, bits)
        return self.devconfig.apply(d, {"pow_bits": int(bits)}, note="pow difficulty")

    # ------------------------------------------------------------------ status
    def meta_health(self):
        lost = sum(s.lost for s in self.sessions.current.values())
        got = sum(s.frames for s in self.sessions.current.values())
        return {"ingest_lag_ms": round(self._ingest_lag_us / 1000.0, 3),
                "inbox_depth": self.inbox.qsize(),
                "ledger_queue": len(getattr(self.ledger, "_queue", ())),
                "loss": round(lost / (lost + got), 6) if lost + got else 0.0,
                "witness_pending": len(self.witness_pending),
                "config_pending": len(self.devconfig.pending)}

    def status(self):
        """The status object (docs/HOST.md). Thread-safe: from another thread it is built in
        the processing thread."""
        try:
            return self.call(self._status_now, timeout=10.0)
        except TimeoutError:
            return self._status_now()

    def _status_now(self):
        c = self.counters
        led = self.ledger
        return {
            "running": not self.stop_event.is_set(), "pid": os.getpid(),
            "started": self.started, "uptime_s": time.time() - self.started if self.started else 0,
            "data_dir": self.data_dir,
            "links": [l.stats() for l in self.links],
            "workers": [s.metrics() for s in self.supervisors],
            "devices_seen": len(self.sessions.current),
            "devices_online": sum(1 for s in self.sessions.current.values() if s.online),
            "frames_received": c["frames_received"], "frames_accepted": c["frames_accepted"],
            "frames_rejected": dict(self.rejected, **({"overload": self.overload_frames}
                                                      if self.overload_frames else {})),
            "frames_sent": c["frames_sent"],
            "beats": c["beats"],
            "witness": {"received": c["witness_received"], "committed": c["witness_committed"],
                        "acked": c["witness_acked"], "duplicate": c["witness_duplicate"],
                        "rejected_pow": c["witness_rejected_pow"],
                        "observed": c["witness_observed"], "pending": len(self.witness_pending)},
            "ledger": {"path": led.path if led else None, "size": led.size if led else None},
            "counters": dict(c), "health": self.meta_health(),
            "admission": self.admission.summary(), "devconfig": dict(self.devconfig.counters),
            "sessions": self.sessions.summary()["sessions"],
            "integration": self._core_status(),
            "http": self.http.stats() if getattr(self, "http", None) is not None else None,
            "mqtt": self.mqtt.stats() if getattr(self, "mqtt", None) is not None else None,
            "mesh": self.mesh.status() if getattr(self, "mesh", None) is not None else {"enabled": False},
        }

    def _core_status(self):
        if self.core is None:
            return None
        st = dict(self.core.status())
        st.pop("last_cycle", None)        # per-device arrays: see `memory` / the Master instead
        return st

    def write_status(self, running=True):
        try:
            st = self.status()
            st["running"] = running
            self._atomic_json(os.path.join(self.data_dir, "status.json"), st)
        except OSError:
            self.counters["status_write_errors"] += 1

    @staticmethod
    def _atomic_json(path, data):
        folder = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(prefix=".tmp", dir=folder)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, default=str, sort_keys=True)
        os.replace(tmp, path)

    # ------------------------------------------------------------------ control socket
    def _control(self, req):
        cmd = req["cmd"]
        if cmd == "ping":
            return "pong"
        fn = COMMANDS.get(cmd)
        if fn is None:
            raise UserError("unknown control command %r (allowed: ping, %s)"
                            % (cmd, ", ".join(sorted(COMMANDS))))
        return self.call(fn, self, req)


def _dev_list(c, req):
    return [s.summary() for _, s in sorted(c.sessions.current.items())]


def _config(c, req):
    d = parse_device_id(req["device"])
    if req.get("changes"):
        return c.devconfig.apply(d, req["changes"], note=req.get("note"))
    return c.devconfig.listing(d)


def _stop(c, req):
    c.stop()
    return "stopping"


def _verify(c, req):
    c.ledger.flush(10)
    from host.ledger import verify_path
    return verify_path(c.ledger.path).to_dict()


def _keys_reload(c, req):
    c.keystore.load() if os.path.exists(c.keystore.path) else None
    c.admission.reload_keys()
    c.receiver.auth = c.admission.auths
    return {"keyed_devices": sorted(c.admission.auths)}


COMMANDS = {
    "status": lambda c, r: c.status(),
    "devices": _dev_list,
    "device": lambda c, r: c._session(r["device"]).summary(),
    "config": _config,
    "undo": lambda c, r: c.devconfig.undo(parse_device_id(r["device"])),
    "redo": lambda c, r: c.devconfig.redo(parse_device_id(r["device"])),
    "goto": lambda c, r: c.devconfig.goto(parse_device_id(r["device"]), r["version"]),
    "clear": lambda c, r: c.clear(r["device"]),
    "model": lambda c, r: c.push_model(r.get("device", "all"), r),
    "pow": lambda c, r: c.set_pow_bits(r["device"], r["bits"]),
    "keys_reload": _keys_reload,
    "verify": _verify,
    "stop": _stop,
}
