"""`becomingone device ACTION ...`: devices of a running coordinator (through its control
socket, docs/HOST.md) and the keystore.

    device list                         devices: decision, quarantine, threat, C, lateness, loss
    device config DEV [KEY=VALUE ...]   show the config history, or apply a change (CONFIG, ACKed)
    device undo DEV | redo DEV | goto DEV VERSION
    device clear DEV                    leave QUARANTINE (CLEAR frame)
    device model DEV|all --w W --b B    push entropy model weights (MODEL frame)
    device pow DEV BITS                 proof-of-work difficulty required from DEV (also sent)
    device keys list | add DEV [--key-file F] | remove DEV    keystore (keys are never shown)
"""
import json
import os

import yaml
from rich.console import Console

from becomingone.commands.common import resolve_data_dir
from becomingone.commands.devicetable import device_table, states_of
from becomingone.config import load_config
from becomingone.coordinator.control import SOCKET_NAME, request
from becomingone.errors import UserError
from becomingone.ingest.keystore import Keystore

ACTIONS = ("list", "config", "undo", "redo", "goto", "clear", "model", "pow", "keys")


def _common(p):
    p.add_argument("--data", metavar="DIR", help="data folder of the coordinator (default as for `run`)")
    p.add_argument("--config", metavar="FILE", help="becomingone.yaml (for data_dir and keystore path)")
    p.add_argument("--json", action="store_true", help="print JSON")


def add_arguments(parser):
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    p = sub.add_parser("list", help="devices seen by the running coordinator")
    _common(p)
    p = sub.add_parser("config", help="show a device's config history or apply KEY=VALUE changes")
    _common(p)
    p.add_argument("device")
    p.add_argument("changes", nargs="*", metavar="KEY=VALUE")
    for name, hlp in (("undo", "go back one config version"), ("redo", "go forward one version"),
                      ("clear", "send CLEAR (leave QUARANTINE)")):
        p = sub.add_parser(name, help=hlp)
        _common(p)
        p.add_argument("device")
    p = sub.add_parser("goto", help="go to config version N (0 = defaults)")
    _common(p)
    p.add_argument("device")
    p.add_argument("version", type=int)
    p = sub.add_parser("model", help="push entropy model weights (features, or the seed's w, b)")
    _common(p)
    p.add_argument("device", help="device id or 'all'")
    for k in ("bias", "w-level", "w-kurt", "w-crest", "w-anoms"):
        p.add_argument("--" + k, type=float, default=None,
                       help="feature model %s (threat = sigmoid(bias + w_level*level + ...))" % k)
    p.add_argument("--w", type=float, default=None, help="seed form: w (per anomaly)")
    p.add_argument("--b", type=float, default=None, help="seed form: b")
    p = sub.add_parser("pow", help="set the proof-of-work difficulty (bits) required from a device")
    _common(p)
    p.add_argument("device")
    p.add_argument("bits", type=int)
    p = sub.add_parser("keys", help="keystore: list | add DEV | remove DEV")
    _common(p)
    p.add_argument("op", choices=("list", "add", "remove"))
    p.add_argument("device", nargs="?")
    p.add_argument("--key-file", metavar="F", help="add: read the key (64 hex digits) from F "
                   "instead of generating one")
    p.add_argument("--replace", action="store_true", help="add: replace an existing key")


def _value(s):
    try:
        return yaml.safe_load(s)
    except yaml.YAMLError:
        raise UserError("bad value %r" % s) from None


def _changes(items):
    out = {}
    for it in items:
        if "=" not in it:
            raise UserError("a change is KEY=VALUE (got %r)" % it)
        k, v = it.split("=", 1)
        out[k.strip()] = _value(v)
    return out


def _print(args, result, text=None):
    if args.json or text is None:
        print(json.dumps(result, sort_keys=True, default=str))
    else:
        print(text)


def _keystore_path(args, data):
    if args.config:
        cfg = load_config(args.config, {"data_dir": data})
        return cfg.keystore_path()
    return os.path.join(data, "keys.json")


def _keys(args, data, sock):
    ks = Keystore(_keystore_path(args, data))
    if args.op == "list":
        rows = ks.listing()
        _print(args, rows, "\n".join("%5d  %s" % (r["device_id"], r["fingerprint"]) for r in rows)
               or "(no keys)")
        return 0
    if args.device is None:
        raise UserError("device keys %s needs a device id" % args.op)
    if args.op == "add":
        key = None
        if args.key_file:
            with open(args.key_file) as f:
                key = f.read().strip()
        ks.add(args.device, key, replace=args.replace)
        msg = "key for device %s stored in %s" % (args.device, ks.path)
    else:
        ks.remove(args.device)
        msg = "key of device %s removed" % args.device
    if os.path.exists(sock):
        try:
            request(sock, {"cmd": "keys_reload"})
            msg += " (running coordinator reloaded its keys)"
        except UserError:
            pass
    _print(args, {"ok": True, "keystore": ks.path}, msg)
    return 0


def run(args):
    data = resolve_data_dir(args.data, args.config)
    sock = os.path.join(data, SOCKET_NAME)
    a = args.action
    if a == "keys":
        return _keys(args, data, sock)
    if a == "list":
        rows = request(sock, {"cmd": "devices"})
        if args.json:
            _print(args, rows)
            return 0
        Console(width=100).print(device_table(states_of(rows)))
        return 0
    req = {"cmd": a, "device": args.device}
    if a == "config":
        ch = _changes(args.changes)
        if ch:
            req["changes"] = ch
    elif a == "goto":
        req["version"] = args.version
    elif a == "model":
        for k in ("bias", "w_level", "w_kurt", "w_crest", "w_anoms", "w", "b"):
            if getattr(args, k) is not None:
                req[k] = getattr(args, k)
    elif a == "pow":
        req["bits"] = args.bits
    res = request(sock, req)
    text = None
    if a in ("config", "undo", "redo", "goto", "pow") and isinstance(res, dict) and "state" in res:
        lines = ["device %s config version %s of %s" % (res["device_id"], res["version"], res["latest"])]
        if res.get("changes"):
            lines.append("sent: " + ", ".join("%s=%s" % kv for kv in sorted(res["changes"].items())))
        if a == "config" and "events" in res:
            for ev in res["events"]:
                lines.append("  v%d  %s" % (ev["version"], ", ".join(
                    "%s: %s -> %s" % (k, o, n) for k, (o, n) in sorted(ev["delta"].items()))))
        lines.append("state: " + ", ".join("%s=%s" % kv for kv in sorted(res["state"].items())))
        text = "\n".join(lines)
    _print(args, res, text)
    return 0
