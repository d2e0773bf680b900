"""The host's long windows and sync layer on the real firmware (issue 11, items 1, 2 and 6).

Each scenario runs the unmodified firmware (board emulator, ``--signal`` / ``--faults``) on a
virtual clock; what it sends is played, in device time, through the host's own core: the
TelemetryFeed (HELLO -> the Master stream at f_k = fs_hz / kairos_decim, TELEMETRY -> partials
and held samples), the Master, and the Integration (sync layer, witnessing, memory) ticking every
50 ms of device time as the coordinator does. The table reports, per scenario, the coherence C and
the fill of the host's Emissary window (1 s) and of the Master's 10 s and 60 s windows, the sync
layer's state, the first sync collapse (s of device time) and the share of beats the device
itself flagged as collapsed; and checks it against what the scenario calls right:

- a steady periodic machine collapses in the Emissary window and in the Master's 10 s and 60 s
  windows, with the sync layer agreeing;
- broadband noise, a knock in a quiet window, impacts without a steady rotation, a stuck or dead
  sensor, a machine whose speed drifts and one that loses its rhythm do not (no sync collapse and
  no window at or above I_c while the fault acts);
- bearing impacts on a steadily rotating machine: the rotation is still steady, so KAIROS, which
  looks at the machine's rhythm at f_k = 250 Hz where a 3 kHz ring is averaged away, collapses;
  the fault is the vibration features' to see (ALERT, then QUARANTINE: the decision table).

    rows, meta = run_coherence(runtime="micropython", beats=16000, jobs=None, names=None)
    text = table_markdown(rows, meta);  table_text(rows)
    replay = HostReplay(data_dir)                 # the host core, in device time
    replay.add(device_id, run)                    # a DeviceRun (host/evaluate/firmware.py)
    replay.play(every_s=1.0, sample=fn(t, replay))
"""
import collections
import os
import tempfile

import numpy as np

from becomingone.config import load_config
from becomingone.core.feed import TelemetryFeed
from becomingone.core.integration import Integration
from becomingone.core.master import Master
from becomingone.evaluate.firmware import TEL_FIELDS, Firmware
from becomingone.evaluate.scenarios import write_docs as _write_docs
from shared import protocol as P

__all__ = ["HostReplay", "SCENARIOS", "run_coherence", "table_markdown", "table_text",
           "write_docs", "BEGIN", "END"]

TICK_S = 0.05               # the coordinator's tick (core/integration.py runs on it)
WINDOWS = (1.0, 10.0, 60.0)  # reported: the host's Emissary window, the Master's 10 s and 60 s
FAULT_AT_MS = 3000          # faults start here; a fault's span starts 1 s later where the
                            # 1 s window still holds the healthy lead-in
_LONG = 1000000             # ms: the fault lasts to the end of the run


class _Session:
    """What the feed needs of a device session."""

    def __init__(self, device_id, boot_id):
        self.device_id, self.boot_id = device_id, boot_id
        self.hello = None
        self.extra = {}


class _NoPulses:
    """Pulse summaries go to the ledger in a coordinator; not measured here."""
    every = 0

    def beats(self, *a):
        pass


class HostReplay:
    """The host's core (TelemetryFeed -> Master -> Integration with memory) driven by recorded
    firmware runs in device time. Collapse events (the ledger's entries) are in `collapses`."""

    def __init__(self, data_dir, overrides=None):
        o = {"data_dir": data_dir}
        o.update(overrides or {})
        self.cfg = load_config(overrides=o)
        self.master = Master.from_config(self.cfg)
        self.collapses = []
        self.core = Integration(self.cfg, self.master,
                                ledger_submit=lambda kind, data: self.collapses.append(data))
        self.counts = collections.Counter()
        self.feed = TelemetryFeed(self.master, _NoPulses(), self.counts, lambda s: None,
                                  integration=self.core)
        self.sessions = {}
        self.runs = {}
        self.last = {}          # device -> its latest record (dict)

    def add(self, device_id, run, boot_id=1):
        self.sessions[device_id] = _Session(device_id, boot_id)
        self.runs[device_id] = run

    def _events(self):
        ev = []
        for d, run in self.runs.items():
            t = run.tel["time_us"]
            for k, (i, fields) in enumerate(run.hellos):
                ev.append((int(t[i]) if i < len(t) else int(t[-1]) + 1, 0, d, "hello", fields))
            for i in range(len(t)):
                ev.append((int(t[i]), 1, d, "tel", i))
        ev.sort(key=lambda e: (e[0], e[1], e[2]))
        return ev

    def play(self, every_s=1.0, sample=None):
        """Feed every event in device-time order, tick the integration every TICK_S and call
        sample(t, self) every every_s seconds of device time."""
        nxt_tick, nxt_sample = 0.0, every_s
        names = TEL_FIELDS
        for t_us, _o, d, kind, x in self._events():
            t = t_us / 1e6
            while t >= nxt_tick:
                self.core.tick(now=nxt_tick)
                if sample is not None and nxt_tick >= nxt_sample:
                    sample(nxt_tick, self)
                    nxt_sample += every_s
                nxt_tick += TICK_S
            s = self.sessions[d]
            if kind == "hello":
                s.hello = dict(x)
                self.feed.open_stream(s)
                continue
            row = self.runs[d].tel[x]
            rec = {n: int(row[n]) for n in names}
            self.last[d] = rec
            self.feed.telemetry(s, [rec])
        self.core.tick(now=nxt_tick)
        if sample is not None:
            sample(nxt_tick, self)

    def windows(self, device_id, seconds=WINDOWS):
        return [self.master.window(device_id, w) for w in seconds]

    def close(self):
        self.core.close()


class Scenario:
    """``collapse``: whether the sync layer and the windows should collapse; ``during``: the
    span (s of device time) the verdict is about (a fault's span; None: the run's end)."""

    def __init__(self, name, title, args, collapse, why, during=None):
        self.name, self.title, self.args = name, title, list(args)
        self.collapse, self.why, self.during = collapse, why, during


_F = FAULT_AT_MS
SCENARIOS = (
    Scenario("steady", "steady machine (seed 1001: the emulator's default machine)",
             ["--seed", "1001"], True,
             "A steady rotation and its harmonics over healthy broadband vibration: the device "
             "learns one period as its lag and the machine repeats itself at that lag."),
    Scenario("steady2", "another steady machine (seed 1003)", ["--seed", "1003"], True,
             "Another running speed and phase: the same verdict."),
    Scenario("noise", "broadband noise only (amp=0)", ["--seed", "1002", "--signal", "amp=0"],
             False, "Nothing is periodic: no lag locks, C stays near 0 in every window.",
             during=(0.0, None)),
    Scenario("knock", "one 150 ms knock in a quiet machine",
             ["--seed", "1002", "--signal", "amp=0", "--faults", "impact@20000+150*1000"],
             False, "The case the issue measured at C = 0.98 with the seed's path: one burst of "
             "1 g impacts in otherwise broadband vibration is not a steady machine.",
             during=(20.0, None)),
    Scenario("impacts", "impacts without a steady rotation (amp=0, 0.5 g)",
             ["--seed", "1002", "--signal", "amp=0", "--faults", "impact@%d+%d*500" % (_F, _LONG)],
             False, "Bearing-like impacts over broadband vibration, no running-speed tone: the "
             "impacts are a kHz ring the KAIROS stream (250 Hz) averages away.",
             during=(_F / 1000.0 + 1.0, None)),
    Scenario("stuck", "stuck sensor (from 3 s)",
             ["--seed", "1001", "--faults", "stuck@%d+%d" % (_F, _LONG)], False,
             "A frozen reading carries no signal: the device flags each such beat as a sensor "
             "fault and the host counts its samples as not held, so the windows empty and are "
             "not evaluated (without that, the 60 s window kept C = 0.91 of the healthy lead-in "
             "for a minute).", during=(_F / 1000.0 + 1.0, None)),
    Scenario("dead", "dead sensor (no samples from 3 s)",
             ["--seed", "1001", "--faults", "dead@%d+%d" % (_F, _LONG)], False,
             "No samples: the windows hold nothing new, empty, and are not evaluated.",
             during=(_F / 1000.0 + 1.0, None)),
    Scenario("fdrift", "frequency drift (+30 % over 3-13 s)",
             ["--seed", "1001", "--faults", "fdrift@%d+10000*30" % _F], False,
             "While the speed ramps the learned lag stops matching and nothing collapses; once "
             "it holds at the new speed the device learns the new period (a new stream) and the "
             "machine collapses again: a steady machine, rightly.", during=(_F / 1000.0 + 1.0, 13.0)),
    Scenario("incoherent", "coherence loss (phases jump every 20 ms, from 3 s)",
             ["--seed", "1001", "--faults", "incoherent@%d+%d" % (_F, _LONG)], False,
             "Same energy, no rhythm: C falls to near 0 and the collapse ends.",
             during=(_F / 1000.0 + 1.0, None)),
    Scenario("impact_rotating", "bearing impacts on a steady machine (0.5 g, from 3 s)",
             ["--seed", "1001", "--faults", "impact@%d+%d*500" % (_F, _LONG)], True,
             "The shaft still turns steadily: KAIROS, on the machine's rhythm at 250 Hz, "
             "collapses, and the bearing fault is the vibration features' to report (ALERT then "
             "QUARANTINE in the decision table). Coherence says the machine is steady, not that "
             "it is healthy."),
)


def _verdict(s, series, I_c, t_end):
    """ok / UNEXPECTED for one scenario's time series (list of samples)."""
    if s.collapse:
        last = series[-1]
        short = [w["window"] for w in last["windows"] if not w["ready"]]
        if short:
            return "UNEXPECTED (the %gs window never filled: run longer, --beats >= 14000)" % short[-1]
        ok = last["sync_collapsed"] and all(w["C"] >= I_c for w in last["windows"])
        return "ok" if ok else "UNEXPECTED (not collapsed in every window at the end)"
    a, b = s.during
    b = t_end if b is None else b
    bad = [x for x in series if a <= x["t"] <= b and
           (x["sync_collapsed"] or any(w["ready"] and w["C"] >= I_c for w in x["windows"]))]
    if bad:
        return "UNEXPECTED (collapsed at %.0f s)" % bad[0]["t"]
    return "ok"


def scenario_row(s, run, data_dir):
    replay = HostReplay(data_dir)
    I_c = replay.cfg.kairos.coherence_threshold
    series = []

    def sample(t, r):
        st = r.core.sync.state(1) or {}
        series.append({"t": round(t, 2), "windows": [
            {"window": w["window"], "C": float(w["C"]), "fill": float(w["fill"]),
             "ready": bool(w["ready"])} for w in r.windows(1)],
            "sync_collapsed": bool(st.get("collapsed")),
            "sync_evaluated": bool(st.get("evaluated")),
            "C_sync": st.get("C_sync")})
    replay.add(1, run)
    try:
        replay.play(every_s=1.0, sample=sample)
    finally:
        replay.close()
    t_end = series[-1]["t"]
    first = [c["t"] for c in replay.collapses]
    st = run.tel["decision_state"]
    if s.during is not None:
        a = s.during[0]
        b = t_end if s.during[1] is None else s.during[1]
        span = [x for x in series if a <= x["t"] <= b]
        peak = [max((x["windows"][k]["C"] for x in span if x["windows"][k]["ready"]), default=None)
                for k in range(len(WINDOWS))]
    else:
        peak = None
    return {
        "scenario": s.name, "title": s.title, "args": " ".join(s.args), "beats": run.beats,
        "seconds": t_end, "expect_collapse": s.collapse,
        "during_s": None if s.during is None else list(s.during),
        "end": series[-1], "peak_during": peak,
        "first_sync_collapse_s": first[0] if first else None,
        "sync_collapses": len(first),
        "device_collapse_beats_percent": round(100.0 * np.count_nonzero(st & P.STATE_COLLAPSE)
                                               / max(1, st.shape[0]), 1),
        "lag_samples": [h.get("lag_samples") for _, h in run.hellos],
        "check": _verdict(s, series, I_c, t_end), "why": s.why, "series": series}


def run_coherence(runtime="micropython", beats=16000, jobs=None, names=None):
    sc = [s for s in SCENARIOS if not names or s.name in names]
    fw = Firmware(runtime)
    runs = fw.map([{"args": s.args, "beats": beats} for s in sc], jobs=jobs)
    rows = []
    with tempfile.TemporaryDirectory(prefix="becomingone-coherence-") as tmp:
        for k, (s, r) in enumerate(zip(sc, runs)):
            rows.append(scenario_row(s, r, os.path.join(tmp, str(k))))
    return rows, {"runtime": runtime, "beats": beats, "windows": list(WINDOWS)}


def _c(w):
    if not w["ready"]:
        return "(%d %%)" % round(100 * w["fill"])
    return "%.3f" % w["C"]


def _f(v):
    return "-" if v is None else "%.1f" % v


def table_markdown(rows, meta):
    out = ["Measured by `%s` (%s, %d beats per scenario, virtual clock; the firmware's frames "
           "played through the host's TelemetryFeed, Master and sync layer in device time). C of "
           "the host's Emissary window (1 s) and of the Master's 10 s and 60 s windows at the "
           "run's end, a window's fill in brackets while it holds less than 90 %% of its span "
           "(not evaluated); the sync layer at the end; the first sync collapse (s of device "
           "time: the 10 s window exists from about 10 s after the KAIROS stream starts, i.e. "
           "after the lag is learned); beats the device itself flagged as collapsed; the peak C "
           "of each window while the fault acts; check against the scenario's expectation."
           % (meta["command"], meta["runtime"], meta["beats"]), "",
           "| scenario | C 1 s | C 10 s | C 60 s | sync | 1st sync collapse | device collapsed | "
           "peak C during (1 s / 10 s / 60 s) | check |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        e = r["end"]
        sync = ("collapsed %.3f" % e["C_sync"] if e["sync_collapsed"] else
                ("%.3f" % e["C_sync"] if e["sync_evaluated"] else "not evaluated"))
        peak = "-" if r["peak_during"] is None else " / ".join(
            "-" if v is None else "%.3f" % v for v in r["peak_during"])
        out.append("| %s: %s | %s | %s | %s | %s | %s | %s %% | %s | %s |" % (
            r["scenario"], r["title"], _c(e["windows"][0]), _c(e["windows"][1]),
            _c(e["windows"][2]), sync, _f(r["first_sync_collapse_s"]),
            r["device_collapse_beats_percent"], peak, r["check"]))
    out += ["", "Why (the emulator flags in brackets):", ""]
    for r in rows:
        out.append("- **%s** [`%s`]: %s" % (r["scenario"], r["args"], r["why"]))
    return "\n".join(out) + "\n"


def table_text(rows):
    lines = ["%-16s %8s %8s %8s %-16s %6s %6s  %s" % (
        "scenario", "C 1s", "C 10s", "C 60s", "sync", "1st", "dev %", "check")]
    for r in rows:
        e = r["end"]
        sync = ("collapsed" if e["sync_collapsed"] else
                ("%.3f" % e["C_sync"] if e["sync_evaluated"] else "not evaluated"))
        lines.append("%-16s %8s %8s %8s %-16s %6s %6s  %s" % (
            r["scenario"], _c(e["windows"][0]), _c(e["windows"][1]), _c(e["windows"][2]), sync,
            _f(r["first_sync_collapse_s"]), r["device_collapse_beats_percent"], r["check"]))
    return "\n".join(lines) + "\n"


BEGIN = "<!-- BEGIN coherence-table: generated by `becomingone scenarios --coherence --write-docs`, do not edit -->"
END = "<!-- END coherence-table -->"


def write_docs(path, markdown):
    """Replace the coherence table's marked section of `path` (docs/HOST.md)."""
    return _write_docs(path, markdown, BEGIN, END, "Coherence on the host (measured)")
