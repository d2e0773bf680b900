"""`becomingone evaluate DATASET_DIR [--json]`: every recording of a dataset (index.json in the
format of the shared CWRU subset) through the real firmware on a virtual clock, in parallel;
per record: beats, decisions, first ALERT / QUARANTINE, threat quantiles; per condition:
detection rate, healthy false alarms per hour, ROC AUC of the device's threat for healthy
against faulty windows beside the AUC of standard baselines on the same windows
(host/evaluate/metrics.py; docs/DEVICE.md "Evaluation on measured data")."""
import json
import sys

from becomingone.errors import UserError


def add_arguments(p):
    p.add_argument("dataset", metavar="DATASET_DIR", help="folder holding index.json")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--channel", default="DE", help="channel of every record (default DE)")
    p.add_argument("--runtime", default="micropython", choices=("micropython", "cpython"),
                   help="firmware runtime (default: the MicroPython unix port)")
    p.add_argument("--jobs", type=int, default=None,
                   help="firmware processes at a time (default: min(2, CPUs))")
    p.add_argument("--records", default=None,
                   help="only these record numbers, comma-separated (e.g. 97,105)")
    p.add_argument("--model", default="shipped",
                   help="shipped (device/model_default.py), seed (threat = sigmoid(0.12 anoms)), "
                        "or a JSON file with bias, w_level, w_kurt, w_crest, w_anoms (sent "
                        "to the firmware as a MODEL frame)")
    p.add_argument("--window", type=float, default=1.0, help="window length, s (default 1)")
    p.add_argument("--hop", type=float, default=0.25, help="one window every HOP s (0.25)")


def parse_records(text):
    if not text:
        return None
    out = set()
    for part in text.split(","):
        part = part.strip()
        if part:
            out.add(int(part) if part.isdigit() else part)
    if not out:
        raise UserError("--records needs record numbers, e.g. 97,105")
    return out


def model_arg(text):
    """(model tuple or None, firmware --model flag or None) from --model."""
    if text in ("shipped", "seed"):
        return None, (text if text == "seed" else None)
    from becomingone.model.features import load_model_file
    return load_model_file(text).weights(), None


def _fmt(v, f="%.3f"):
    return "-" if v is None else (f % v)


def print_text(res, out=sys.stdout):
    w = out.write
    w("dataset %s  channel %s  runtime %s  model %s\n" % (res["dataset"], res["channel"],
                                                         res["runtime"], res["model"]))
    w("window: %g s, one every %g s; device score = %s; baselines %s\n\n" % (
        res["window"]["seconds"], res["window"]["hop_s"], res["window"]["device_score"],
        res["window"]["baselines"]))
    w("%-7s %-11s %4s %5s %5s  %6s %6s %6s %6s %6s  %7s %7s  %6s %6s %6s\n" % (
        "record", "condition", "hp", "in", "beats", "NOOP", "BAL", "OPT", "ALERT", "QUAR",
        "1stALRT", "1stQUAR", "thr50", "thr99", "level"))
    for r in res["records"]:
        d = r["decisions"]
        w("%-7s %-11s %4s %5s %5d  %6d %6d %6d %6d %6d  %7s %7s  %6.3f %6.3f %6s\n" % (
            str(r["record"]) + ("*" if r["derived"] else ""), r["condition"][:11],
            _fmt(r["load_hp"], "%d"), _fmt(r["fault_diameter_in"], "%.3f")[1:] if r["fault_diameter_in"] else "-",
            r["beats"], d["NOOP"], d["APPLY_BALANCE"], d["APPLY_OPTIMIZE"], d["ALERT"],
            d["QUARANTINE"], _fmt(r["first_alert_s"], "%.2f"), _fmt(r["first_quarantine_s"], "%.2f"),
            r["threat"]["p50"], r["threat"]["p99"], _fmt(r["features_median"]["level"], "%.2f")))
    s = res["summary"]
    w("\n(* = derived record)\n\nROC AUC, healthy vs faulty windows (%d windows, %d healthy)\n"
      % (s["windows"], s["healthy_windows"]))
    conds = sorted(s["auc_threat_by_condition"])
    w("%-14s %7s" % ("score", "all") + "".join(" %11s" % c[:11] for c in conds) + "\n")
    rows = [("device threat", {"auc": s["auc_threat"], "by_condition": s["auc_threat_by_condition"]})]
    rows += [(k, v) for k, v in s["baselines"].items()]
    for name, v in rows:
        w("%-14s %7s" % (name, _fmt(v["auc"], "%.4f")) +
          "".join(" %11s" % _fmt(v["by_condition"].get(c), "%.4f") for c in conds) + "\n")
    w("\ndetection (records with an ALERT or QUARANTINE beat) and first ALERT (s, median / max)\n")
    for c, rate in s["detected"].items():
        fa = s["first_alert_s"][c]
        miss = s["missed"][c]
        w("  %-11s %6.1f %%   first ALERT %s / %s%s\n" % (
            c, 100 * rate, _fmt(fa["median"], "%.2f"), _fmt(fa["max"], "%.2f"),
            ("   %s: %s" % ("alarmed" if c == "normal" else "missed", ", ".join(map(str, miss))))
            if miss else ""))
    fa = s["false_alarms_per_hour"]
    w("\nhealthy data: %.1f s, %d ALERT beats, %d QUARANTINE beats (%s / %s per hour)\n" % (
        s["healthy_seconds"], s["healthy_alert_beats"], s["healthy_quarantine_beats"],
        _fmt(fa["alert_beats"], "%.1f"), _fmt(fa["quarantine_beats"], "%.1f")))
    w("targets: %s\n" % json.dumps(s["targets"], sort_keys=True))
    if res["skipped"]:
        w("skipped: %s\n" % "; ".join("%s (%s)" % (k["record"], k["reason"]) for k in res["skipped"]))


def run(args):
    from becomingone.evaluate.run import evaluate
    if args.window <= 0 or args.hop <= 0:
        raise UserError("--window and --hop must be > 0 s")
    model, flag = model_arg(args.model)

    def progress(msg):
        if not args.json:
            print(msg, file=sys.stderr)
    res = evaluate(args.dataset, channel=args.channel, runtime=args.runtime, jobs=args.jobs,
                   records=parse_records(args.records), model=model, model_flag=flag,
                   window_s=args.window, hop_s=args.hop, progress=progress)
    if args.json:
        print(json.dumps(res, sort_keys=True))
    else:
        print_text(res)
    return 0
