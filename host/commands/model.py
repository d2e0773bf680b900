"""`becomingone model train|show|push`: the devices' entropy model (threat = sigmoid(w*anoms+b)).

    model train [--labels FILE | --emulation] [--device N ...] [--since T] [--until T]
                [--in-effect W,B] [--holdout F] [--l2 X] [--push] [--data DIR] [--json]
        fits w, b by logistic regression (host/model/train.py) on the telemetry history in
        memory (features: anomaly counts recovered from the devices' threat values,
        host/model/dataset.py) labelled by fault intervals; prints w, b and the AUC, and
        saves DATA/entropy_model.json. --push sends it to the running coordinator's devices.
    model show [--data DIR] [--json]        the saved model
    model push [--device N|all] [--data DIR] [--json]
        MODEL frames with the saved w, b through the coordinator's control socket
"""
import json
import os
import time

from becomingone.commands.common import resolve_data_dir
from becomingone.config import load_config
from becomingone.coordinator.control import SOCKET_NAME, request
from becomingone.errors import UserError
from becomingone.model import dataset as H
from becomingone.model.dataset import DEFAULT_B, DEFAULT_W
from becomingone.model.train import fit
from becomingone.util.times import parse_time

MODEL_FILE = "entropy_model.json"


def _common(p):
    p.add_argument("--data", metavar="DIR", help="data folder (default as for `run`)")
    p.add_argument("--config", metavar="FILE", help="becomingone.yaml (for its data_dir)")
    p.add_argument("--json", action="store_true", help="print JSON")


def add_arguments(parser):
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    p = sub.add_parser("train", help="fit w, b on labelled telemetry history")
    _common(p)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--labels", metavar="FILE", help="CSV device,start,end of known faults")
    g.add_argument("--emulation", action="store_true",
                   help="labels from the emulation's faults (DATA/summary.json; the default "
                        "when no --labels is given)")
    p.add_argument("--device", type=int, action="append", help="train on these devices only")
    p.add_argument("--since", help="start of the history (epoch, ISO 8601, -10m, ...)")
    p.add_argument("--until", help="end of the history")
    p.add_argument("--in-effect", metavar="W,B", default=None,
                   help="the model the devices ran while the history was recorded "
                        "(default: the device's built-in 0.12,0)")
    p.add_argument("--holdout", type=float, default=0.25, help="fraction held out for the AUC (0.25)")
    p.add_argument("--l2", type=float, default=1e-3, help="L2 penalty on w (1e-3)")
    p.add_argument("--push", action="store_true", help="then send it to the running coordinator")
    p = sub.add_parser("show", help="the saved model")
    _common(p)
    p = sub.add_parser("push", help="send the saved model to devices (MODEL frames)")
    _common(p)
    p.add_argument("--device", default="all", help="device id or all (default)")


def _data(args):
    return resolve_data_dir(args.data, args.config)


def _in_effect(text):
    if text is None:
        return DEFAULT_W, DEFAULT_B
    try:
        w, b = (float(x) for x in text.split(","))
    except ValueError:
        raise UserError("--in-effect needs W,B as two numbers (got %r)" % text) from None
    return w, b


def train(args):
    data = _data(args)
    mem = load_config(args.config, {"data_dir": data}).memory_path()
    if args.labels:
        intervals = H.read_intervals(args.labels)
        source = os.path.abspath(args.labels)
    else:
        intervals = H.emulation_intervals(os.path.join(data, "summary.json"))
        source = "emulation"
    since = parse_time(args.since) if args.since else None
    until = parse_time(args.until) if args.until else None
    t, dev, q = H.telemetry_history(mem, args.device, since, until)
    w0, b0 = _in_effect(args.in_effect)
    anoms, sat = H.anoms_from_threat(q, w0, b0)
    y = H.label_rows(t, dev, intervals)
    model = fit(anoms, y, l2=args.l2, holdout=args.holdout)
    out = dict(model.as_dict(), trained_at=time.time(), rows=int(t.shape[0]),
               devices=sorted(int(d) for d in set(dev.tolist())),
               since=float(t.min()), until=float(t.max()), labels=source,
               in_effect={"w": w0, "b": b0}, saturated_rows=int(sat.sum()))
    with open(os.path.join(data, MODEL_FILE), "w") as f:
        json.dump(out, f, indent=2, sort_keys=True)
    if args.push:
        out["push"] = _push(data, "all", out)
    if args.json:
        print(json.dumps(out, sort_keys=True))
    else:
        ho = "-" if out["auc_holdout"] is None else "%.4f" % out["auc_holdout"]
        print("entropy model: w = %.6g, b = %.6g (AUC %.4f train, %s held out; %d rows, %d "
              "positive, devices %s)" % (out["w"], out["b"], out["auc"], ho, out["rows"],
                                         out["positives"], out["devices"]))
        print("saved %s%s" % (os.path.join(data, MODEL_FILE),
                              "; sent to devices %s" % out["push"]["sent_to"] if args.push else
                              "; send it with `becomingone model push`"))
    return 0


def _load(data):
    path = os.path.join(data, MODEL_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except OSError:
        raise UserError("no trained model at %s (run `becomingone model train` first)" % path) from None


def _push(data, device, m):
    return request(os.path.join(data, SOCKET_NAME),
                   {"cmd": "model", "device": device, "w": m["w"], "b": m["b"]})


def run(args):
    if args.action == "train":
        return train(args)
    data = _data(args)
    m = _load(data)
    if args.action == "show":
        print(json.dumps(m, sort_keys=True) if args.json else
              "w = %.6g, b = %.6g, AUC %.4f (trained %s on %d rows)"
              % (m["w"], m["b"], m["auc"], time.strftime("%Y-%m-%d %H:%M:%S",
                                                          time.gmtime(m["trained_at"])), m["rows"]))
        return 0
    res = _push(data, args.device, m)
    print(json.dumps(res, sort_keys=True) if args.json else
          "model version %s sent to devices %s" % (res["model_version"], res["sent_to"]))
    return 0
