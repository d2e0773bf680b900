"""`becomingone plot`: PNG charts of one device's history from the coordinator's memory.

    becomingone plot --device N [--data DIR | --db FILE] [--since T] [--until T | --last D]
                     [--kind coherence|pid|lateness|all] [--out FOLDER] [--json]

Charts (host/memory/plots.py): `coherence` (Emissary C against every Master window's C, from the memory
coherence_history rows), `pid` (PID error and output over time, ALERT and QUARANTINE shaded,
from the telemetry rows), `lateness` (histogram of beat lateness with p50/p99, from the telemetry
rows, plus the device's own HEARTBEAT percentiles). Files: FOLDER/device-N-KIND.png (FOLDER
default ./plots); their paths are printed one per line (or one JSON object with --json).
Times as for `memory query`: epoch seconds, ISO 8601 (UTC without offset), now, -90s/-10m/-2h/-1d.
--last D (30s, 10m, 2h, 1d or seconds) is the last D of the device's own data.
"""
import json
import os
import re

from becomingone.commands.memory import db_path
from becomingone.config import load_config
from becomingone.errors import UserError
from becomingone.memory import plots
from becomingone.memory.store import Memory
from becomingone.util.times import fmt_time as _fmt_t, parse_time

KINDS = ("coherence", "pid", "lateness")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def add_arguments(p):
    p.add_argument("--device", type=int, required=True, help="device id")
    p.add_argument("--data", metavar="DIR", help="coordinator data folder (default as for `run`)")
    p.add_argument("--config", metavar="FILE", help="becomingone.yaml (data_dir, memory path, I_c line)")
    p.add_argument("--db", metavar="FILE", help="memory database file (overrides --data)")
    p.add_argument("--since", metavar="T", help="from this time")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--until", metavar="T", help="up to this time")
    g.add_argument("--last", metavar="D", help="the last D of the device's data (30s, 10m, 2h, 1d)")
    p.add_argument("--kind", default="all", choices=KINDS + ("all",), help="which chart (default all)")
    p.add_argument("--out", metavar="FOLDER", default="plots", help="folder for the PNG files (default ./plots)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def parse_duration(s):
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", str(s))
    if not m or float(m.group(1)) <= 0:
        raise UserError("bad --last %r (allowed: a positive duration such as 90, 30s, 10m, 2h, 1d)" % s)
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]


def _devices(mem, since, until):
    where, args = [], []
    if since is not None:
        where.append("t >= ?")
        args.append(since)
    if until is not None:
        where.append("t <= ?")
        args.append(until)
    w = (" WHERE " + " AND ".join(where)) if where else ""
    found = set()
    for table in ("telemetry", "coherence_history"):
        found.update(r[0] for r in mem.select("SELECT DISTINCT device_id FROM %s%s" % (table, w), args)
                     if r[0] is not None)
    return sorted(found)


def _newest(mem, device):
    ts = [mem.select("SELECT max(t) FROM %s WHERE device_id = ?" % table, (device,))[0][0]
          for table in ("telemetry", "coherence_history")]
    ts = [t for t in ts if t is not None]
    return max(ts) if ts else None


def _range_text(since, until):
    return "between %s and %s" % (_fmt_t(since) if since is not None else "the start",
                                  _fmt_t(until) if until is not None else "the end")


def _no_data(mem, device, since, until):
    here = _devices(mem, since, until)
    if here:
        return UserError("device %d has no data in memory %s (devices with data in that range: %s)"
                         % (device, _range_text(since, until), ", ".join(map(str, here))))
    anywhere = _devices(mem, None, None)
    if not anywhere:
        return UserError("the memory database has no telemetry or coherence rows yet (run the "
                         "coordinator with memory.telemetry / memory.coherence_history on)")
    return UserError("no device has data in memory %s (devices with data at other times: %s)"
                     % (_range_text(since, until), ", ".join(map(str, anywhere))))


def _threshold(args):
    try:
        return float(load_config(args.config, {}).kairos.coherence_threshold)
    except Exception:            # the line is a guide; a broken config is reported by `run`
        return None


def make_plots(mem, device, since=None, until=None, last=None, kinds=KINDS, out="plots",
               threshold=None):
    """Write the charts; returns the result dict that --json prints. UserError on bad ranges
    or missing data."""
    if last is not None:
        newest = _newest(mem, device)
        if newest is None:
            raise _no_data(mem, device, None, None)
        until = newest
        since = max(since, newest - last) if since is not None else newest - last
    if since is not None and until is not None and since > until:
        raise UserError("empty time range: --since %s is after --until %s" % (_fmt_t(since), _fmt_t(until)))
    data = plots.load_device(mem, device, since, until)
    if not any(plots.has(data, k) for k in KINDS):
        raise _no_data(mem, device, since, until)
    missing = {k: ("no coherence_history rows (memory.coherence_history, the Master and witnessing "
                   "must be on)" if k == "coherence" else
                   "no telemetry rows (memory.telemetry must be on)")
               for k in kinds if not plots.has(data, k)}
    if len(kinds) == 1 and missing:
        k = kinds[0]
        raise UserError("device %d has no %s data %s: %s" % (device, k, _range_text(since, until), missing[k]))
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as e:
        raise UserError("cannot create --out folder %s: %s" % (out, e.strerror)) from None
    files = {}
    for k in kinds:
        if k in missing:
            continue
        path = os.path.join(out, "device-%d-%s.png" % (device, k))
        kw = {"threshold": threshold} if k == "coherence" else {}
        try:
            plots.CHARTS[k](data, path, **kw)
        except OSError as e:
            raise UserError("cannot write %s: %s" % (path, e.strerror)) from None
        files[k] = os.path.abspath(path)
    tel = data["tel"]["t"]
    return {"device": device, "since": since, "until": until, "files": files, "skipped": missing,
            "rows": {"telemetry": int(len(tel)), "heartbeats": int(len(data["hb"]["t"])),
                     "emissary": int(len(data["emissary"][0])),
                     "master": {str(w): int(len(v[0])) for w, v in data["master"].items()}},
            "lateness": plots.lateness_stats(data) if len(tel) else None}


def run(args):
    since = None if args.since is None else parse_time(args.since)
    until = None if args.until is None else parse_time(args.until)
    last = None if args.last is None else parse_duration(args.last)
    kinds = KINDS if args.kind == "all" else (args.kind,)
    mem = Memory.open_readonly(db_path(args))
    try:
        res = make_plots(mem, args.device, since, until, last, kinds, args.out, _threshold(args))
    finally:
        mem.close()
    if args.json:
        print(json.dumps(res, sort_keys=True))
    else:
        for k, path in res["files"].items():
            print(path)
        for k, why in res["skipped"].items():
            print("skipped %s: %s" % (k, why))
    return 0
