"""The beat's budget on the RP2040 (issue 12, "The firmware fits its chip"): the one place with
the numbers. The RP2040 lane asserts them (tests/rp2040/test_chip_budget.py) and `becomingone
bench device` reports against them, both from the same measurement (measure.py, chip_beat.py on
the emulated chip at 125 MHz, emulated cycles: deterministic, so fine to assert).

The conditions are the shipped defaults: board pico (ADC sampler, PWM, watchdog), the serial link
(USB CDC), a device key (every frame signed), T_Lambda(4, 5) = 4.21 ms, the default proof-of-work
difficulty (shared/protocol_codes.py POW_BITS_DEFAULT).
"""
STEP_P99_MAX_FRACTION = 0.40     # step() p99 <= 40 % of the beat period (1.68 ms at 4.21 ms)
HEAP_FREE_MIN = 48 * 1024        # bytes free after a collection, in the steady beat ...
HEAP_FLAT_BEATS = 5000           # ... and flat over this many beats:
HEAP_FLAT_TOLERANCE = 512        # the end-of-run figure at most this many bytes lower
ALLOC_MAX_PER_STEADY_BEAT = 0    # bytes step() allocates in the steady beat, with a device key
POW_WITNESS_MAX_S = 5.0          # a WITNESS mined within 5 s on the chip at the default
#                                  difficulty (reported by the bench, not asserted here)

# the real-time run (measure(realtime=N): the beat running as on a board, idle() + step() and
# nothing else): the beat's own lateness histogram and skipped-beat count over N beats
REALTIME_BEATS = 2000            # 8.4 emulated s at 4.21 ms, ~30 s of wall time here: the lane
#                                  runs all 2,000 (as the bench does)
LATENESS_P99_MAX_FRACTION = 0.10  # lateness p99 < 10 % of the period (421 us at 4.21 ms) ...
SKIPPED_MAX = 0                  # ... and no skipped beat

HEAP_LOW_WATER_MIN = 8 * 1024    # free heap never below this between collections (the beat
#                                  collects in idle time below gc_low = 12 KB)

# Where the chip stands (emulated RP2040, shipped defaults, 12 kHz DMA sampler, key, serial):
# step() p50 1.52 ms, p99 1.61 ms against the 1.68 ms budget (it was 21-31 ms); 2,000 beats as on
# a board with lateness p50 0.12 ms, p99 0.26 ms against 0.42 ms and none skipped (4,731 hashes
# mined meanwhile); no allocation in the steady beat with a key; 50,912 bytes free after a
# collection, flat. Every check passes: an entry set to True here makes its test a strict
# expected failure again.
XFAIL = {"step": False, "alloc": False, "heap": False, "realtime": False}
# The lane's end-to-end emulation (the real host on the other side: handshake, CONFIG, CLEAR)
# runs at the default 4.21 ms beat. It failed while idle() was bytecode: bytes from the host left
# garbage in the heap's low hole for bytecode frames, so the frame idle() took from the heap
# every beat scanned the allocation table (gc_alloc 3 % -> 32 % of the chip's cycles), every beat
# ran ~2 ms late and idle() returned before the host poll (a CONFIG not acked within 120 s).
# idle() is native now (its frame on the C stack); the skipped beats that first came with it were
# the mining estimate decaying to ~15 us on bare metal (a 64-hash slice: 9 ms). False puts that
# test back on a 60 ms beat (docs/DEVICE.md "With the host on the link").
HOST_AT_DEFAULT_BEAT = True
XFAIL_REASON = ("issue 12: step() p99 or the real-time lateness is still over its budget on the "
                "RP2040; "
                "flip host/rp2040/budget.py XFAIL when this passes")


def step_budget_us(period_us):
    return int(period_us * STEP_P99_MAX_FRACTION)


def check_step(r):
    """Failures (strings) of the step() budget in a measure.measure() result; [] = within."""
    lim = step_budget_us(r["period_us"])
    p99 = r["step_us"]["p99"]
    if p99 < 0 or p99 > lim:
        return ["step() p99 %d us > %d us (%.0f %% of the %d us period; budget %.0f %%)"
                % (p99, lim, 100.0 * p99 / r["period_us"], r["period_us"],
                   100 * STEP_P99_MAX_FRACTION)]
    return []


def check_realtime(r):
    """Failures of the real-time budget in a measure(realtime=N) result; [] = within."""
    rt = r.get("realtime")
    if not rt:
        return ["no real-time run in this measurement (measure(realtime=N))"]
    per = r["period_us"]
    lim = per * LATENESS_P99_MAX_FRACTION
    out = []
    p99 = rt["lateness_us"]["p99"]
    if not p99 < lim:
        out.append("lateness p99 %d us >= %d us (%.0f %% of the %d us period) over %d beats"
                   % (p99, lim, 100.0 * p99 / per, per, rt["beats"]))
    if rt["skipped_beats"] > SKIPPED_MAX:
        out.append("%d beats skipped in %d" % (rt["skipped_beats"], rt["beats"]))
    return out


def check_alloc(r):
    a = r["alloc"]
    out = []
    if a["beats_allocating"] or a["bytes_max"] > ALLOC_MAX_PER_STEADY_BEAT:
        out.append("step() allocated in %d of %d steady beats (max %d bytes, total %d) with a "
                   "device key=%s" % (a["beats_allocating"], a["beats"], a["bytes_max"],
                                      a["bytes_total"], r["key"]))
    if a["gc_in_step"]:
        out.append("an automatic collection ran inside step() in %d beats" % a["gc_in_step"])
    return out


def check_heap_level(r):
    h = r["heap"]
    out = []
    for k in ("free_after_warmup_collect", "free_after_end_collect"):
        if h[k] < HEAP_FREE_MIN:
            out.append("free heap %s = %d bytes < %d" % (k, h[k], HEAP_FREE_MIN))
    return out


def check_heap_low_water(r):
    h = r["heap"]
    out = []
    if h["low_water"] < HEAP_LOW_WATER_MIN:
        out.append("free heap fell to %d bytes between collections (< %d)"
                   % (h["low_water"], HEAP_LOW_WATER_MIN))
    if r["alloc"]["gc_in_step"]:
        out.append("an automatic collection ran inside step() in %d beats"
                   % r["alloc"]["gc_in_step"])
    return out


def check_heap_flat(r):
    h = r["heap"]
    drop = h["free_after_warmup_collect"] - h["free_after_end_collect"]
    if drop > HEAP_FLAT_TOLERANCE:
        return ["free heap after a collection fell by %d bytes over %d beats (allowed %d)"
                % (drop, r["beats"], HEAP_FLAT_TOLERANCE)]
    return []
