"""`becomingone bench NAME [--json]`: each benchmark is a module in tools/ with
`add_arguments(parser)` (optional) and `collect(args) -> list of row dicts`
(each row has `name` and its figures). Printed as one JSON object
{"bench": NAME, "rows": [...]} with --json, else as a table."""
import argparse
import importlib
import io
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


def _cell(v):
    if isinstance(v, bool) or v is None:
        return "-" if v is None else str(v).lower()
    if isinstance(v, int):
        return "{:,}".format(v).replace(",", " ")
    if isinstance(v, float):
        if v != v:
            return "nan"
        if abs(v) >= 1e5:
            return "{:,.0f}".format(v).replace(",", " ")
        return "%.4g" % v
    if isinstance(v, (dict, list)):
        return json.dumps(v, separators=(",", ":"))
    return str(v)


def format_table(rows, width=100):
    """The rows as a rich table at most `width` columns wide: one line per row, its name, then
    its figures as `key value` pairs (numbers in one format: 4 significant digits, thousands
    grouped by spaces), wrapped inside the figures column. `--json` prints the rows unchanged."""
    from rich import box
    from rich.console import Console
    from rich.table import Table
    t = Table(box=box.SIMPLE_HEAD, expand=False, padding=(0, 1), pad_edge=False)
    t.add_column("row", no_wrap=True, style="bold")
    t.add_column("figures", overflow="fold")
    for r in rows:
        figs = ["%s [cyan]%s[/]" % (k, _cell(v).replace("[", "\\[")) for k, v in r.items() if k != "name"]
        t.add_row(str(r.get("name", "")), "   ".join(figs))
    con = Console(width=width, record=True, file=io.StringIO(), force_terminal=False,
                  color_system=None)
    con.print(t)
    return "\n".join(ln.rstrip() for ln in con.export_text().splitlines()).strip("\n")


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
