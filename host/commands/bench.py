"""`becomingone bench NAME [--json]`: each benchmark is a module in tools/ with
`add_arguments(parser)` (optional) and `collect(args) -> list of row dicts`
(each row has `name` and its figures). Printed as one JSON object
{"bench": NAME, "rows": [...]} with --json, else as a table."""
import argparse
import importlib
import json
import sys

from becomingone.errors import UserError

BENCHES = {
    "protocol": "becomingone.bench.protocol",
    "device": "becomingone.bench.device",
    "ledger": "becomingone.bench.ledger",
    "ingest": "becomingone.bench.ingest",
    "mesh": "becomingone.bench.mesh",
    "cell": "becomingone.bench.cell",
    "master": "becomingone.bench.master",
    "http": "becomingone.bench.http",
    "mqtt": "becomingone.bench.mqtt",
}


def add_arguments(p):
    p.add_argument("name", help="one of: " + ", ".join(BENCHES))
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--quick", action="store_true", help="smaller sizes (for smoke tests)")
    p.add_argument("rest", nargs=argparse.REMAINDER, help="options of the benchmark itself")


def format_table(rows):
    cols = []
    for r in rows:
        for k in r:
            if k not in cols:
                cols.append(k)

    def cell(v):
        if isinstance(v, float):
            return "%.4g" % v if abs(v) < 1e6 else "%.0f" % v
        if isinstance(v, (dict, list)):
            return json.dumps(v, separators=(",", ":"))
        return "" if v is None else str(v)

    table = [[cell(r.get(c)) for c in cols] for r in rows]
    widths = [max([len(c)] + [len(t[i]) for t in table]) for i, c in enumerate(cols)]
    out = ["  ".join(c.ljust(w) for c, w in zip(cols, widths)),
           "  ".join("-" * w for w in widths)]
    for t in table:
        out.append("  ".join(v.ljust(w) for v, w in zip(t, widths)))
    return "\n".join(out)


def run(args):
    if args.name not in BENCHES:
        raise UserError("unknown benchmark %r (allowed: %s)" % (args.name, ", ".join(BENCHES)))
    try:
        mod = importlib.import_module(BENCHES[args.name])
    except ModuleNotFoundError:
        raise UserError("benchmark %r is not available in this build" % args.name) from None
    p = argparse.ArgumentParser(prog="becomingone bench " + args.name)
    if hasattr(mod, "add_arguments"):
        mod.add_arguments(p)
    rest = list(args.rest)  # REMAINDER swallows flags given after NAME: take ours back
    for flag in ("--json", "--quick"):
        while flag in rest:
            rest.remove(flag)
            setattr(args, flag[2:], True)
    bargs = p.parse_args(rest)
    bargs.quick = args.quick
    rows = mod.collect(bargs)
    if args.json:
        print(json.dumps({"bench": args.name, "rows": rows}))
    else:
        print(format_table(rows))
    sys.stdout.flush()
    return 0
