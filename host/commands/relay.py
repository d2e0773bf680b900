"""`becomingone relay --link URL [--link URL ...] --to udp://HOST:PORT | nats://HOST:PORT[/PREFIX]`:
the relay node.

A small host (a Pi Zero with Picos on USB, say) forwards its local devices' frames to a remote
coordinator and the coordinator's replies back to the right device, with no Master, ledger or
device key of its own (becomingone/relay/service.py). Local links are the coordinator's own
(`becomingone run --link`): serial ports, a UDP listener for devices on the LAN. Each local
device gets a UDP socket of its own toward the coordinator (or, with --to nats://..., a NATS
channel of its own, the coordinator running `--link nats://...` with the same URL), which
therefore sees every device at an address of its own, as if it were on its link: its sessions, handshakes, replay windows and
replies work unchanged. While the uplink is lost, frames are buffered (up to --buffer frames;
WITNESS kept over everything else, TELEMETRY dropped first) and replayed in order when it is back.

Scriptable like `run`: one line `ready {json}` (pid, links, to) once listening (--ready-file
PATH writes it too), then a `status {json}` line every --status-every seconds (0: none), and
`stopped {json}` at the end; --status-file PATH keeps the latest status there (atomic JSON).
--json prints only those lines. SIGINT/SIGTERM stop it.
"""
import json
import signal
import sys

from becomingone.errors import UserError
from becomingone.relay.service import DEFAULTS, Relay


def add_arguments(p):
    p.add_argument("--link", metavar="URL", action="append", default=None,
                   help="a local link to devices (repeatable): udp://HOST:PORT (devices on the "
                        "LAN send here), /dev/ttyACM0, a pty path, serial:PATH, socket://HOST:PORT")
    p.add_argument("--to", metavar="URL", required=True,
                   help="the coordinator's UDP link, udp://HOST:PORT, or its NATS link, "
                        "nats://HOST:PORT[/SUBJECT_PREFIX] (default prefix bo.dev; the "
                        "coordinator runs --link with the same URL)")
    p.add_argument("--bind", metavar="HOST", default="",
                   help="local address of the sockets toward the coordinator (default: any)")
    p.add_argument("--buffer", type=int, default=DEFAULTS["buffer"], metavar="FRAMES",
                   help="frames kept while the uplink is lost, all devices together "
                        "(default %(default)s; WITNESS kept over TELEMETRY when full)")
    p.add_argument("--ack-timeout", type=float, default=DEFAULTS["ack_timeout"], metavar="S",
                   help="a forwarded WITNESS not acknowledged within S seconds marks the uplink "
                        "lost (default %(default)s)")
    p.add_argument("--silence", type=float, default=DEFAULTS["silence"], metavar="S",
                   help="nothing from the coordinator for S seconds while frames go up marks "
                        "the uplink lost (default %(default)s)")
    p.add_argument("--probe", type=float, default=DEFAULTS["probe"], metavar="S",
                   help="while lost, send each device's oldest buffered frame every S seconds "
                        "(default %(default)s)")
    p.add_argument("--replay-rate", type=float, default=DEFAULTS["replay_rate"], metavar="N",
                   help="replay pace per device, in the coordinator's rate-limit units per second "
                        "(a frame costs complexity^1.5, docs/HOST.md; default %(default)s: 60%% of "
                        "the coordinator's default admission.rate.refill)")
    p.add_argument("--idle", type=float, default=DEFAULTS["idle"], metavar="S",
                   help="close a silent device's uplink socket after S seconds (default "
                        "%(default)s)")
    p.add_argument("--duration", type=float, default=None, metavar="S",
                   help="stop after S seconds (default: until Ctrl-C / SIGTERM)")
    p.add_argument("--ready-file", metavar="PATH", help="write the ready JSON here when listening")
    p.add_argument("--status-file", metavar="PATH",
                   help="keep the latest status JSON here (rewritten every second)")
    p.add_argument("--status-every", type=float, default=10.0, metavar="S",
                   help="print a `status {json}` line every S seconds (default %(default)s; 0: none)")
    p.add_argument("--json", action="store_true",
                   help="print only the ready / status / stopped JSON lines")


def run(args):
    if not args.link:
        raise UserError("a relay needs at least one local link: --link udp://0.0.0.0:18790 "
                        "(devices on the LAN) and/or --link /dev/ttyACM0 (a board on USB)")
    if args.duration is not None and args.duration <= 0:
        raise UserError("--duration must be > 0 seconds (got %r)" % args.duration)
    if args.status_every < 0:
        raise UserError("--status-every must be >= 0 seconds, 0 = none (got %r)"
                        % args.status_every)
    quiet = args.json

    def log(msg):
        if not quiet:
            print("becomingone relay: %s" % msg, file=sys.stderr)
            sys.stderr.flush()

    relay = Relay(args.link, args.to, buffer=args.buffer, ack_timeout=args.ack_timeout,
                  silence=args.silence, probe=args.probe, replay_rate=args.replay_rate,
                  idle=args.idle, bind=args.bind, status_file=args.status_file,
                  ready_file=args.ready_file, log=log)
    relay.start()

    def _stop(signum, frame):
        relay.stop()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    info = relay.ready_info()
    if not quiet:
        for link in relay.links:
            print("becomingone relay: %s %s" % ("listening on" if link.is_open else
                                                "waiting for", link.local_url))
        print("becomingone relay: forwarding to %s" % info["to"])
    print("ready " + json.dumps(info, sort_keys=True))
    sys.stdout.flush()
    state = {"next": None}

    def on_status(st):
        if not args.status_every:
            return
        up = st["uptime_s"] or 0.0
        if state["next"] is None:
            state["next"] = up + args.status_every
        elif up >= state["next"]:
            state["next"] = up + args.status_every
            print("status " + json.dumps(st, sort_keys=True))
            sys.stdout.flush()

    try:
        st = relay.run(args.duration, on_status=on_status)
    finally:
        relay.close()
    print("stopped " + json.dumps(st, sort_keys=True))
    if not quiet:
        c, b = st["counters"], st["buffer"]
        print("becomingone relay: stopped; %d frame(s) from devices, %d forwarded, %d replayed, "
              "%d buffered now, dropped %s" % (c["frames_from_devices"], c["forwarded"],
                                               c["replayed"], b["frames"], b["dropped"] or "none"))
    return 0
