"""PNG charts of one device's history in memory (matplotlib, Agg backend: no display needed).

    data = load_device(mem, device_id, since, until)      # numpy arrays per series (below)
    coherence_chart(data, path, threshold=0.95)   Emissary C vs every Master window's C over time
    pid_chart(data, path)          PID error, output and threat over time; ALERT / QUARANTINE
                                   shaded for as long as they lasted (latched included), CLEAR
                                   markers where the latch was released
    lateness_chart(data, path)     histogram of beat lateness, p50 / p99 marked

Every chart is FIGSIZE at DPI (1000 x 400 pixels). The time axis is seconds since the range's
first row (its UTC time is in the axis label). Series are read with one indexed query each
(device_id, t) and thinned to at most MAX_POINTS points per line for drawing.
"""
import datetime

import numpy as np

from becomingone.memory.queries import time_range

FIGSIZE = (10.0, 4.0)
DPI = 100
MAX_POINTS = 20000
DECISIONS = ("NOOP", "APPLY_BALANCE", "APPLY_OPTIMIZE", "ALERT", "QUARANTINE")
SHADE = {3: ("ALERT", "#f5a623"), 4: ("QUARANTINE", "#d0021b")}
QUARANTINE = 4
LATCHED_FLAG = 2            # memory telemetry `flags`: decision_state >> 6, bit 2 = latched
ALERT_LEVEL, QUARANTINE_LEVEL = 0.60, 0.85   # the devices' threat levels (docs/DEVICE.md)


def _plt():
    # matplotlib: optional (the `plot` extra), loaded only when charts are drawn
    try:
        import matplotlib
    except ImportError:
        from becomingone.errors import UserError
        raise UserError("becomingone plot draws with matplotlib, which is not installed: pip "
                        "install 'becomingone-edge[plot]'") from None
    matplotlib.use("Agg", force=True)          # before pyplot: no display needed
    import matplotlib.pyplot as plt
    return plt


def _col(mem, sql, args, n):
    rows = mem.select(sql, args)
    if not rows:
        return [np.empty(0) for _ in range(n)]
    return [np.asarray(c, dtype=float) for c in zip(*rows)]


def load_device(mem, device_id, since, until):
    """A dict of arrays for one device in [since, until] (either may be None)."""
    w, a = time_range(since, until)
    rng, args = "".join(" AND " + x for x in w), [int(device_id)] + a
    out = {"device_id": int(device_id)}
    t, w, c = _col(mem, "SELECT t, window, c FROM coherence_history WHERE device_id = ?" + rng +
                   " AND kind = 'master' ORDER BY t, window", args, 3)
    out["master"] = {float(x): (t[w == x], c[w == x]) for x in np.unique(w)}
    t, w, c, dc = _col(mem, "SELECT t, window, c, coalesce(device_c, -1) FROM coherence_history "
                       "WHERE device_id = ?" + rng + " AND kind = 'emissary' ORDER BY t", args, 4)
    out["emissary"] = (t, c)
    out["emissary_window"] = float(w[0]) if len(w) else None
    out["device_c"] = (t[dc >= 0], dc[dc >= 0])
    cols = _col(mem, "SELECT t, lateness_us, pid_error, pid_output, decision, coherence, "
                "coalesce(threat, 0), coalesce(flags, 0) FROM telemetry "
                "WHERE device_id = ?" + rng + " ORDER BY t", args, 8)
    tel = dict(zip(("t", "lateness_us", "pid_error", "pid_output", "beat_decision", "coherence",
                    "threat", "flags"), cols))
    tel["decision"], tel["latched"] = effective_decision(tel["beat_decision"], tel["flags"])
    out["tel"] = tel
    cols = _col(mem, "SELECT t, late_p50_us, late_p99_us, late_max_us FROM heartbeats WHERE device_id = ?"
                + rng + " ORDER BY t", args, 4)
    out["hb"] = dict(zip(("t", "p50", "p99", "max"), cols))
    return out


def has(data, kind):
    if kind == "coherence":
        return len(data["emissary"][0]) > 0 or any(len(v[0]) for v in data["master"].values())
    if kind in ("pid", "lateness"):
        return len(data["tel"]["t"]) > 0
    raise ValueError(kind)


def _t0(data):
    ts = [data["emissary"][0], data["tel"]["t"]] + [v[0] for v in data["master"].values()]
    ts = [x[0] for x in ts if len(x)]
    return min(ts) if ts else 0.0


def _utc(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _thin(t, *ys):
    if len(t) <= MAX_POINTS:
        return (t,) + ys
    k = int(np.ceil(len(t) / MAX_POINTS))
    return (t[::k],) + tuple(y[::k] for y in ys)


def _save(fig, path):
    fig.savefig(path, dpi=DPI, format="png")
    _plt().close(fig)
    return path


def coherence_chart(data, path, threshold=None):
    plt = _plt()
    t0 = _t0(data)
    fig, ax = plt.subplots(figsize=FIGSIZE, dpi=DPI)
    for w in sorted(data["master"]):
        t, c = _thin(*data["master"][w])
        ax.plot(t - t0, c, lw=1.0, label="Master %g s" % w)
    t, c = _thin(*data["emissary"])
    if len(t):
        ax.plot(t - t0, c, lw=1.4, color="black",
                label="Emissary (host, %g s)" % (data["emissary_window"] or 0))
    t, c = _thin(*data["device_c"])
    if len(t):
        ax.plot(t - t0, c, lw=0.8, ls=":", color="grey", label="Emissary (device)")
    if threshold is not None:
        ax.axhline(threshold, ls="--", lw=0.8, color="red", label="I_c %g" % threshold)
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("coherence C")
    ax.set_xlabel("seconds since %s" % _utc(t0))
    ax.set_title("device %d: Emissary C vs Master windows" % data["device_id"])
    ax.legend(loc="lower right", fontsize=7, ncol=3)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def effective_decision(beat_decision, flags):
    """(decision, latched) arrays: the decision every surface shows, QUARANTINE for as long as
    the device stayed latched (flags bit 2) -- not only the beats whose own decision was
    QUARANTINE."""
    latched = (np.asarray(flags).astype(np.int64) & LATCHED_FLAG) != 0
    return np.where(latched, float(QUARANTINE), np.asarray(beat_decision, dtype=float)), latched


def releases(tel):
    """Times the device left a latched QUARANTINE (a CLEAR took effect): the first sample
    after a latched one that is not latched."""
    lat = tel["latched"]
    if len(lat) < 2:
        return np.empty(0)
    idx = np.flatnonzero(lat[:-1] & ~lat[1:]) + 1
    return tel["t"][idx]


def decision_runs(t, decision):
    """[(start, end, decision)] runs of equal decision (end = the next run's first sample)."""
    if not len(t):
        return []
    d = decision.astype(np.int64)
    cut = np.flatnonzero(np.diff(d)) + 1
    starts = np.concatenate(([0], cut))
    ends = np.concatenate((cut, [len(d) - 1]))
    return [(float(t[a]), float(t[b]), int(d[a])) for a, b in zip(starts.tolist(), ends.tolist())]


def pid_chart(data, path):
    plt = _plt()
    # matplotlib: loaded only when charts are drawn
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    tel = data["tel"]
    t0 = _t0(data)
    fig, ax = plt.subplots(figsize=FIGSIZE, dpi=DPI)
    # ALERT / QUARANTINE shaded for as long as they lasted (a latched QUARANTINE until CLEAR)
    for a, b, d in decision_runs(tel["t"], tel["decision"]):
        if d in SHADE:
            ax.axvspan(a - t0, max(b, a + 1e-3) - t0, color=SHADE[d][1], alpha=0.22, lw=0)
    t, e, o, th = _thin(tel["t"], tel["pid_error"], tel["pid_output"], tel["threat"])
    ax.plot(t - t0, e, lw=1.0, color="tab:blue", label="PID error (-1..1)")
    ax.plot(t - t0, o, lw=1.0, color="tab:green", label="PID output (duty 0..1)")
    ax.plot(t - t0, th, lw=1.2, color="tab:red", label="threat (0..1)")
    ax.axhline(ALERT_LEVEL, ls=":", lw=0.8, color="#f5a623")
    ax.axhline(QUARANTINE_LEVEL, ls=":", lw=0.8, color="#d0021b")
    rel = releases(tel)
    for x in rel:
        ax.axvline(x - t0, color="black", lw=1.2, ls="--")
        ax.annotate("CLEAR", (x - t0, 1.0), xytext=(2, -10), textcoords="offset points", fontsize=7)
    handles, _ = ax.get_legend_handles_labels()
    seen = sorted(set(int(x) for x in np.unique(tel["decision"])) & set(SHADE))
    handles += [Patch(color=SHADE[d][1], alpha=0.22, label=SHADE[d][0] + (" (latched until CLEAR)"
                                                                           if d == 4 else ""))
                for d in seen]
    if len(rel):
        handles.append(Line2D([], [], color="black", ls="--", lw=1.2, label="CLEAR (latch released)"))
    ax.legend(handles=handles, loc="lower left", fontsize=7, ncol=2)
    ax.set_ylim(-1.05, 1.05)
    ax.set_ylabel("PID error, output, threat (dimensionless)")
    ax.set_xlabel("seconds since %s" % _utc(t0))
    ax.set_title("device %d: PID response, threat and decisions (%d samples)" % (data["device_id"], len(tel["t"])))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def lateness_stats(data):
    late = data["tel"]["lateness_us"]
    out = {"samples": int(len(late))}
    if len(late):
        out.update(p50_us=float(np.percentile(late, 50)), p99_us=float(np.percentile(late, 99)),
                   max_us=float(late.max()))
    hb = data["hb"]
    if len(hb["t"]):
        out["heartbeat"] = {"reports": int(len(hb["t"])), "p50_us": float(np.median(hb["p50"])),
                            "p99_us": float(np.median(hb["p99"])), "max_us": float(hb["max"].max())}
    return out


def lateness_chart(data, path):
    plt = _plt()
    late = data["tel"]["lateness_us"]
    st = lateness_stats(data)
    fig, ax = plt.subplots(figsize=FIGSIZE, dpi=DPI)
    hi = max(1.0, float(late.max()))
    ax.hist(late, bins=np.linspace(0, hi * 1.02, 61), color="tab:blue", alpha=0.8)
    ax.axvline(st["p50_us"], color="black", ls="--", lw=1.2, label="p50 %.0f µs" % st["p50_us"])
    ax.axvline(st["p99_us"], color="red", ls="--", lw=1.2, label="p99 %.0f µs" % st["p99_us"])
    hb = st.get("heartbeat")
    if hb:
        ax.axvline(hb["p50_us"], color="black", ls=":", lw=1.0,
                   label="device p50 %.0f µs (median of %d heartbeats)" % (hb["p50_us"], hb["reports"]))
        ax.axvline(hb["p99_us"], color="red", ls=":", lw=1.0,
                   label="device p99 %.0f µs (max %.0f)" % (hb["p99_us"], hb["max_us"]))
    ax.set_yscale("log")
    ax.set_xlabel("beat lateness (µs)")
    ax.set_ylabel("samples")
    ax.set_title("device %d: beat lateness (%d sampled beats)" % (data["device_id"], st["samples"]))
    ax.legend(loc="upper right", fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


CHARTS = {"coherence": coherence_chart, "pid": pid_chart, "lateness": lateness_chart}
