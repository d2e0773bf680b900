"""Scores of an evaluation: windows, the device's threat per window, standard baselines on the
same samples, ROC AUC, per-record and per-condition figures.

Window (docs/DEVICE.md "Evaluation on measured data"): a span of ``window_s`` (1 s, the device's
feature window) of the signal as the board sampled it, ending at a beat (the first beat at or
after each of 1 s, 1.25 s, ... of device time, from the TELEMETRY frames' headers); one window
every ``hop_s`` (0.25 s) from the first full second of a record to its end. The device's score of a
window is the threat (TELEMETRY, Q16) of the beat that ends it: the device's features at that
beat cover the same second. The baselines are computed by numpy/scipy on the same span of samples
(the recording resampled to f_s, in g, before ADC quantisation):

    rms            standard deviation of x (the window's mean removed)
    kurtosis       E[(x - m)^4] / sigma^4
    crest          max |x - m| / sigma
    envelope_band  RMS of the Hilbert envelope of x band-passed to the bearing-resonance band
                   f_s/6 .. 5 f_s/12 (2-5 kHz at 12 kHz; 4th-order Butterworth, zero phase,
                   filtered over the whole record): the band's energy, as in envelope analysis

ROC AUC (host/entropy_train.auc: rank based, ties count one half) of healthy (condition
``normal``) against faulty windows, over all records and per fault condition.
"""
import math

import numpy as np

from becomingone.model.train import auc
from shared import protocol as P

BASELINES = ("rms", "kurtosis", "crest", "envelope_band")
DECISIONS = ("NOOP", "APPLY_BALANCE", "APPLY_OPTIMIZE", "ALERT", "QUARANTINE")
ALERT, QUARANTINE = 3, 4


def window_ends(times_s, window_s=1.0, hop_s=0.25):
    """Rows (indices into the telemetry) that end a window: the first beat at or after each of
    window_s, window_s + hop_s, ... (device time of the records)."""
    if not times_s.shape[0]:
        return np.zeros(0, dtype=np.int64)
    targets = np.arange(window_s, float(times_s[-1]) + 1e-9, hop_s)
    pos = np.searchsorted(times_s, targets - 1e-9)
    return np.unique(pos[pos < times_s.shape[0]])


def envelope(g, f_s):
    """Hilbert envelope of the resonance band f_s/6 .. 5 f_s/12 (whole record)."""
    from scipy.signal import butter, hilbert, sosfiltfilt
    lo, hi = f_s / 6.0, 5.0 * f_s / 12.0
    sos = butter(4, [lo, hi], btype="bandpass", fs=f_s, output="sos")
    return np.abs(hilbert(sosfiltfilt(sos, g)))


def baseline_scores(g, f_s, ends_s, window_s=1.0, env=None):
    """{name: array} of the baselines for the windows ending at ``ends_s`` (seconds)."""
    if env is None:
        env = envelope(g, f_s)
    w = int(round(window_s * f_s))
    out = {k: np.zeros(len(ends_s)) for k in BASELINES}
    for i, t in enumerate(ends_s):
        b = min(g.shape[0], int(round(t * f_s)))
        a = max(0, b - w)
        x = g[a:b]
        m = x.mean()
        d = x - m
        var = float(np.mean(d * d))
        sd = math.sqrt(var) if var > 0 else 0.0
        out["rms"][i] = sd
        out["kurtosis"][i] = float(np.mean(d ** 4)) / (var * var) if var > 0 else 0.0
        out["crest"][i] = float(np.max(np.abs(d))) / sd if sd > 0 else 0.0
        e = env[a:b]
        out["envelope_band"][i] = math.sqrt(float(np.mean(e * e)))
    return out


def _q(x, p):
    return round(float(np.quantile(x, p)), 4) if x.shape[0] else None


def record_figures(item, run, signal, window_s=1.0, hop_s=0.25):
    """Per-record figures and the record's windows (threat and baselines per window)."""
    tel = run.tel
    dec = tel["decision_state"] & P.DECISION_MASK
    threat = tel["threat"] / 65536.0
    tsec = tel["time_us"] / 1e6           # device time of each beat's record
    counts = {name: int(np.count_nonzero(dec == i)) for i, name in enumerate(DECISIONS)}
    alerting = np.flatnonzero(dec >= ALERT)
    quar = np.flatnonzero(dec == QUARANTINE)
    pos = window_ends(tsec, window_s, hop_s)
    ends_s = tsec[pos]
    base = baseline_scores(signal.g, signal.f_s, ends_s, window_s)
    st = tel["decision_state"]
    rec = {
        "record": item.record, "condition": item.condition, "derived": item.derived,
        "load_hp": item.meta.get("load_hp"), "fault_diameter_in": item.meta.get("fault_diameter_in"),
        "or_position": item.meta.get("or_position"),
        "seconds": round(signal.seconds, 3), "beats": int(tel.shape[0]),
        "decisions": counts,
        "alert_beats": counts["ALERT"], "quarantine_beats": counts["QUARANTINE"],
        "first_alert_s": round(float(tsec[alerting[0]]), 3) if alerting.shape[0] else None,
        "first_quarantine_s": round(float(tsec[quar[0]]), 3) if quar.shape[0] else None,
        "threat": {"p50": _q(threat, 0.5), "p90": _q(threat, 0.9), "p99": _q(threat, 0.99),
                   "max": round(float(threat.max()), 4)},
        "features_median": {
            "level": round(float(np.median(tel["level"][pos])) / 256.0, 3) if pos.shape[0] else None,
            "kurt": round(float(np.median(tel["kurt"][pos])) / 256.0, 3) if pos.shape[0] else None,
            "crest": round(float(np.median(tel["crest"][pos])) / 256.0, 3) if pos.shape[0] else None,
            "anoms": int(np.median(tel["anoms"][pos])) if pos.shape[0] else None},
        "collapse_beats": int(np.count_nonzero(st & P.STATE_COLLAPSE)),
        "sensor_fault_beats": int(np.count_nonzero(st & 0x10)),
        "coherence_lost_beats": int(np.count_nonzero(st & 0x20)),
        "windows": int(pos.shape[0]),
        "skipped_beats": (run.report or {}).get("skipped_beats"),
        "clipped_samples": signal.clipped,
        "resampled": signal.note,
        "wall_s": round(run.wall_s, 2),
    }
    win = {"threat": threat[pos], "end_s": ends_s, "healthy": item.healthy,
           "condition": item.condition}
    win.update(base)
    return rec, win


def _auc_or_none(scores, labels):
    y = np.asarray(labels)
    if y.shape[0] == 0 or y.all() or not y.any():
        return None
    return round(auc(scores, y), 4)


def summarise(records, windows, alert_within_s=2.0):
    """The summary over records (their dicts) and windows (record_figures' second value)."""
    conds = sorted({r["condition"] for r in records})
    faults = [c for c in conds if c != "normal"]
    hw = [w for w in windows if w["healthy"]]

    def scores(key, sel):
        s = np.concatenate([w[key] for w in sel]) if sel else np.zeros(0)
        y = np.concatenate([np.full(w[key].shape[0], 0 if w["healthy"] else 1) for w in sel]) \
            if sel else np.zeros(0)
        return s, y

    def auc_by(key):
        s, y = scores(key, windows)
        out = {"auc": _auc_or_none(s, y), "by_condition": {}}
        for c in faults:
            s, y = scores(key, hw + [w for w in windows if w["condition"] == c])
            out["by_condition"][c] = _auc_or_none(s, y)
        return out

    th = auc_by("threat")
    base = {k: auc_by(k) for k in BASELINES}
    avail = [(v["auc"], k) for k, v in base.items() if v["auc"] is not None]
    best = max(avail) if avail else (None, None)
    healthy = [r for r in records if r["condition"] == "normal"]
    h_sec = sum(r["seconds"] for r in healthy)
    h_hours = h_sec / 3600.0
    detected, missed, first_alert = {}, {}, {}
    for c in conds:
        rs = [r for r in records if r["condition"] == c]
        hit = [r for r in rs if r["first_alert_s"] is not None]
        detected[c] = round(len(hit) / len(rs), 4)
        missed[c] = [r["record"] for r in rs if r["first_alert_s"] is None] if c != "normal" \
            else [r["record"] for r in hit]
        fa = sorted(r["first_alert_s"] for r in hit)
        first_alert[c] = {"median": fa[len(fa) // 2] if fa else None,
                          "max": fa[-1] if fa else None}
    hq = sum(r["quarantine_beats"] for r in healthy)
    ha = sum(r["alert_beats"] for r in healthy)
    # the target: every inner- and outer-race record at 0.007..0.021 in raises ALERT
    # (or QUARANTINE) within alert_within_s seconds
    target_recs = [r for r in records if r["condition"] in ("inner_race", "outer_race") and
                   r.get("fault_diameter_in") is not None and
                   0.007 - 1e-9 <= float(r["fault_diameter_in"]) <= 0.021 + 1e-9]
    late = [r["record"] for r in target_recs if r["first_alert_s"] is None or
            r["first_alert_s"] > alert_within_s]
    summary = {
        "records": len(records), "windows": sum(w["threat"].shape[0] for w in windows),
        "healthy_windows": sum(w["threat"].shape[0] for w in hw),
        "auc_threat": th["auc"], "auc_threat_by_condition": th["by_condition"],
        "baselines": base,
        "best_baseline": {"name": best[1], "auc": best[0]},
        "healthy_seconds": round(h_sec, 3),
        "healthy_alert_beats": ha, "healthy_quarantine_beats": hq,
        "false_alarms_per_hour": {
            "alert_beats": round(ha / h_hours, 1) if h_hours else None,
            "quarantine_beats": round(hq / h_hours, 1) if h_hours else None},
        "detected": detected, "missed": missed, "first_alert_s": first_alert,
        "targets": {
            "auc_threat_ge_0.95": th["auc"] is not None and th["auc"] >= 0.95,
            "auc_within_0.02_of_best_baseline": (th["auc"] is not None and best[0] is not None
                                                 and th["auc"] >= best[0] - 0.02),
            "zero_healthy_quarantine_beats": hq == 0 if healthy else None,
            "ir_or_0.007_0.021_alert_within_%gs" % alert_within_s: {
                "records": len(target_recs), "late_or_missed": late, "ok": not late}},
    }
    return summary
