# Runs ON the emulated RP2040 (MicroPython), started by host/rp2040/measure.py through the raw
# REPL: builds the beat exactly as device/main.py does from device/main.py flags, runs it, and
# times every step() in RP2040 microseconds (time.ticks_us counts the chip's emulated cycles).
#
#   chip_beat.py [--measure-beats N] [--warmup W] [--alloc-beats A] [--heap-samples K]
#                [--pow-hashes H] [--realtime R] [--sections] [--no-beat-mem-checks]
#                -- DEVICE FLAGS
#
# A beat is idle() (host frames, GC, mining, the wait for the deadline) then step(). Phases:
#  1. W warm-up beats; a collection; gc.mem_free() (free heap after a collection, start).
#  1b. with --realtime R: the beat as it runs on a board, R beats of idle() + step() and nothing
#     else (no timer, no heap call), after 10 beats to settle from the collection: the beat's own
#     lateness histogram and skipped-beat count (reset first) over those R beats.
#  2. N timed beats: ticks_us() around step() only. gc.mem_free() and gc.mem_alloc() are NOT
#     called per beat here: on the RP2040 each call walks the heap's allocation table (gc_info)
#     and takes about 9 ms, which would make the next beat late and give it more samples to
#     process. K evenly spaced gc.mem_free() samples give the heap's low-water mark; the beats
#     right after a sample (or a collection) are left out of the step times.
#  3. a collection; gc.mem_free() (free heap after a collection, end: flat = same as phase 1).
#  4. A allocation beats: gc.mem_alloc() around step() (an allocation in step() shows as a
#     positive difference, an automatic collection inside step() as a negative one) and
#     gc.mem_free() after it (low-water); their times are not used.
#  5. the proof-of-work rate: Miner.step(H) on a 23-byte record at 32 bits (nothing is found).
# Step times go into a fixed histogram (10 us buckets below 6 ms, 1 ms buckets to 100 ms): the
# harness allocates nothing per beat; its own heap (about 5 KB) is taken before phase 1.
# --no-beat-mem-checks (a diagnostic) switches off device/beat.py's own per-beat gc.mem_alloc()
# and gc.mem_free() bookkeeping, to show what step() costs without it.
# With --sections every method of the beat's parts is wrapped with a timer (inclusive times,
# calls; the wrappers allocate and add their own cost, measured and reported): a diagnostic.
# The result is one JSON line after the marker "@@CHIP_BEAT@@" at the end of stdout (frames
# of the serial link, if any, come before it).
import gc
import json
import sys
import time
from array import array

_FINE_US = 10
_FINE_N = 600             # 0 .. 6 ms in 10 us buckets
_COARSE_N = 94            # 6 .. 100 ms in 1 ms buckets (the harness's heap: 1.4 KB, was 4.2 KB
#                           with 10 us buckets to 20 ms; it counts against the free-heap figure)
_NB = _FINE_N + _COARSE_N + 1


def _bucket(us):
    if us < _FINE_N * _FINE_US:
        return us // _FINE_US
    ms = us // 1000 - _FINE_N * _FINE_US // 1000
    return _FINE_N + ms if ms < _COARSE_N else _NB - 1


def _upper(b):
    if b < _FINE_N:
        return (b + 1) * _FINE_US
    if b < _NB - 1:
        return (b - _FINE_N + _FINE_N * _FINE_US // 1000 + 1) * 1000
    return -1


def _pct(h, n, q):
    want = (n * q + 99) // 100
    c = 0
    for b in range(_NB):
        c += h[b]
        if c >= want and c:
            return _upper(b)
    return -1


class _Timed:
    """Wraps the methods of some objects with timers (the --sections diagnostic). Each figure is
    inclusive of what the method calls, minus the measured cost of the timers nested in it."""

    def __init__(self):
        self.us = {}
        self.calls = {}
        self.on = False
        self.count = [0]          # timed calls so far (nesting correction)
        self.wrap_us = 0

    def wrap(self, obj, label):
        if obj is None:
            return
        for n in [n for n in dir(obj) if not n.startswith("__")]:
            try:
                f = getattr(obj, n)
            except Exception:
                continue
            if not callable(f) or isinstance(f, type):
                continue
            setattr(obj, n, self._timer(f, label + "." + n))

    def _timer(self, f, key):
        us = self.us
        calls = self.calls
        cnt = self.count
        ticks = time.ticks_us
        diff = time.ticks_diff
        us[key] = 0
        calls[key] = 0

        def t(*a, **k):
            if not self.on:
                return f(*a, **k)
            c0 = cnt[0]
            t0 = ticks()
            r = f(*a, **k)
            d = diff(ticks(), t0)
            cnt[0] += 1
            us[key] += d - (cnt[0] - 1 - c0) * self.wrap_us
            calls[key] += 1
            return r
        return t


def main(argv):
    beats, warm, alloc_n, heap_k, pow_hashes, sections, no_mem = 300, 20, 50, 10, 2000, False, False
    rt_n = 0
    dev = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("--measure-beats", "--warmup", "--alloc-beats", "--heap-samples", "--pow-hashes",
                 "--realtime"):
            v = int(argv[i + 1])
            if a == "--measure-beats":
                beats = v
            elif a == "--warmup":
                warm = v
            elif a == "--alloc-beats":
                alloc_n = v
            elif a == "--heap-samples":
                heap_k = v
            elif a == "--realtime":
                rt_n = v
            else:
                pow_hashes = v
            i += 2
        elif a == "--sections":
            sections = True
            i += 1
        elif a == "--no-beat-mem-checks":
            no_mem = True
            i += 1
        elif a == "--":
            dev += argv[i + 1:]
            break
        else:
            dev.append(a)
            i += 1
    if beats < 1 or warm < 0 or alloc_n < 0 or heap_k < 0:
        raise ValueError("need beats >= 1 and warmup, alloc-beats, heap-samples >= 0")
    from device.cli import parse_args
    from device.runner import prepare, build, unload
    opts = parse_args(dev)
    gc.collect()
    free_start = gc.mem_free()
    prepare(opts)
    gc.collect()
    beat = build(opts)
    # boot-only code leaves the heap, as device/main.py drops it once the beat is built
    parse_args = prepare = build = None
    for name in ("device.cli", "device.runner", "device.limits"):
        unload(name)
    unload = None
    if no_mem:
        import device.beat
        device.beat._HAS_MEM = False
    gc.collect()
    free_built = gc.mem_free()
    hist = array("H", bytes(2 * _NB))
    n = 0
    s_sum = 0
    s_min = 1 << 29
    s_max = 0
    timed = None
    wrap_us = 0
    if sections:
        timed = _Timed()
        m = beat.m
        for obj, label in ((beat, "beat"), (m, "maths"), (getattr(m, "em", None), "emissary"),
                           (getattr(m, "arb", None), "arbiter"), (getattr(m, "act", None), "pid"),
                           (getattr(getattr(m, "arb", None), "pid", None), "arbiter.pid"),
                           (beat.hw.sampler, "sampler"), (beat.enc, "encoder"),
                           (getattr(beat.enc, "auth", None), "auth"), (beat.link, "link"),
                           (beat.time, "time"), (beat.lateness, "lateness"),
                           (beat.hw.pwm, "pwm"), (beat.hw.led, "led"),
                           (beat.hw.watchdog, "watchdog"), (beat.queue, "queue")):
            timed.wrap(obj, label)
        # the timer's own cost per call
        cal = _Timed()

        class _Nop:
            def nop(self):
                return None
        o = _Nop()
        cal.wrap(o, "nop")
        cal.on = True
        t0 = time.ticks_us()
        for _ in range(200):
            o.nop()
        wrapped = time.ticks_diff(time.ticks_us(), t0)
        o2 = _Nop()
        t0 = time.ticks_us()
        for _ in range(200):
            o2.nop()
        plain = time.ticks_diff(time.ticks_us(), t0)
        wrap_us = (wrapped - plain) // 200
        timed.wrap_us = wrap_us
    ticks = time.ticks_us
    tdiff = time.ticks_diff
    mem_alloc = gc.mem_alloc
    mem_free = gc.mem_free
    wd = beat.hw.watchdog
    beat.start()
    for i in range(warm):
        beat.idle()
        beat.step()
    gc.collect()
    free_warm = mem_free()
    low = free_warm
    rt = None
    if rt_n:
        for i in range(10):
            beat.idle()
            beat.step()
        lh = beat.lateness
        lh.reset()
        sk0 = beat.skipped
        b0 = beat.beat
        for i in range(rt_n):
            beat.idle()
            beat.step()
        rt = {"beats": beat.beat - b0, "skipped_beats": beat.skipped - sk0,
              "lateness_us": {"p50": lh.percentile(50), "p90": lh.percentile(90),
                              "p99": lh.percentile(99), "max": lh.max_us},
              "hashes": beat.hashes, "records_mined": beat.records_mined,
              "witness_pending": beat.queue.pending()}
    every = beats // heap_k if heap_k else 0
    skip = 3                      # beats after a collection / heap sample: not timed
    sys.stdout.write("\x06PROF+\n")   # the runner's PC profile (if on) covers these beats
    for i in range(beats):
        beat.idle()
        if timed is not None:
            timed.on = True
        t0 = ticks()
        beat.step()
        t1 = ticks()
        if timed is not None:
            timed.on = False
        if skip:
            skip -= 1
        else:
            us = tdiff(t1, t0)
            hist[_bucket(us)] += 1
            n += 1
            s_sum += us
            if us < s_min:
                s_min = us
            if us > s_max:
                s_max = us
        if every and i % every == every - 1:
            f = mem_free()
            if f < low:
                low = f
            skip = 3
    sys.stdout.write("\x06PROF-\n")
    gc.collect()
    free_end = mem_free()
    alloc_beats = 0
    alloc_total = 0
    alloc_max = 0
    gc_in_step = 0
    for i in range(alloc_n):
        beat.idle()
        a = mem_alloc()
        beat.step()
        d = mem_alloc() - a
        f = mem_free()
        if f < low:
            low = f
        if d > 0:
            alloc_beats += 1
            alloc_total += d
            if d > alloc_max:
                alloc_max = d
        elif d < 0:
            gc_in_step += 1
    wd.feed()
    try:
        beat.hw.sampler.stop()
    except AttributeError:
        pass
    from device.report import report_json     # as device/main.py: at exit, not in the heap
    rep = json.loads(report_json(beat))       # the figures above measure
    out = {"beats": n, "warmup": warm, "board": opts.board, "link": opts.link or "default",
           "clock": opts.clock, "key": bool(opts.key_file), "beat_mem_checks": not no_mem,
           "period_us": beat.deadline.period_us,
           "step_us": {"p50": min(_pct(hist, n, 50), s_max), "p90": min(_pct(hist, n, 90), s_max),
                       "p99": min(_pct(hist, n, 99), s_max), "max": s_max, "min": s_min,
                       "mean": s_sum // n if n else -1, "resolution_us": _FINE_US},
           "alloc": {"beats": alloc_n, "beats_allocating": alloc_beats,
                     "bytes_total": alloc_total, "bytes_max": alloc_max,
                     "gc_in_step": gc_in_step},
           "heap": {"free_start": free_start, "free_built": free_built,
                    "free_after_warmup_collect": free_warm, "free_after_end_collect": free_end,
                    "low_water": low, "low_water_samples": heap_k + alloc_n,
                    "total": gc.mem_free() + gc.mem_alloc()},
           "report": rep}
    if rt is not None:
        out["realtime"] = rt
    if timed is not None:
        out["sections"] = {"wrapper_us_per_call": wrap_us,
                           "us": dict((k, v) for k, v in timed.us.items() if timed.calls[k]),
                           "calls": dict((k, v) for k, v in timed.calls.items() if v)}
    if pow_hashes:
        from shared.pow import Miner
        wd.feed()
        mi = Miner()
        rec = bytearray(23)
        mi.start(memoryview(rec), 32)
        gc.collect()
        t0 = ticks()
        mi.step(pow_hashes)
        dt = tdiff(ticks(), t0)
        out["pow"] = {"hashes": pow_hashes, "us": dt,
                      "hashes_per_s": (pow_hashes * 1000000) // dt if dt > 0 else -1}
        wd.feed()
    try:
        import micropython
        micropython.kbd_intr(3)
    except (ImportError, AttributeError):
        pass
    sys.stdout.write("\n@@CHIP_BEAT@@")
    print(json.dumps(out))


main(sys.argv[1:])
