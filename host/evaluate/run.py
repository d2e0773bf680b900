"""Run a dataset's recordings through the firmware and score them.

    runs = run_dataset(folder, channel="DE", runtime="micropython")   # [(item, signal, run)]
    result = evaluate(folder, ...)        # {"records": [...], "summary": {...}, ...}

Every recording is loaded and checked before the first firmware process starts (a bad file or
index stops the evaluation with its error, and nothing is written anywhere). The recordings are
converted to the emulator board's sensor (boards/emulator.py: f_s, ADC bits, counts per g) and
written as raw uint16 files to a temporary folder, deleted afterwards.
"""
import os
import tempfile
import time

from becomingone.evaluate.dataset import load_index
from becomingone.evaluate.firmware import Firmware
from becomingone.evaluate.metrics import record_figures, summarise
from becomingone.evaluate.recording import load_recording, to_board, write_counts


def board_constants():
    """(f_s, counts per g, ADC bits) of the emulator board the recordings are played into."""
    from boards import emulator as E
    return E.DEFAULT_FS, E.COUNTS_PER_UNIT, E.ADC_BITS


def prepare(items):
    """Load, check and convert every item's recording: [(item, BoardSignal)]."""
    f_s, cpu, bits = board_constants()
    out = []
    for it in items:
        rec = load_recording(it.path, rate=it.rate_hz, scale=it.scale)
        out.append((it, to_board(rec, f_s, cpu, bits)))
    return out


def run_signals(pairs, runtime="micropython", jobs=None, model=None, model_flag=None,
                progress=None):
    """Each (item, signal) through the firmware: [(item, signal, DeviceRun)] in input order."""
    fw = Firmware(runtime)
    with tempfile.TemporaryDirectory(prefix="becomingone-eval-") as tmp:
        kws = []
        for i, (it, sig) in enumerate(pairs):
            path = write_counts(os.path.join(tmp, "rec-%d.u16" % i), sig.counts)
            kws.append({"sensor_file": path, "model": model, "model_flag": model_flag})
        t0 = time.monotonic()
        runs = fw.map(kws, jobs=jobs)
        if progress:
            progress("%d recordings through the firmware (%s) in %.1f s"
                     % (len(runs), runtime, time.monotonic() - t0))
    return [(it, sig, run) for (it, sig), run in zip(pairs, runs)]


def run_dataset(folder, channel="DE", runtime="micropython", jobs=None, records=None,
                model=None, model_flag=None, progress=None):
    items, skipped = load_index(folder, channel, records)
    pairs = prepare(items)
    return run_signals(pairs, runtime, jobs, model, model_flag, progress), skipped


def evaluate(folder, channel="DE", runtime="micropython", jobs=None, records=None,
             model=None, model_flag=None, window_s=1.0, hop_s=0.25, progress=None):
    runs, skipped = run_dataset(folder, channel, runtime, jobs, records, model, model_flag,
                                progress)
    recs, wins = [], []
    for it, sig, run in runs:
        r, w = record_figures(it, run, sig, window_s, hop_s)
        recs.append(r)
        wins.append(w)
    summary = summarise(recs, wins)
    hello = runs[0][2].hello if runs else {}
    return {
        "dataset": os.path.abspath(folder), "channel": channel, "runtime": runtime,
        "model": ("MODEL frame %r" % (tuple(model),) if model is not None else
                  (model_flag or "shipped")),
        "board": {"f_s": hello.get("fs_hz"), "period_us": hello.get("period_us"),
                  "kairos_decim": hello.get("kairos_decim"),
                  "counts_per_g": (hello.get("counts_per_unit_q4") or 0) / 16.0},
        "window": {"seconds": window_s, "hop_s": hop_s,
                   "device_score": "threat of the beat that ends the window",
                   "baselines": "on the same span of the signal at f_s in g (before the ADC)"},
        "skipped": skipped, "records": recs, "summary": summary,
    }
