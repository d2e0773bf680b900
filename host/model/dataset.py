"""Labelled training data for the entropy model from what the host already stores.

Features: the device's anomaly count per Emissary window (SPEC 4.5 "anoms"). Devices do not
send it; they send threat = TABLE[anoms] (Q16, device/arbiter.py), and TABLE is the device's
own monotone table round(65536 * sigmoid(w*a + b)) capped at 65535 for the model (w, b) it
ran. The host rebuilds the same table with the device's code and inverts it: every threat
value maps to the smallest anomaly count that gives it. For the default w = 0.12, b = 0 that
is exact up to 77 anomalies; from there neighbouring counts can share a Q16 value, and from
90 the table is flat at 65535 (the sigmoid saturated), where the count is a lower bound
(`saturated` marks those rows). Counts that high are far past the QUARANTINE threshold (15),
so the fit loses nothing that matters.

Labels: time intervals of known faults per device, from a CSV file (`device,start,end`, end
empty = still faulty; times as `becomingone memory` takes them) or from an emulation's
summary.json (`fault=D@T`: device D's sensor is an impacting machine from T s after the
start until the end).

Public API
----------
    threat_table(w, b, a_max=1024) -> numpy uint16 array (the device's TABLE)
    anoms_from_threat(q16, w, b, a_max=1024) -> (anoms int array, saturated bool array)
    read_intervals(path) -> {device: [(start, end_or_inf), ...]}
    emulation_intervals(summary_path) -> {device: [(start, end), ...]}
    label_rows(t, device, intervals) -> 0/1 int array
    telemetry_history(memory_path, devices=None, since=None, until=None)
        -> (t, device, threat_q16) numpy arrays from the memory `telemetry` table
        (host/memory/telemetry.py; memory.telemetry_interval sets its rate)
"""
import array
import json
import math
import os
import sqlite3

import numpy as np

from becomingone.errors import UserError
from becomingone.memory.queries import time_range
from becomingone.model.train import read_csv_rows
from becomingone.util.times import parse_time
from device.arbiter import sigmoid_q16

DEFAULT_W, DEFAULT_B = 0.12, 0.0     # the device's built-in model (device/arbiter.py)


def threat_table(w, b, a_max=1024):
    if not (math.isfinite(w) and math.isfinite(b) and abs(w) < 1e6 and abs(b) < 1e6):
        raise UserError("model in effect w=%r b=%r: both must be finite with |.| < 1e6" % (w, b))
    # the device's threat for a anomalies under the seed-form model: its own Q12 z and sigmoid
    wq = int(round(w * 65536))
    bq = int(round(b * 4096))
    t = array.array("H", (sigmoid_q16(bq + ((wq * a + 8) >> 4)) for a in range(a_max + 1)))
    return np.frombuffer(t, dtype=np.uint16).copy()


def anoms_from_threat(q16, w=DEFAULT_W, b=DEFAULT_B, a_max=1024):
    if w <= 0:
        raise UserError("the model in effect needs w > 0 to recover anomaly counts (got w=%r)" % w)
    table = threat_table(w, b, a_max).astype(np.int64)
    q = np.asarray(q16, dtype=np.int64)
    a = np.searchsorted(table, q, side="left")
    a = np.minimum(a, a_max)
    top = table[-1]
    first_top = int(np.searchsorted(table, top, side="left"))
    saturated = (q >= top) & (first_top < a_max)
    return a.astype(np.int64), saturated


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


def telemetry_history(memory_path, devices=None, since=None, until=None):
    if not os.path.exists(memory_path):
        raise UserError("no memory database at %s (the coordinator writes it; --data DIR?)"
                        % memory_path)
    con = sqlite3.connect("file:%s?mode=ro" % memory_path, uri=True)
    try:
        cols = [r[1] for r in con.execute("PRAGMA table_info(telemetry)")]
        if not cols:
            raise UserError("%s has no telemetry history (written since this version of the "
                            "coordinator, memory.telemetry_interval)" % memory_path)
        sql, args = "SELECT t, device_id, threat FROM telemetry WHERE 1=1", []
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
        raise UserError("no telemetry rows in %s for devices %s in that time range"
                        % (memory_path, "all" if not devices else list(devices)))
    a = np.asarray(rows, dtype=np.float64)
    # threat is stored as Q16 / 65536 (host/memory/telemetry.py): back to the wire's Q16
    return a[:, 0], a[:, 1].astype(np.int64), np.rint(a[:, 2] * 65536.0).astype(np.int64)
