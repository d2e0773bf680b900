"""The decision table (issue 11 item 3): the real firmware through named scenarios of the emulator
board's synthetic machine (boards/emulator.py ``--signal`` / ``--faults``), on a virtual clock.

Each scenario states the decision(s) that are right for it and why; the table reports the
measured distribution of the beat's own decision (TELEMETRY decision_state bits 0-2), collapse
edges, and the first time of each decision, and checks that the dominant decision is one the
scenario calls right (``check``: ok / UNEXPECTED). Faults start at 3 s so the table also shows
the healthy lead-in and the reaction time.

    rows = run_scenarios(runtime="micropython", beats=4000, model_flag=None)
    text = table_markdown(rows, meta)
"""
import numpy as np

from becomingone.evaluate.firmware import Firmware
from shared import protocol as P

DECISIONS = ("NOOP", "APPLY_BALANCE", "APPLY_OPTIMIZE", "ALERT", "QUARANTINE")
SHORT = ("NOOP", "BAL", "OPT", "ALERT", "QUAR")
FAULT_AT_S = 3.0
DOMINANT = 0.95          # a scenario this much one decision must say why that decision is right


class Scenario:
    """``expect``: the decisions that are right while the fault acts, in the span ``during``
    = (start_s, end_s or None for the run's end). The check: for a healthy scenario (expect =
    NOOP) NOOP dominates the span; for a fault, the device responds within the span, and both
    its first response (the first decision other than NOOP) and its most frequent one are in
    ``expect`` (NOOP before the response and after a successful one is allowed)."""

    def __init__(self, name, title, args, expect, why, during=(FAULT_AT_S, None)):
        self.name, self.title, self.args = name, title, list(args)
        self.expect = tuple(expect)
        self.why = why
        self.during = during

    def spec(self):
        return " ".join(self.args) if self.args else "(defaults)"


_F = int(FAULT_AT_S * 1000)
_LONG = 100000      # ms: the fault lasts to the end of the run
SCENARIOS = (
    Scenario("healthy", "healthy steady machine", [], ("NOOP",),
             "NOOP is right: broadband vibration of 0.05 g rms with Gaussian statistics (threat "
             "about 0.01), the beat on time (genome at home), the actuator error below the "
             "balance threshold. The steady machine collapses once its period is learned.",
             during=(0.0, None)),
    Scenario("noise", "broadband noise only (amp=0)", ["--signal", "amp=0"], ("NOOP",),
             "NOOP is right: broadband vibration at a healthy level with no running-speed tone is "
             "a healthy machine; nothing is periodic, so it never collapses and has no coherence "
             "to lose.", during=(0.0, None)),
    Scenario("impact", "impacting machine (0.5 g impacts)",
             ["--faults", "impact@%d+%d*500" % (_F, _LONG)], ("QUARANTINE", "ALERT"),
             "From 3 s: 0.5 g bearing-like impacts (3 kHz ring) at 3.585 x the running speed (an "
             "outer-race defect's rate) raise the kurtosis and level of the first difference: "
             "ALERT, then QUARANTINE (output to its safe value, latched) as the 1 s window fills."),
    Scenario("stuck", "stuck sensor", ["--faults", "stuck@%d+%d" % (_F, _LONG)],
             ("QUARANTINE", "ALERT"),
             "From 3 s the sensor repeats its last value: a sensor fault after 0.25 s raises "
             "ALERT, after 2 s QUARANTINE (device/health.py): a frozen reading must not drive "
             "the output."),
    Scenario("dead", "dead sensor (no samples)", ["--faults", "dead@%d+%d" % (_F, _LONG)],
             ("QUARANTINE", "ALERT"),
             "From 3 s no samples arrive: as for a stuck sensor, ALERT after 0.25 s, QUARANTINE "
             "after 2 s."),
    Scenario("fdrift", "frequency drift (+30 % over 10 s)",
             ["--faults", "fdrift@%d+10000*30" % _F], ("ALERT",),
             "From 3 s the running speed ramps up 30 % over 10 s: the lag learned for the old "
             "speed stops matching, coherence is lost and the device raises ALERT (not "
             "QUARANTINE: the vibration's level and statistics stay healthy) until the lag is "
             "learned again at the new speed."),
    Scenario("incoherent", "coherence loss (phases jump every 20 ms)",
             ["--faults", "incoherent@%d+%d" % (_F, _LONG)], ("ALERT",),
             "From 3 s the machine loses its rhythm (same energy, harmonics' phases jump every "
             "20 ms): coherence lost -> ALERT while it lasts; the level stays healthy, so not "
             "QUARANTINE."),
    Scenario("load", "overloaded beat (6 ms extra work, 1-13 s)",
             ["--faults", "load@1000+12000*6000"], ("APPLY_OPTIMIZE",),
             "From 1 s to 13 s of device time each beat carries 6 ms of extra work (longer than "
             "the 4.2 ms period: beats run late and some are skipped, so the run lasts longer): "
             "the measured beat interval exceeds T_Lambda, the genomic PID raises O until "
             "opt_gain > 0.1 -> APPLY_OPTIMIZE (the beat sheds its optional work, proof-of-work "
             "mining) until the load ends; NOOP while the PID integrates the lateness, and again "
             "once the beat is on time.",
             during=(1.0, 13.0)),
    Scenario("disturb", "process disturbance (-1500 counts, 3-6 s)",
             ["--faults", "disturb@%d+3000*1500" % _F], ("APPLY_BALANCE",),
             "From 3 s to 6 s a DC disturbance of -1500 counts (ramped over 0.5 s) pushes the "
             "actuator loop's measurement off its setpoint: stability > 0.25 with repair_score "
             "< 0.1 -> APPLY_BALANCE while the loop is off; NOOP otherwise.",
             during=(FAULT_AT_S, FAULT_AT_S + 3.0)),
    Scenario("rough", "rough running (broadband 0.3 g rms)",
             ["--faults", "noise@%d+%d*300" % (_F, _LONG)], ("QUARANTINE", "ALERT"),
             "From 3 s the broadband vibration rises from 0.05 to 0.3 g rms (level 2.6 octaves "
             "up, statistics still Gaussian): the shipped model's level term takes it to "
             "QUARANTINE; a machine whose healthy level is this high needs its own model "
             "(docs/DEVICE.md, thresholds for your machine)."),
    Scenario("drift", "sensor offset drift (0.5 g over 5 s)",
             ["--faults", "drift@%d+5000*500" % _F], ("NOOP",),
             "NOOP, and a known blind spot: an offset ramping by 0.5 g is DC to the first "
             "difference the features use, and the actuator loop absorbs it. The device does not "
             "report a slow offset drift; the host sees it in the Master's long windows."),
)


def run_scenarios(runtime="micropython", beats=4000, model_flag=None, model=None, jobs=None,
                  names=None):
    sc = [s for s in SCENARIOS if not names or s.name in names]
    fw = Firmware(runtime)
    runs = fw.map([{"args": s.args, "beats": beats, "model_flag": model_flag, "model": model}
                   for s in sc], jobs=jobs)
    return [scenario_row(s, r) for s, r in zip(sc, runs)]


def scenario_row(s, run):
    d = run.tel["decision_state"] & P.DECISION_MASK
    n = d.shape[0]
    pct = {DECISIONS[i]: round(100.0 * np.count_nonzero(d == i) / n, 1) for i in range(5)}
    t = run.tel["time_us"] / 1e6          # device time (overloaded beats may be skipped)
    first = {}
    for i, name in enumerate(DECISIONS):
        k = np.flatnonzero(d == i)
        first[name] = round(float(t[k[0]]), 2) if k.shape[0] else None
    k = np.flatnonzero(d >= 3)
    first_alert = round(float(t[k[0]]), 2) if k.shape[0] else None
    dom = max(pct, key=lambda x: pct[x])
    # the check: the dominant decision while the fault acts
    a, b = s.during
    span = (t >= a) & (t < (b if b is not None else np.inf))
    ds = d[span]
    during = DECISIONS[int(np.bincount(ds, minlength=5).argmax())] if ds.shape[0] else None
    nz = ds[ds != 0]
    if s.expect == ("NOOP",):
        check = "ok" if during == "NOOP" else "UNEXPECTED (%s dominates)" % during
    elif not nz.shape[0]:
        check = "UNEXPECTED (no response while the fault acts)"
    else:
        first_r = DECISIONS[int(nz[0])]
        most_r = DECISIONS[int(np.bincount(nz, minlength=5).argmax())]
        check = "ok" if (first_r in s.expect and most_r in s.expect) else \
            "UNEXPECTED (first response %s, most frequent %s)" % (first_r, most_r)
    st = run.tel["decision_state"]
    return {
        "scenario": s.name, "title": s.title, "args": s.spec(), "beats": n,
        "seconds": round(float(t[-1]), 2), "percent": pct,
        "skipped_beats": (run.report or {}).get("skipped_beats"),
        "collapses": (run.report or {}).get("collapses"),
        "collapse_beats": int(np.count_nonzero(st & P.STATE_COLLAPSE)),
        "first_s": first, "first_alert_s": first_alert,
        "first_quarantine_s": first["QUARANTINE"],
        "threat_p50": round(float(np.median(run.tel["threat"])) / 65536.0, 3),
        "threat_max": round(float(run.tel["threat"].max()) / 65536.0, 3),
        "dominant": dom, "dominant_percent": pct[dom],
        "expect": list(s.expect), "during_s": list(s.during), "dominant_during": during,
        "check": check,
        "why": s.why,
    }


def _f(v):
    return "-" if v is None else "%.2f" % v


def table_markdown(rows, meta):
    out = ["Measured by `%s` (%s, %d beats = %.1f s per scenario, virtual clock, %s model; "
           "faults from %g s unless stated). Percent of beats per decision (the beat's own "
           "decision), collapse edges, first time (s) of ALERT-or-QUARANTINE, QUARANTINE, "
           "APPLY_BALANCE and APPLY_OPTIMIZE; check: while the fault acts, the device's first "
           "and most frequent responses are decisions the scenario calls right (NOOP dominates "
           "the healthy ones)."
           % (meta["command"], meta["runtime"], meta["beats"], meta["seconds"], meta["model"],
              FAULT_AT_S), "",
           "| scenario | NOOP | BAL | OPT | ALERT | QUAR | collapses | 1st ALERT | 1st QUAR | "
           "1st BAL | 1st OPT | check |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        p = r["percent"]
        out.append("| %s: %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            r["scenario"], r["title"], p["NOOP"], p["APPLY_BALANCE"], p["APPLY_OPTIMIZE"],
            p["ALERT"], p["QUARANTINE"], r["collapses"], _f(r["first_alert_s"]),
            _f(r["first_quarantine_s"]), _f(r["first_s"]["APPLY_BALANCE"]),
            _f(r["first_s"]["APPLY_OPTIMIZE"]), r["check"]))
    out += ["", "Why each outcome is the right one (the emulator flags in brackets):", ""]
    for r in rows:
        mark = " **(%.0f %% %s: right for this scenario, see the reason)**" % (
            r["dominant_percent"], r["dominant"]) if r["dominant_percent"] >= DOMINANT * 100 else ""
        out.append("- **%s** [`%s`]%s: %s" % (r["scenario"], r["args"], mark, r["why"]))
    return "\n".join(out) + "\n"


def table_text(rows):
    lines = ["%-11s %6s %6s %6s %6s %6s %5s %7s %7s %7s %7s  %s" % (
        "scenario", *SHORT, "coll", "1stALRT", "1stQUAR", "1stBAL", "1stOPT", "check")]
    for r in rows:
        p = r["percent"]
        lines.append("%-11s %6.1f %6.1f %6.1f %6.1f %6.1f %5s %7s %7s %7s %7s  %s" % (
            r["scenario"], p["NOOP"], p["APPLY_BALANCE"], p["APPLY_OPTIMIZE"], p["ALERT"],
            p["QUARANTINE"], r["collapses"], _f(r["first_alert_s"]), _f(r["first_quarantine_s"]),
            _f(r["first_s"]["APPLY_BALANCE"]), _f(r["first_s"]["APPLY_OPTIMIZE"]), r["check"]))
    return "\n".join(lines) + "\n"


BEGIN = "<!-- BEGIN decision-table: generated by `becomingone scenarios --write-docs`, do not edit -->"
END = "<!-- END decision-table -->"


def write_docs(path, markdown):
    """Replace the marked section of docs/DEVICE.md (appended under a heading if absent)."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    block = BEGIN + "\n" + markdown + END
    if BEGIN in text and END in text:
        a = text.index(BEGIN)
        b = text.index(END) + len(END)
        text = text[:a] + block + text[b:]
    else:
        text = text.rstrip("\n") + "\n\n## Decision table (measured)\n\n" + block + "\n"
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path
