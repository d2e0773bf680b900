"""`becomingone scenarios [--json] [--write-docs]`: the decision table. The real firmware runs
each scenario of host/evaluate/scenarios.py (a healthy machine, broadband noise, impacts, a stuck
and a dead sensor, frequency drift, coherence loss, an overloaded beat, a process disturbance,
...) on a virtual clock; prints the distribution of decisions, collapses and first ALERT /
QUARANTINE / BALANCE / OPTIMIZE times, and checks each scenario's dominant decision against the
decisions its description calls right. --write-docs regenerates the marked section of
docs/DEVICE.md."""
import json
import os

from becomingone.errors import UserError


def add_arguments(p):
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--write-docs", nargs="?", const="docs/DEVICE.md", default=None,
                   metavar="PATH", help="rewrite the decision-table section of PATH "
                   "(default docs/DEVICE.md)")
    p.add_argument("--runtime", default="micropython", choices=("micropython", "cpython"),
                   help="firmware runtime (default: the MicroPython unix port)")
    p.add_argument("--beats", type=int, default=4000, help="beats per scenario (4000 = 16.8 s)")
    p.add_argument("--model", default="shipped", choices=("shipped", "seed"),
                   help="the firmware's entropy model (default shipped)")
    p.add_argument("--only", default=None, help="comma-separated scenario names")
    p.add_argument("--jobs", type=int, default=None, help="firmware processes at a time")


def run(args):
    from becomingone.evaluate.scenarios import (SCENARIOS, run_scenarios, table_markdown, table_text,
                                         write_docs)
    if not 1000 <= args.beats <= 100000:
        raise UserError("--beats must be 1000..100000 (faults start at 3 s = 713 beats)")
    names = None
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        known = [s.name for s in SCENARIOS]
        bad = [n for n in names if n not in known]
        if bad:
            raise UserError("--only: unknown scenario(s) %s (allowed: %s)"
                            % (", ".join(bad), ", ".join(known)))
    if args.write_docs and names:
        raise UserError("--write-docs regenerates the whole table: drop --only")
    if args.write_docs and not os.path.isfile(args.write_docs):
        raise UserError("--write-docs %s: no such file" % args.write_docs)
    rows = run_scenarios(runtime=args.runtime, beats=args.beats,
                         model_flag="seed" if args.model == "seed" else None, jobs=args.jobs,
                         names=names)
    period = 0.0042105
    cmd = "becomingone scenarios" + ("" if args.runtime == "micropython" else
                                     " --runtime " + args.runtime) + \
        ("" if args.beats == 4000 else " --beats %d" % args.beats) + \
        ("" if args.model == "shipped" else " --model seed")
    meta = {"command": cmd, "runtime": args.runtime, "beats": args.beats,
            "seconds": round(args.beats * period, 1), "model": args.model}
    if args.write_docs:
        write_docs(args.write_docs, table_markdown(rows, meta))
    if args.json:
        print(json.dumps({"meta": meta, "scenarios": rows}, sort_keys=True))
    else:
        print(table_text(rows), end="")
        bad = [r["scenario"] for r in rows if r["check"] != "ok"]
        if bad:
            print("UNEXPECTED dominant decision in: %s" % ", ".join(bad))
        if args.write_docs:
            print("wrote the decision table into %s" % args.write_docs)
    return 0
