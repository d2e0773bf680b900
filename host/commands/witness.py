"""`becomingone witness init|trust|serve|show`: a standalone witness (the manifest's Witness node,
C2SP tlog-witness; docs/LEDGER.md §11) that another machine can host. It cosigns a ledger's
checkpoints only when they extend what it cosigned before, so a ledger cannot be rolled back or
rewritten unseen.

    becomingone witness init  --data DIR --name NAME        # key + state; prints the vkey
    becomingone witness trust --data DIR --ledger-data CELL_DATA   # a log: origin + public key
    becomingone witness trust --data DIR --origin O --public-key FILE.pem
    becomingone witness serve --data DIR --listen 0.0.0.0:7380 [--ready-file F]
    becomingone witness show  --data DIR [--origin O] [--json]     # --origin: the note it
                                                                   # cosigned last (for
                                                                   # `ledger verify --against`)
The coordinator lists a witness under ledger.witnesses: {name, url, public_key: the vkey}."""
import json
import os
import signal
import sys
import threading

from becomingone.errors import UserError

DEFAULT_DATA = os.path.join(".", "var", "witness")


def add_arguments(parser):
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    p = sub.add_parser("init", help="create a witness: its Ed25519 key and empty state")
    p.add_argument("--data", default=DEFAULT_DATA, help="witness folder (default ./var/witness)")
    p.add_argument("--name", required=True, help="its key name, e.g. witness.example.org/w1")
    p = sub.add_parser("trust", help="witness a ledger: its origin and checkpoint public key")
    p.add_argument("--data", default=DEFAULT_DATA, help="witness folder")
    p.add_argument("--ledger-data", metavar="DIR",
                   help="a coordinator's data folder (or ledger file): take origin and key from it")
    p.add_argument("--origin", help="the ledger's origin (becomingone.ledger/...)")
    p.add_argument("--public-key", metavar="FILE", help="its ledger-signing.pub (PEM)")
    p = sub.add_parser("serve", help="serve add-checkpoint over HTTP")
    p.add_argument("--data", default=DEFAULT_DATA, help="witness folder")
    p.add_argument("--listen", default="127.0.0.1:7380", metavar="HOST:PORT",
                   help="address to serve on (default 127.0.0.1:7380; :0 picks a free port)")
    p.add_argument("--ready-file", metavar="PATH", help="write {url, vkey, pid} here once serving")
    p = sub.add_parser("show", help="name, vkey, logs and the size cosigned for each")
    p.add_argument("--data", default=DEFAULT_DATA, help="witness folder")
    p.add_argument("--origin", help="print the checkpoint cosigned last for this log")
    p.add_argument("--json", action="store_true", help="JSON output")


def _witness(args, name=None):
    from becomingone.ledger.witness import Witness
    return Witness(args.data, name=name)


def run(args):
    return {"init": _init, "trust": _trust, "serve": _serve, "show": _show}[args.action](args)


def _init(args):
    from becomingone.ledger.witness import Witness
    w = Witness.create(args.data, args.name)
    print(w.vkey())
    return 0


def _trust(args):
    from becomingone.ledger import Ledger, checkpoint as ckpt
    w = _witness(args)
    if args.ledger_data:
        path = args.ledger_data
        if os.path.isdir(path):
            path = os.path.join(path, "ledger.sqlite")
        if not os.path.exists(path):
            raise UserError("no ledger at %s" % path)
        with Ledger(path) as led:
            origin, pem = led.origin, led.public_key_pem()
        pub = ckpt.load_public_key(pem.encode("ascii"))
    elif args.origin and args.public_key:
        origin = args.origin
        try:
            pub = ckpt.load_public_key(args.public_key)
        except (OSError, ValueError) as e:
            raise UserError("--public-key %s: %s (a SubjectPublicKeyInfo PEM Ed25519 key, e.g. "
                            "ledger-signing.pub)" % (args.public_key, e)) from None
    else:
        raise UserError("give --ledger-data DIR, or --origin and --public-key")
    w.trust(origin, pub)
    print("witnessing %s" % origin)
    return 0


def _serve(args):
    from becomingone.http.witness import WitnessServer
    from becomingone.util.atomic import write_json
    w = _witness(args)
    host, sep, port = args.listen.rpartition(":")
    if not sep or not port.isdigit():
        raise UserError("--listen needs HOST:PORT, got %r" % args.listen)
    srv = WitnessServer(w, host.strip("[]") or "127.0.0.1", int(port))
    stop = threading.Event()

    def on_signal(signum, frame):
        srv.server.should_exit = True
        stop.set()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    info = {"url": srv.url, "vkey": w.vkey(), "pid": os.getpid(), "logs": w.logs()}
    print("becomingone witness %s at %s" % (w.name, srv.url), flush=True)
    print("ready " + json.dumps(info), flush=True)
    if args.ready_file:
        write_json(args.ready_file, info, mode=0o600)
    try:
        srv.serve()
    finally:
        if args.ready_file and os.path.exists(args.ready_file):
            os.unlink(args.ready_file)
    return 0


def _show(args):
    w = _witness(args)
    if args.origin:
        note = w.head(args.origin)
        if note is None:
            raise UserError("witness %s has cosigned nothing for %s" % (w.name, args.origin))
        sys.stdout.write(note)
        return 0
    s = w.summary()
    if args.json:
        print(json.dumps(s, sort_keys=True))
    else:
        print("witness %s\nvkey %s" % (s["name"], s["vkey"]))
        for o in s["logs"]:
            print("  %s  cosigned size %s" % (o, s["heads"].get(o, 0)))
    return 0
