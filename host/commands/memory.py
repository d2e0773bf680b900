"""`becomingone memory query|reconstruct|similar`: read the temporal-signature memory.

    becomingone memory query [--table T] [--device N] [--since T] [--until T] [--layer L]
                             [--kind K] [--limit N] [--data DIR | --db FILE] [--json]
    becomingone memory reconstruct --device N [--at T] [--data DIR | --db FILE] [--json]
    becomingone memory similar (--device N [--at T] | --vector v1,v2,...) [--top K]
                               [--other-devices] [--data DIR | --db FILE] [--json]

Times (T): seconds since the epoch, an ISO 8601 date-time (UTC when no offset), `now`, or
relative to now: -90s, -10m, -2h, -1d.  The database is DIR/memory.sqlite, or memory.storage.path
of --config FILE, or --db FILE.
"""
import json
import sys
import time

from becomingone.commands.common import data_config
from becomingone.errors import UserError
from becomingone.memory.store import Memory
from becomingone.util.times import fmt_time as _fmt_t, parse_time  # noqa: F401  (used by commands)

TABLE_ALIASES = {"snapshots": "phase_snapshots", "coherence": "coherence_history",
                 "witness": "witness_log", "mesh": "mesh_sync", "signatures": "signatures",
                 "telemetry": "telemetry", "heartbeats": "heartbeats"}


def add_arguments(p):
    p.add_argument("action", choices=("query", "reconstruct", "similar"))
    p.add_argument("--data", metavar="DIR", help="coordinator data folder (default as for `run`)")
    p.add_argument("--config", metavar="FILE", help="becomingone.yaml (for data_dir / memory.storage.path)")
    p.add_argument("--db", metavar="FILE", help="memory database file (overrides --data)")
    p.add_argument("--table", default="snapshots",
                   help="query: snapshots, coherence, witness, mesh, signatures, telemetry or "
                        "heartbeats (default snapshots)")
    p.add_argument("--device", type=int, help="device id")
    p.add_argument("--since", help="query: from this time")
    p.add_argument("--until", help="query: up to this time")
    p.add_argument("--layer", choices=("micro", "meso", "macro", "meta"), help="query --table witness: layer")
    p.add_argument("--kind", help="query: kind (witness kind, or master/emissary/sync for coherence)")
    p.add_argument("--limit", type=int, default=100, help="query: newest N rows (default 100)")
    p.add_argument("--at", help="reconstruct/similar: the time (default now)")
    p.add_argument("--vector", help="similar: comma-separated signature vector in a stored "
                   "signature's layout (C of each window, shortest first, then the threat; nan = "
                   "unknown), e.g. 0.98,0.97,0.97,nan,nan,0.01")
    p.add_argument("--top", type=int, default=5, help="similar: results (default 5)")
    p.add_argument("--other-devices", action="store_true", help="similar: only other devices")
    p.add_argument("--json", action="store_true", help="print JSON")


def db_path(args):
    return args.db or data_config(args).memory_path()


def _print_rows(rows):
    if not rows:
        print("(no rows)")
        return
    cols = [c for c in rows[0] if c not in ("vec",)]
    cells = [[_cell(c, r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(x[i]) for x in cells)) for i, c in enumerate(cols)]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    for x in cells:
        print("  ".join(v.ljust(w) for v, w in zip(x, widths)))


def _cell(col, v):
    if col == "t" or col.endswith("_t"):
        return _fmt_t(v)
    if isinstance(v, float):
        return "%.6g" % v
    if isinstance(v, (list, dict)):
        return json.dumps(v, separators=(",", ":"))
    return "-" if v is None else str(v)


def run(args):
    path = db_path(args)
    mem = Memory.open_readonly(path)
    try:
        if args.action == "query":
            table = TABLE_ALIASES.get(args.table, args.table)
            if args.limit < 1:
                raise UserError("--limit must be >= 1")
            rows = mem.query(table, device_id=args.device,
                             since=None if args.since is None else parse_time(args.since),
                             until=None if args.until is None else parse_time(args.until),
                             limit=args.limit, layer=args.layer, kind=args.kind)
            if args.json:
                print(json.dumps({"table": table, "rows": rows}))
            else:
                _print_rows(rows)
            return 0
        if args.action == "reconstruct":
            if args.device is None:
                raise UserError("reconstruct needs --device N")
            t = parse_time(args.at) if args.at else time.time()
            st = mem.reconstruct(args.device, t)
            if st is None:
                raise UserError("device %d has nothing in memory at or before %s" % (args.device, _fmt_t(t)))
            if args.json:
                print(json.dumps(st))
            else:
                print("device %d at %s: snapshot %s (age %s s), boot %s" % (
                    st["device_id"], _fmt_t(st["t"]), _fmt_t(st["snapshot_t"]),
                    "-" if st["age_s"] is None else "%.3f" % st["age_s"], st["boot_id"]))
                _print_rows(st["windows"])
                if st["coherence"]:
                    print()
                    _print_rows(st["coherence"])
            return 0
        # similar
        vec = None
        if args.vector:
            try:
                vec = [float(x) for x in args.vector.split(",")]
            except ValueError:
                raise UserError("--vector must be comma-separated numbers") from None
        elif args.device is None:
            raise UserError("similar needs --device N (its signature at --at) or --vector v1,v2,...")
        res = mem.similar(vector=vec, device_id=args.device if vec is None or args.other_devices else None,
                          t=parse_time(args.at) if args.at else None, top=args.top,
                          exclude_device=args.other_devices)
        if args.json:
            print(json.dumps({"results": res}))
        else:
            _print_rows(res)
        return 0
    finally:
        mem.close()
        sys.stdout.flush()
