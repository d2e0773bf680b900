"""`becomingone run [--config FILE] [--data DIR] [--link URL ...] [--duration S]`:
the host coordinator (links, sessions, admission, Master, ledger, control socket), with the
HTTP server, the MQTT bridge and the mesh as configured: the command starts a Cell, the
composition root (becomingone/cell.py).

Scriptable: it prints where its data is, each link's URL (the real port for udp://...:0) and
the control socket, then one line `ready {json}` (pid, data_dir, links, control, ledger) once
it is listening; `--ready-file PATH` also writes that JSON to PATH (removed on exit).
SIGINT/SIGTERM stop it cleanly (queued frames processed, ledger flushed, ACKs sent); SIGHUP
reloads the mesh's trust files and certificate revocation list (docs/MESH.md "Trust").
Data folder: --data DIR, else the config file's data_dir when the file sets one, else
./var/becomingone."""
import json
import os
import signal
import sys

from becomingone.cell import Cell
from becomingone.commands.common import add_http_arguments, http_arg, load, print_warnings
from becomingone.errors import UserError
from becomingone.util.sdnotify import SdNotify


def add_arguments(p):
    p.add_argument("--config", metavar="FILE", help="becomingone.yaml (default: embedded defaults)")
    p.add_argument("--data", metavar="DIR", help="data folder (default: config data_dir if the "
                   "file sets it, else ./var/becomingone)")
    p.add_argument("--link", metavar="URL", action="append", default=None,
                   help="listen on this link (repeatable; replaces the config's links): "
                        "udp://HOST:PORT, nats://HOST:PORT[/PREFIX] (relays' uplink), "
                        "/dev/ttyACM0, a pty path, socket://HOST:PORT, loop://")
    p.add_argument("--duration", type=float, default=None, metavar="S",
                   help="stop after S seconds (default: run until Ctrl-C / SIGTERM)")
    p.add_argument("--ready-file", metavar="PATH", help="write the ready JSON here when listening")
    p.add_argument("--set", metavar="KEY=VALUE", action="append", default=[],
                   help="override a config key (dotted, YAML value), e.g. --set admission.pow_bits=12")
    p.add_argument("--quiet", action="store_true", help="print only the ready line")
    add_http_arguments(p)


def run(args):
    if args.duration is not None and args.duration <= 0:
        raise UserError("--duration must be > 0 seconds (got %r)" % args.duration)
    cfg = load(args)
    print_warnings(cfg)
    c = Cell(cfg, links=args.link, ready_file=args.ready_file, http=http_arg(args))
    c.start()

    def _stop(signum, frame):
        c.stop()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    if hasattr(signal, "SIGHUP"):           # reload what reloads live (the mesh's trust, CRL)
        signal.signal(signal.SIGHUP, lambda signum, frame: c.reload())
    info = c.ready_info()
    sd = SdNotify.from_env()           # systemd Type=notify: readiness and the watchdog
    if sd is not None:
        c.coordinator.attach("systemd", sd.close, tick=sd.tick, status=sd.status)
        sd.notify("READY=1", "MAINPID=%d" % os.getpid(),
                  "STATUS=serving %d link(s)%s" % (len(info["links"]), ", dashboard %s" % info["http"]
                                                   if info.get("http") else ""))
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
