"""The beat's figures on the emulated RP2040: step() time in RP2040 microseconds, allocation
per step, heap levels, proof-of-work rate. chip_beat.py runs on the chip (through the raw REPL)
with the firmware compiled for it; this module builds its filesystem, runs it and checks the
frames the serial link sent.

    r = measure(board="pico", beats=300)          # the shipped defaults (see budget.py)
    r["step_us"]["p99"], r["heap"], r["alloc"], r["pow"]["hashes_per_s"]

Board pico: ADC0 (GP26) gets a 5 Hz sine of 400 counts around mid-scale plus 24 counts of noise
from the emulator (the sampler is the pico board's own: the ADC free-running at 12 kHz into a
ring by DMA); board emulator:
the synthetic sensor computed on the chip inside step() (so its step() includes the sensor).
"""
import hashlib
import json
import os

from becomingone.rp2040 import build, chip
from becomingone.rp2040.errors import UserError
from becomingone.rp2040.run import run_script

HERE = os.path.dirname(os.path.abspath(__file__))
MARKER = b"@@CHIP_BEAT@@"
DEVICE_ID = 7
# a fixed key: the measurement is reproducible (it is never a deployed device's key)
MEASURE_KEY = hashlib.sha256(b"becomingone rp2040 measurement key").digest()
PICO_ADC = chip.adc_spec(0, mid=2048, hz=5, amp=400, noise=24, seed=7)


def chip_files(board):
    files = build.firmware_modules((board,))
    with open(os.path.join(HERE, "chip_beat.py"), "rb") as f:
        files["chip_beat.py"] = f.read()
    files["device.key"] = MEASURE_KEY
    return files


def device_flags(board="pico", key=True, link="serial", clock="real", extra=()):
    a = ["--board", board, "--link", link, "--clock", clock, "--device-id", str(DEVICE_ID),
         "--boot-id", "4242"]
    if key:
        a += ["--key-file", "device.key"]
    return a + list(extra)


def _frames(data, key):
    """Decode the serial link's frames in `data`: counts per type, bad frames, the first type."""
    from shared import protocol as P
    from shared.auth import Auth
    from shared.cobs import Deframer
    de = Deframer()
    auth = {DEVICE_ID: Auth(key)} if key else None
    counts, bad, first, records = {}, 0, None, 0
    for seg in de.feed(data):
        try:
            f = P.decode(bytes(seg), auth=auth)
        except Exception:
            bad += 1
            continue
        name = P.TYPE_NAMES[f.type]
        counts[name] = counts.get(name, 0) + 1
        if f.type == P.TELEMETRY:       # a BATCH frame carries several beats' records
            records += len(f.fields["records"]) if f.batch else 1
        first = first or name
    return {"counts": counts, "records": records, "bad": bad, "first": first,
            "signed": bool(key), "cobs_errors": sum(de.errors.values())}


def measure(board="pico", beats=300, key=True, firmware=None, device_args=(), profile=None,
            pow_hashes=2000, warmup=20, link="serial", clock="real", sections=False,
            wall_timeout=1800, files=None, alloc_beats=50, heap_samples=10, beat_mem_checks=True,
            realtime=0):
    """`beats` timed beats after `warmup`, then `alloc_beats` with gc.mem_alloc() around
    step() (see chip_beat.py for why those are separate). With `realtime` R, first R beats run
    as on a board (nothing timed or measured in between): r["realtime"] has the beat's own
    lateness p50/p90/p99/max (us) and skipped beats over them. Returns the result dict."""
    if beats < 10:
        raise UserError("--beats must be at least 10, got %d" % beats)
    files = dict(files or chip_files(board))
    dev = device_flags(board, key, link, clock, device_args)
    args = ["--measure-beats", str(beats), "--warmup", str(warmup), "--alloc-beats",
            str(alloc_beats), "--heap-samples", str(heap_samples), "--pow-hashes",
            str(pow_hashes), "--realtime", str(realtime)] + (["--sections"] if sections else []) + \
        ([] if beat_mem_checks else ["--no-beat-mem-checks"]) + ["--"] + dev
    fw = chip.firmware(firmware)
    res = run_script(files, "chip_beat.py", args, firmware=fw.path,
                     adc=[PICO_ADC] if board == "pico" else [], wall_timeout=wall_timeout,
                     profile=profile)
    out = res.stdout
    i = out.rfind(MARKER)
    if res.rc != 0 or i < 0:
        raise UserError("the measuring script failed on the emulated RP2040 (exit %d):\n%s"
                        % (res.rc, "\n".join((res.stderr or res.text).strip().splitlines()[-15:])))
    r = json.loads(out[i + len(MARKER):].split(b"\n")[0].decode().strip())
    r["frames"] = _frames(out[:i], MEASURE_KEY if key else None) if link == "serial" else None
    r["firmware"] = {"path": fw.path, "sha256": fw.sha256, "fixture": fw.fixture}
    r["emulator"] = {k: res.stats.get(k) for k in ("script_emu_s", "script_wall_s",
                                                     "wall_per_emu", "cycles")}
    r["step_p99_of_period"] = round(r["step_us"]["p99"] / float(r["period_us"]), 3)
    r["step_p50_of_period"] = round(r["step_us"]["p50"] / float(r["period_us"]), 3)
    return r


def describe(r):
    s, h, a = r["step_us"], r["heap"], r["alloc"]
    per = float(r["period_us"])
    lines = ["beat on the emulated RP2040 at 125 MHz (%s board, %s link, key %s, %s clock), %d "
             "beats after %d warm-up" % (r["board"], r["link"], "set" if r["key"] else "none",
                                         r["clock"], r["beats"], r["warmup"]),
             "step()  p50 %d us (%.2f of the %d us period), p90 %d, p99 %d (%.2f), max %d, mean %d"
             % (s["p50"], s["p50"] / per, r["period_us"], s["p90"], s["p99"], s["p99"] / per,
                s["max"], s["mean"]),
             "alloc   %d of %d steady beats allocated (max %d bytes, total %d); automatic GC "
             "inside step(): %d" % (a["beats_allocating"], a["beats"], a["bytes_max"],
                                    a["bytes_total"], a["gc_in_step"]),
             "heap    free after build %d, after a collection at warm-up %d and at the end %d, "
             "low-water %d (of %d)" % (h["free_built"], h["free_after_warmup_collect"],
                                       h["free_after_end_collect"], h["low_water"], h["total"])]
    rt = r.get("realtime")
    if rt:
        lt = rt["lateness_us"]
        lines.append("realtime %d beats as on a board: lateness p50 %d us, p90 %d, p99 %d (%.3f of "
                     "the period), max %d; skipped beats %d; %d hashes mined"
                     % (rt["beats"], lt["p50"], lt["p90"], lt["p99"], lt["p99"] / per, lt["max"],
                        rt["skipped_beats"], rt["hashes"]))
    rep = r.get("report") or {}
    lines.append("beat    lateness p50/p99/max %s us, skipped beats %s, decisions %s"
                 % ("/".join(str((rep.get("lateness_us") or {}).get(k)) for k in ("p50", "p99", "max")),
                    rep.get("skipped_beats"), rep.get("decisions")))
    if r.get("pow"):
        lines.append("pow     %d hashes/s on the chip" % r["pow"]["hashes_per_s"])
    if r.get("frames"):
        fr = r["frames"]
        lines.append("frames  %s (first %s, bad %d, signed %s)" % (fr["counts"], fr["first"],
                                                                 fr["bad"], fr["signed"]))
    e = r.get("emulator") or {}
    lines.append("run     %.2f emulated s in %.1f wall s; firmware %s" % (
        e.get("script_emu_s") or 0, e.get("script_wall_s") or 0, r["firmware"]["path"]))
    return lines


def sections(board="pico", beats=60, key=True, firmware=None, device_args=(),
             beat_mem_checks=True):
    """step() time by the beat's methods (inclusive), with the timers' own cost per call."""
    return measure(board=board, beats=beats, key=key, firmware=firmware, device_args=device_args,
                   sections=True, pow_hashes=0, warmup=10, alloc_beats=0, heap_samples=0,
                   beat_mem_checks=beat_mem_checks)


def describe_sections(r):
    sec = r["sections"]
    n = float(r["beats"])
    w = sec["wrapper_us_per_call"]
    lines = ["step() by method on the emulated RP2040 (%s board, key %s, device/beat.py's "
             "gc.mem_alloc() bookkeeping %s): us per beat, inclusive of what the method calls "
             "minus the timers nested in it (~%d us each), calls per beat"
             % (r["board"], r["key"], "on" if r.get("beat_mem_checks", True) else "off", w),
             "step() p50 with the timers: %d us (timer cost of ~%.0f calls per beat included)"
             % (r["step_us"]["p50"], sum(sec["calls"].values()) / n)]
    rows = sorted(sec["us"].items(), key=lambda kv: -kv[1])
    for k, us in rows:
        c = sec["calls"][k]
        lines.append("  %8.0f us  %5.1f calls  %s" % (us / n, c / n, k))
    return lines
