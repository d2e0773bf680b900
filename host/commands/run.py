"""`becomingone run [--config FILE] [--data DIR] [--link URL ...] [--duration S]`:
the host coordinator (links, sessions, admission, Master, ledger, control socket).

Scriptable: it prints where its data is, each link's URL (the real port for udp://...:0) and
the control socket, then one line `ready {json}` (pid, data_dir, links, control, ledger) once
it is listening; `--ready-file PATH` also writes that JSON to PATH (removed on exit).
SIGINT/SIGTERM stop it cleanly (queued frames processed, ledger flushed, ACKs sent).
Data folder: --data DIR, else the config file's data_dir when the file sets one, else
./var/becomingone."""
import json
import os
import signal
import sys

from becomingone.errors import UserError

DEFAULT_DATA = os.path.join(".", "var", "becomingone")


def add_arguments(p):
    p.add_argument("--config", metavar="FILE", help="becomingone.yaml (default: embedded defaults)")
    p.add_argument("--data", metavar="DIR", help="data folder (default: config data_dir if the "
                   "file sets it, else ./var/becomingone)")
    p.add_argument("--link", metavar="URL", action="append", default=None,
                   help="listen on this link (repeatable; replaces the config's links): "
                        "udp://HOST:PORT, /dev/ttyACM0, a pty path, socket://HOST:PORT, loop://")
    p.add_argument("--duration", type=float, default=None, metavar="S",
                   help="stop after S seconds (default: run until Ctrl-C / SIGTERM)")
    p.add_argument("--ready-file", metavar="PATH", help="write the ready JSON here when listening")
    p.add_argument("--set", metavar="KEY=VALUE", action="append", default=[],
                   help="override a config key (dotted, YAML value), e.g. --set admission.pow_bits=12")
    p.add_argument("--quiet", action="store_true", help="print only the ready line")
    add_http_arguments(p)


def add_http_arguments(p):
    """--http HOST:PORT / --no-http (docs/HTTP.md); `run` and `emulate` share them."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--http", metavar="HOST:PORT", default=None,
                   help="serve the HTTP API, dashboard and /metrics here (default: http.host and "
                        "http.port, 127.0.0.1:8000; :0 picks a free port; any non-loopback address "
                        "needs a token: http.token, http.token_file or BECOMINGONE_HTTP_TOKEN)")
    g.add_argument("--no-http", action="store_true", help="no HTTP server")


def http_arg(args):
    """The Coordinator's `http` argument from --http / --no-http."""
    if getattr(args, "no_http", False):
        return False
    return getattr(args, "http", None)


def resolve_data_dir(data, config_path):
    if data:
        return os.path.abspath(os.path.expanduser(data))
    if config_path:
        from becomingone.config import read_yaml
        raw = read_yaml(config_path)
        if isinstance(raw, dict) and raw.get("data_dir"):
            return os.path.abspath(os.path.expanduser(raw["data_dir"]))
    return os.path.abspath(DEFAULT_DATA)


def parse_sets(items):
    import yaml
    out = {}
    for it in items or ():
        if "=" not in it:
            raise UserError("--set needs KEY=VALUE (got %r)" % it)
        k, v = it.split("=", 1)
        try:
            out[k.strip()] = yaml.safe_load(v)
        except yaml.YAMLError:
            raise UserError("--set %s: value %r is not valid YAML" % (k, v)) from None
    return out


def load(args):
    from becomingone.config import load_config
    over = parse_sets(getattr(args, "set", None))
    over["data_dir"] = resolve_data_dir(args.data, args.config)
    return load_config(args.config, over)


def run(args):
    if args.duration is not None and args.duration <= 0:
        raise UserError("--duration must be > 0 seconds (got %r)" % args.duration)
    cfg = load(args)
    from becomingone.coordinator.service import Coordinator
    c = Coordinator(cfg, links=args.link, ready_file=args.ready_file, http=http_arg(args))
    c.start()

    def _stop(signum, frame):
        c.stop()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    info = c.ready_info()
    if not args.quiet:
        print("becomingone: data in %s" % info["data_dir"])
        for u in info["links"]:
            print("becomingone: listening on %s" % u)
        print("becomingone: control socket %s" % info["control"])
        if info.get("http"):
            print("becomingone: dashboard %s" % info["http"])
    print("ready " + json.dumps(info, sort_keys=True))
    sys.stdout.flush()
    c.run(args.duration)
    st = c.status()
    if not args.quiet:
        print("becomingone: stopped; devices %d, frames %d received, %d rejected, witness %d "
              "committed, ledger %d entries" % (st["devices_seen"], st["frames_received"],
                                                sum(st["frames_rejected"].values()),
                                                st["witness"]["committed"], st["ledger"]["size"] or 0))
    return 0
