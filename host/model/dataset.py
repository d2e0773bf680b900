"""Labelled training data for the entropy model from what the host already stores.

Features: the entropy model's inputs as each device sends them in TELEMETRY (wire v2: level,
kurt, crest in octaves, anoms a count; host/telemetry_history.py stores them in the memory
`telemetry` table), so the fit sees exactly what the device's model sees.

Labels: time intervals of known faults per device, from a CSV file (`device,start,end`, end
empty = still faulty; times as `becomingone memory` takes them) or from an emulation's
summary.json (`fault=D@T`: device D's sensor is an impacting machine from T s after the
start until the end).

Public API
----------
    read_intervals(path) -> {device: [(start, end_or_inf), ...]}
    emulation_intervals(summary_path) -> {device: [(start, end), ...]}
    label_rows(t, device, intervals) -> 0/1 int array
    feature_history(memory_path, features, devices=None, since=None, until=None)
        -> (t, device, X) numpy arrays from the memory `telemetry` table
        (memory.telemetry_interval sets its rate)
"""
import json
import math
import os
import sqlite3

import numpy as np

from becomingone.model.train import read_csv_rows
from becomingone.errors import UserError
from becomingone.memory.queries import time_range
from becomingone.util.times import parse_time


def read_intervals(path):
    """{device: [(start, end), ...]} from a CSV with header device,start,end."""
    rows = read_csv_rows(path, "labels")
    if not rows or [c.strip() for c in rows[0][:3]] != ["device", "start", "end"]:
        raise UserError("labels %s: the first line must be the header device,start,end" % path)
    out = {}
    for n, r in enumerate(rows[1:], start=2):
        if not r or not "".join(r).strip():
            continue
        if len(r) < 2:
            raise UserError("labels %s line %d: expected device,start[,end]" % (path, n))
        try:
            dev = int(r[0])
        except ValueError:
            raise UserError("labels %s line %d: device %r is not an integer" % (path, n, r[0])) from None
        start = parse_time(r[1])
        end = parse_time(r[2]) if len(r) > 2 and r[2].strip() else math.inf
        if end <= start:
            raise UserError("labels %s line %d: end is not after start" % (path, n))
        out.setdefault(dev, []).append((start, end))
    if not out:
        raise UserError("labels %s: no interval (one line per fault: device,start,end)" % path)
    return out


def emulation_intervals(summary_path):
    try:
        with open(summary_path, encoding="utf-8") as f:
            s = json.load(f)
    except OSError as e:
        raise UserError("cannot read %s: %s (run `becomingone emulate` first, or pass --labels)"
                        % (summary_path, e.strerror or e)) from None
    except ValueError:
        raise UserError("%s is not valid JSON" % summary_path) from None
    started = s.get("started")
    if started is None:
        raise UserError("%s has no `started` time (written by an older emulate; pass --labels)"
                        % summary_path)
    end = started + float(s.get("duration_s") or 0) + 1.0
    faults = (s.get("faults") or {}).get("fault") or []
    if not faults:
        raise UserError("the emulation in %s had no `fault=D@T` fault, so there is nothing to "
                        "learn from (run e.g. `becomingone emulate --faults fault=2@10`, or "
                        "pass --labels)" % os.path.dirname(summary_path))
    out = {}
    for dev, at in faults:
        out.setdefault(int(dev), []).append((started + float(at), end))
    return out


def label_rows(t, device, intervals):
    t = np.asarray(t, dtype=np.float64)
    device = np.asarray(device, dtype=np.int64)
    y = np.zeros(t.shape[0], dtype=np.int64)
    for dev, spans in intervals.items():
        on = device == dev
        for a, b in spans:
            y[on & (t >= a) & (t < b)] = 1
    return y


def feature_history(memory_path, features, devices=None, since=None, until=None):
    if not os.path.exists(memory_path):
        raise UserError("no memory database at %s (the coordinator writes it; --data DIR?)"
                        % memory_path)
    con = sqlite3.connect("file:%s?mode=ro" % memory_path, uri=True)
    try:
        cols = [r[1] for r in con.execute("PRAGMA table_info(telemetry)")]
        if not cols:
            raise UserError("%s has no telemetry history (written since this version of the "
                            "coordinator, memory.telemetry_interval)" % memory_path)
        if any(f not in cols for f in features):
            raise UserError("%s: the telemetry table has no feature columns (%s): recorded by a "
                            "coordinator before wire v2" % (memory_path, ", ".join(features)))
        sql = "SELECT t, device_id, %s FROM telemetry WHERE %s" % (
            ", ".join(features), " AND ".join("%s IS NOT NULL" % f for f in features))
        args = []
        if devices:
            sql += " AND device_id IN (%s)" % ",".join("?" * len(devices))
            args += [int(d) for d in devices]
        w, a = time_range(since, until)
        sql += "".join(" AND " + x for x in w)
        args += a
        rows = con.execute(sql + " ORDER BY t", args).fetchall()
    except sqlite3.DatabaseError as e:
        raise UserError("cannot read %s: %s" % (memory_path, e)) from None
    finally:
        con.close()
    if not rows:
        raise UserError("no telemetry rows with features in %s for devices %s in that time "
                        "range" % (memory_path, "all" if not devices else list(devices)))
    a = np.asarray(rows, dtype=np.float64)
    # rows of a device with no signal energy carry level = -32 octaves (LEVEL_NONE): kept, the
    # model sees them as the device does
    return a[:, 0], a[:, 1].astype(np.int64), a[:, 2:]
