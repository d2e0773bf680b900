"""`becomingone mesh simulate`: consensus simulations, erasure-coded ledger
archives across cells, the mesh CA. docs/MESH.md describes each."""
import contextlib
import json
import sys

from host.errors import UserError


def add_arguments(parser):
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    p = sub.add_parser("simulate", help="run a consensus simulation and report rounds/messages to 1e-6")
    p.add_argument("--nodes", type=int, required=True, help="number of nodes (>= 2; up to 10,000 is quick)")
    p.add_argument("--algo", required=True, help="emtd, swarm, pushsum or versioned")
    p.add_argument("--graph", default="ws", help="ws (Watts-Strogatz k=4 p=0.1, the seed's) or complete")
    p.add_argument("--seed", type=int, default=0, help="random seed (graph and values)")
    p.add_argument("--max-rounds", type=int, default=2000, help="round cap (default 2000)")
    p.add_argument("--tol", type=float, default=1e-6, help="relative error to reach (default 1e-6)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


@contextlib.contextmanager
def _progress(label, total, enabled):
    """A rich progress bar on stderr (only on a terminal); yields update(done, info)."""
    if not enabled or not sys.stderr.isatty():
        yield lambda done, info="": None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    with Progress(TextColumn("[bold]%s" % label), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=True) as prog:
        task = prog.add_task(label, total=total, info="")
        yield lambda done, info="": prog.update(task, completed=done, info=info)


def _simulate(args):
    from host.mesh.consensus import simulate
    with _progress("%s n=%d" % (args.algo, args.nodes), args.max_rounds, not args.json) as upd:
        res = simulate(args.nodes, args.algo, seed=args.seed, max_rounds=args.max_rounds,
                       tol=float(args.tol), graph=args.graph,
                       progress=lambda r, err: upd(r, "error %.2e" % err))
    if args.json:
        print(json.dumps(res, sort_keys=True))
        return 0
    keys = ["algo", "graph", "nodes", "converged", "rounds", "target_rounds", "messages",
            "rounds_run", "agreement_round", "initial_error", "final_error", "final_spread", "seconds"]
    keys += [k for k in sorted(res) if k not in keys and k not in ("tol", "seed", "max_rounds", "log2_n")]
    for k in keys:
        v = res.get(k)
        print("%-18s %s" % (k, ("%.4g" % v) if isinstance(v, float) else v))
    return 0 if res["converged"] else 1


def run(args):
    return {"simulate": _simulate}[args.action](args)
