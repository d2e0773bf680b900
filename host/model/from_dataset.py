"""Training rows for the entropy model from the firmware's own features: a dataset of
recordings (host/evaluate) plus a synthetic healthy fleet from the emulator board.

What the shipped model is trained on (docs/DEVICE.md "The shipped model"):
  - every recording of the dataset's channel, run through the real firmware; label 0 for the
    condition ``normal``, 1 for every fault condition as published (including the faults the
    signal does not show: nothing is relabelled or dropped);
  - FLEET: 30 synthetic healthy machines of the emulator board (boards/emulator.py): broadband
    Gaussian-like vibration of 0.02 .. 0.1 g rms, running speed 10 / 30 / 200 Hz with 3
    harmonics of 0.3 or 1 g, 10 s each, label 0. They stop the model from learning "the one
    measured healthy machine's RMS and its sub-Gaussian kurtosis": a machine of this class is
    healthy at any broadband level in that range and with Gaussian statistics.
Rows: one every ``step`` beats once the device's 1 s window is full; each recording or machine
weighs the same (its rows share a weight of 1), classes are balanced in the fit.
The training runs use the firmware's seed model (``--model seed``): the features do not depend
on the model, but a decision can (QUARANTINE drives the output to its safe value, and the
emulator's actuator plant adds to its synthetic sensor), so the rows, and with them the trained
model, must not depend on the model being replaced.
"""
import math

import numpy as np

from shared.vibration import LEVEL_NONE

FLEET_NOISE_G = (0.02, 0.035, 0.05, 0.07, 0.1)
FLEET_F0_HZ = (10, 30, 200)
FLEET_AMP_G = (0.3, 1.0)
FLEET_BEATS = 2400          # 10.1 s at T_Lambda = 4.21 ms
ROW_STEP = 6                # one training row every 6 beats (25 ms)
WINDOW_S = 1.0


def fleet():
    """[(name, firmware args)] of the synthetic healthy fleet (deterministic seeds)."""
    out = []
    i = 0
    for noise in FLEET_NOISE_G:
        for f0 in FLEET_F0_HZ:
            for amp in FLEET_AMP_G:
                i += 1
                sig = "f0=%g,octaves=3,noise=%g,amp=%g" % (f0, noise, amp)
                out.append(("synthetic:" + sig, ["--signal", sig, "--seed", str(500 + i)]))
    return out


def rows(tel, period_s, features, step=ROW_STEP, window_s=WINDOW_S):
    """(X, beats) of a run's telemetry: full-window beats, every ``step``-th."""
    first = int(math.ceil(window_s / period_s - 1e-9))
    sel = (tel["beat"] >= first) & ((tel["beat"] - first) % step == 0) & \
        (tel["level"] != LEVEL_NONE)
    cols = []
    for f in features:
        v = tel[f][sel].astype(np.float64)
        cols.append(v if f == "anoms" else v / 256.0)
    return np.stack(cols, axis=1), tel["beat"][sel]


def collect(folder, features, channel="DE", runtime="micropython", jobs=None,
            synthetic=True, progress=None):
    """Rows of the dataset and (optionally) the fleet: dict with X, y, w, groups, loads and the
    list of sources (name, label, rows)."""
    from becomingone.evaluate.firmware import Firmware
    from becomingone.evaluate.run import run_dataset
    runs, skipped = run_dataset(folder, channel, runtime, jobs, model_flag="seed",
                                progress=progress)
    parts = []
    for it, sig, run in runs:
        X, _ = rows(run.tel, run.period_s, features)
        load = it.meta.get("load_hp")
        parts.append(("%s:%s%s" % (channel, it.record, " (derived)" if it.derived else ""),
                      0 if it.healthy else 1, X,
                      float(load) if isinstance(load, (int, float)) else float("nan")))
    if synthetic:
        fw = Firmware(runtime)
        fl = fleet()
        fruns = fw.map([{"args": a, "beats": FLEET_BEATS, "model_flag": "seed"} for _n, a in fl],
                       jobs=jobs)
        if progress:
            progress("%d synthetic healthy machines through the firmware" % len(fruns))
        for (name, _a), run in zip(fl, fruns):
            X, _ = rows(run.tel, run.period_s, features)
            parts.append((name, 0, X, float("nan")))
    Xs, ys, ws, gs, ls, sources = [], [], [], [], [], []
    for gi, (name, lab, X, load) in enumerate(parts):
        if not X.shape[0]:
            continue
        Xs.append(X)
        ys.append(np.full(X.shape[0], lab))
        ws.append(np.full(X.shape[0], 1.0 / X.shape[0]))
        gs.append(np.full(X.shape[0], gi))
        ls.append(np.full(X.shape[0], load))
        sources.append({"name": name, "label": lab, "rows": int(X.shape[0])})
    return {"X": np.vstack(Xs), "y": np.concatenate(ys), "w": np.concatenate(ws),
            "groups": np.concatenate(gs), "loads": np.concatenate(ls), "sources": sources,
            "skipped": skipped}
