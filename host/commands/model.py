"""`becomingone model train|show|push`: the devices' entropy model on the features they send
(threat = sigmoid(bias + w_level*level + w_kurt*kurt + w_crest*crest + w_anoms*anoms);
host/model/features.py).

    model train [--labels FILE | --emulation] [--device N ...] [--since T] [--until T]
                [--features level,kurt] [--l2 auto|X] [--push] [--data DIR] [--json]
        fits the model by logistic regression on the devices' TELEMETRY features stored in
        memory (the telemetry table: level, kurt, crest, anoms), labelled by fault intervals
        (a CSV device,start,end, or the emulation's fault=D@T); reports the AUC on the training
        rows and on held-out 10 s blocks; saves DATA/entropy_model.json; --push sends it.
    model train --from-dataset DIR [--channel DE] [--runtime R] [--no-synthetic]
                [--write-default device/model_default.py] ...
        runs every recording of DIR (index.json, as `becomingone evaluate`) and a synthetic
        healthy fleet through the firmware and fits on the device's own features (labels:
        condition normal = 0, every fault = 1); --write-default writes the shipped model with
        its provenance (training data, date, AUC, leave-one-load-out AUC) as comments.
    model train --baseline [--device N] [--since T] [--until T] [--baseline-threat 0.1]
        healthy-only: the shipped weights, the bias moved so that this machine's healthy
        history sits at a low threat (a relative threshold for one machine).
    model show [--data DIR] [--json]        the saved model
    model push [--device N|all] [--data DIR] [--json]
        MODEL frames with the saved model through the coordinator's control socket
"""
import datetime
import json
import os
import sys
import time

import numpy as np

from becomingone.errors import UserError

MODEL_FILE = "entropy_model.json"
DEFAULT_FEATURES = "level,kurt"


def _common(p):
    p.add_argument("--data", metavar="DIR", help="data folder (default as for `run`)")
    p.add_argument("--config", metavar="FILE", help="becomingone.yaml (for its data_dir)")
    p.add_argument("--json", action="store_true", help="print JSON")


def add_arguments(parser):
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    p = sub.add_parser("train", help="fit the model on labelled features (history or a dataset)")
    _common(p)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--labels", metavar="FILE", help="CSV device,start,end of known faults")
    g.add_argument("--emulation", action="store_true",
                   help="labels from the emulation's faults (DATA/summary.json; the default "
                        "when neither --labels nor --from-dataset is given)")
    g.add_argument("--from-dataset", metavar="DIR",
                   help="train on recordings (index.json, as `becomingone evaluate`) run "
                        "through the firmware, plus the synthetic healthy fleet")
    g.add_argument("--baseline", action="store_true",
                   help="healthy-only: keep the shipped model's weights and move its bias so "
                        "that this machine's healthy history (every row selected by --device, "
                        "--since, --until) sits at --baseline-threat")
    p.add_argument("--baseline-threat", type=float, default=0.1,
                   help="--baseline: threat of the healthy history's 99.9th percentile (0.1)")
    p.add_argument("--device", type=int, action="append", help="train on these devices only")
    p.add_argument("--since", help="start of the history (epoch, ISO 8601, -10m, ...)")
    p.add_argument("--until", help="end of the history")
    p.add_argument("--features", default=DEFAULT_FEATURES,
                   help="features the model uses, comma-separated from level, kurt, crest, "
                        "anoms (default %s)" % DEFAULT_FEATURES)
    p.add_argument("--l2", default="auto",
                   help="L2 penalty on the standardised weights, or auto: chosen by "
                        "leave-one-group-out log-loss (default)")
    p.add_argument("--channel", default="DE", help="--from-dataset: the channel (DE)")
    p.add_argument("--runtime", default="micropython", choices=("micropython", "cpython"),
                   help="--from-dataset: firmware runtime (default micropython)")
    p.add_argument("--jobs", type=int, default=None, help="--from-dataset: processes at a time")
    p.add_argument("--no-synthetic", action="store_true",
                   help="--from-dataset: without the synthetic healthy fleet")
    p.add_argument("--write-default", metavar="PATH",
                   help="also write the model as the firmware's shipped default "
                        "(device/model_default.py) with its provenance")
    p.add_argument("--push", action="store_true", help="then send it to the running coordinator")
    p = sub.add_parser("show", help="the saved model")
    _common(p)
    p = sub.add_parser("push", help="send the saved model to devices (MODEL frames)")
    _common(p)
    p.add_argument("--device", default="all", help="device id or all (default)")


def _data(args):
    from becomingone.commands.common import resolve_data_dir
    return resolve_data_dir(args.data, args.config)


def _features(text):
    from becomingone.model.features import FEATURES
    fs = [f.strip() for f in text.split(",") if f.strip()]
    bad = [f for f in fs if f not in FEATURES]
    if not fs or bad or len(set(fs)) != len(fs):
        raise UserError("--features %r: a comma-separated list of distinct names from %s"
                        % (text, ", ".join(FEATURES)))
    return [f for f in FEATURES if f in fs]          # the device's order


def _l2(text):
    if text == "auto":
        return "auto"
    try:
        v = float(text)
    except ValueError:
        v = -1.0
    if not v >= 0:
        raise UserError("--l2 must be auto or a number >= 0, got %r" % text)
    return v


def _history_rows(args, data, features):
    """Rows from the memory telemetry table, labels from intervals, groups = 10 s blocks."""
    from becomingone.config import load_config
    from becomingone.model import dataset as H
    from becomingone.util.times import parse_time
    mem = load_config(args.config, {"data_dir": data}).memory_path()
    if args.labels:
        intervals = H.read_intervals(args.labels)
        source = os.path.abspath(args.labels)
    else:
        intervals = H.emulation_intervals(os.path.join(data, "summary.json"))
        source = "emulation"
    since = parse_time(args.since) if args.since else None
    until = parse_time(args.until) if args.until else None
    t, dev, X = H.feature_history(mem, features, args.device, since, until)
    y = H.label_rows(t, dev, intervals)
    span = max(10.0, (float(t.max()) - float(t.min())) / 20.0)
    block = np.floor((t - t.min()) / span).astype(np.int64)
    groups = dev.astype(np.int64) * 100000 + block
    # every block of a device weighs the same
    w = np.ones(t.shape[0])
    for g in np.unique(groups):
        sel = groups == g
        w[sel] = 1.0 / sel.sum()
    info = {"rows": int(t.shape[0]), "devices": sorted(int(d) for d in set(dev.tolist())),
            "since": float(t.min()), "until": float(t.max()), "labels": source,
            "holdout": "leave-one-block-out, blocks of %.0f s per device" % span}
    return X, y, w, groups, None, info


def _dataset_rows(args, features):
    from becomingone.model.from_dataset import collect, fleet

    def progress(msg):
        if not args.json:
            print(msg, file=sys.stderr)
    d = collect(args.from_dataset, features, channel=args.channel, runtime=args.runtime,
                jobs=args.jobs, synthetic=not args.no_synthetic, progress=progress)
    real = [s for s in d["sources"] if not s["name"].startswith("synthetic:")]
    syn = [s for s in d["sources"] if s["name"].startswith("synthetic:")]
    info = {"rows": int(d["X"].shape[0]), "dataset": os.path.abspath(args.from_dataset),
            "channel": args.channel, "runtime": args.runtime,
            "recordings": len(real), "healthy_recordings": sum(1 for s in real if s["label"] == 0),
            "synthetic_machines": len(syn), "sources": d["sources"], "skipped": d["skipped"],
            "holdout": "leave-one-recording-out (each recording / synthetic machine scored by "
                       "a model fitted without it)"}
    return d["X"], d["y"], d["w"], d["groups"], d["loads"], info


def _provenance(out):
    lines = ["trained %s by `becomingone model train --from-dataset %s --channel %s "
             "--features %s`" % (out["trained"], out.get("dataset_name", "DIR"), out.get("channel"),
                                 ",".join(out["features"])),
             "on the firmware's own TELEMETRY features (%s runtime): %d recordings (%d healthy) "
             "of %s" % (out.get("runtime"), out.get("recordings", 0),
                        out.get("healthy_recordings", 0), out.get("dataset_name", "")),
             "plus %d synthetic healthy machines (host/model/from_dataset.py FLEET); %d rows, "
             "%d faulty" % (out.get("synthetic_machines", 0), out["n"], out["positives"]),
             "logistic regression, L2 %g on standardised weights (chosen by held-out log-loss),"
             " classes balanced" % out["l2"],
             "AUC %.4f on the training rows, %.4f leave-one-recording-out (recordings alone: "
             "%s, %s held out)" % (out["auc"] or 0, out["auc_holdout"] or 0,
                                   out.get("auc_recordings"), out.get("auc_holdout_recordings")),
             "leave-one-load-out AUC (fitted without one load's recordings, its faults scored "
             "against the healthy rows): %s" % ", ".join(
                 "%s hp %s" % (k, v) for k, v in sorted(out["auc_leave_one_load_out"].items()))]
    return lines


def train_baseline(args, data):
    from becomingone.config import load_config
    from becomingone.model import dataset as H
    from becomingone.model.features import FEATURES, FIELDS, baseline
    from becomingone.util.times import parse_time
    from device.model_default import MODEL
    mem = load_config(args.config, {"data_dir": data}).memory_path()
    since = parse_time(args.since) if args.since else None
    until = parse_time(args.until) if args.until else None
    t, dev, X = H.feature_history(mem, FEATURES, args.device, since, until)
    w, info = baseline(MODEL, X, target=args.baseline_threat)
    out = dict(zip(FIELDS, (round(v, 6) for v in w)))
    out.update(kind="baseline", features=list(FEATURES), trained_at=time.time(),
               trained=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
               weights_from="device/model_default.py", devices=sorted(set(int(d) for d in dev)),
               since=float(t.min()), until=float(t.max()), n=info["rows"], **info)
    os.makedirs(data, exist_ok=True)
    with open(os.path.join(data, MODEL_FILE), "w") as f:
        json.dump(out, f, indent=2, sort_keys=True)
    if args.push:
        out["push"] = _push(data, "all", out)
    if args.json:
        print(json.dumps(out, sort_keys=True))
    else:
        print("baseline model: threat = sigmoid(%.4f + %.4f level + %.4f kurt + %.4f crest + "
              "%.5f anoms): the shipped weights, bias moved by %+.3f so that the 99.9th "
              "percentile of %d healthy rows sits at threat %g" % (
                  w + (info["bias_shift"], info["rows"], info["target_threat"])))
        print("saved %s%s" % (os.path.join(data, MODEL_FILE),
                              "; sent to devices %s" % out["push"]["sent_to"] if args.push else
                              "; send it with `becomingone model push` or devices.model: trained"))
    return 0


def train(args):
    from becomingone.model.features import train as fit
    if args.baseline:
        return train_baseline(args, _data(args))
    features = _features(args.features)
    l2 = _l2(args.l2)
    data = _data(args)
    if args.from_dataset:
        X, y, w, groups, loads, info = _dataset_rows(args, features)
    else:
        if args.write_default:
            raise UserError("--write-default needs --from-dataset DIR (the shipped model is "
                            "trained on recordings run through the firmware)")
        X, y, w, groups, loads, info = _history_rows(args, data, features)
    model = fit(X, y, w, groups, features, l2=l2, loads=loads)
    out = dict(model.as_dict(), trained_at=time.time(),
               trained=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
    out.update({k: v for k, v in info.items() if k != "rows"})
    if args.from_dataset:
        out["dataset_name"] = os.path.basename(os.path.normpath(args.from_dataset))
    os.makedirs(data, exist_ok=True)
    with open(os.path.join(data, MODEL_FILE), "w") as f:
        json.dump(out, f, indent=2, sort_keys=True)
    if args.write_default:
        from becomingone.model.features import write_default
        write_default(args.write_default, model, _provenance(out))
        out["written_default"] = os.path.abspath(args.write_default)
    if args.push:
        out["push"] = _push(data, "all", out)
    if args.json:
        print(json.dumps(out, sort_keys=True))
    else:
        print("entropy model: threat = sigmoid(%.4f + %.4f level + %.4f kurt + %.4f crest + "
              "%.5f anoms)" % model.weights())
        print("  l2 %g; AUC %.4f on %d training rows (%d faulty), %s held out (%s)" % (
            model.l2, model.auc or 0, model.n, model.positives,
            "-" if model.auc_logo is None else "%.4f" % model.auc_logo, info.get("holdout")))
        if model.lolo:
            print("  leave-one-load-out AUC: %s" % ", ".join(
                "%s hp %s" % kv for kv in sorted(model.lolo.items())))
        print("saved %s%s%s" % (os.path.join(data, MODEL_FILE),
                                "; wrote %s" % args.write_default if args.write_default else "",
                                "; sent to devices %s" % out["push"]["sent_to"] if args.push else
                                "; send it with `becomingone model push`"))
    return 0


def _load(data):
    path = os.path.join(data, MODEL_FILE)
    if not os.path.exists(path):
        raise UserError("no trained model at %s (run `becomingone model train` first)" % path)
    from becomingone.model.features import load_model_file
    m = load_model_file(path)
    with open(path, encoding="utf-8") as f:
        return m, json.load(f)


def _push(data, device, m):
    from becomingone.coordinator.control import SOCKET_NAME, request
    from becomingone.model.features import FIELDS
    req = {"cmd": "model", "device": device}
    req.update({k: m[k] for k in FIELDS})
    return request(os.path.join(data, SOCKET_NAME), req)


def run(args):
    if args.action == "train":
        return train(args)
    data = _data(args)
    model, raw = _load(data)
    if args.action == "show":
        print(json.dumps(raw, sort_keys=True) if args.json else
              "threat = sigmoid(%.4f + %.4f level + %.4f kurt + %.4f crest + %.5f anoms); AUC "
              "%s (trained %s on %s rows)" % (model.weights() + (
                  raw.get("auc"), raw.get("trained"), raw.get("n"))))
        return 0
    res = _push(data, args.device, dict(zip(("bias", "w_level", "w_kurt", "w_crest", "w_anoms"),
                                            model.weights())))
    print(json.dumps(res, sort_keys=True) if args.json else
          "model version %s sent to devices %s" % (res["model_version"], res["sent_to"]))
    return 0
