"""The beat's budget on the emulated RP2040 at the shipped defaults (board pico with its ADC
sampler, serial link on USB CDC, a device key): step() p99 within 40 % of the period, no
allocation in the steady beat, free heap after a collection >= 48 KB and flat over 5,000 beats,
and 2,000 beats run as on a board with lateness p99 < 10 % of the period and none skipped.
The numbers live in host/rp2040/budget.py; the measurement is host/rp2040/measure.py (the same
one `becomingone bench device` reports). Emulated cycles are deterministic, so asserting on them
is sound (no wall-clock timing here).

The budget checks that are not met yet are expected failures (budget.XFAIL,
strict: an unexpected pass fails the lane until the flag is flipped). Everything else here must
pass: the measurement itself is checked (the frames the chip sent decode and verify, the figures
are consistent)."""
import pytest

from becomingone.rp2040 import budget

BEATS = 300


@pytest.fixture(scope="module")
def m(chip):
    from becomingone.rp2040.measure import measure
    return measure(board="pico", beats=BEATS, key=True, realtime=budget.REALTIME_BEATS)


def test_the_measurement_is_real(m):
    """The beat ran on the chip as deployed: HELLO first, a signed TELEMETRY record for every beat
    (5 per frame: board pico's batch_default), the
    proof-of-work rate and the heap figures measured there."""
    fr = m["frames"]
    assert fr["first"] == "HELLO", fr
    assert fr["bad"] == 0 and fr["cobs_errors"] == 0, fr
    assert fr["signed"] and fr["records"] >= BEATS, fr
    rep = m["report"]
    assert rep["board"] == "pico" and rep["beats"] >= BEATS
    assert m["period_us"] == 4210
    s = m["step_us"]
    assert 0 < s["min"] <= s["p50"] <= s["p99"] <= s["max"], s
    assert m["beats"] >= BEATS * 3 // 4
    assert m["pow"]["hashes_per_s"] > 100, m["pow"]
    h = m["heap"]
    assert 200 * 1024 < h["total"] < 264 * 1024, h          # the Pico's GC heap, not the host's
    assert 0 < h["low_water"] <= h["free_after_warmup_collect"] <= h["free_built"], h
    assert m["alloc"]["beats"] > 0
    assert m["firmware"]["sha256"]


def test_bench_device_rows_from_the_same_measurement(m):
    """`becomingone bench device` reports these figures (host/rp2040/bench.py)."""
    from becomingone.rp2040.bench import rows_from
    rows = {r["name"]: r for r in rows_from(m)}
    assert sorted(rows) == ["rp2040-alloc", "rp2040-heap", "rp2040-pow", "rp2040-realtime",
                            "rp2040-step"]
    rt = rows["rp2040-realtime"]
    assert rt["lateness_p99_us"] == m["realtime"]["lateness_us"]["p99"]
    assert rt["skipped_beats"] == m["realtime"]["skipped_beats"]
    assert rt["within_budget"] == (not budget.check_realtime(m))
    st = rows["rp2040-step"]
    assert st["runtime"] == "rp2040" and st["step_p99_us"] == m["step_us"]["p99"]
    assert st["p99_of_period"] == round(m["step_us"]["p99"] / 4210.0, 3)
    assert st["within_budget"] == (not budget.check_step(m))
    assert rows["rp2040-alloc"]["alloc_bytes_max"] == m["alloc"]["bytes_max"]
    assert rows["rp2040-heap"]["low_water"] == m["heap"]["low_water"]
    pw = rows["rp2040-pow"]
    assert pw["hashes_per_s"] == m["pow"]["hashes_per_s"]
    from shared.protocol_codes import POW_BITS_DEFAULT
    assert abs(pw["witness_s"] - (1 << POW_BITS_DEFAULT) / pw["hashes_per_s"]) < 0.01


@pytest.mark.xfail(budget.XFAIL["step"], strict=True, reason=budget.XFAIL_REASON)
def test_step_p99_within_40_percent_of_the_period(m):
    assert budget.check_step(m) == [], budget.check_step(m)


def test_the_realtime_run_is_real(m):
    """The real-time run: the beats ran (the beat's own count), its lateness histogram was
    reset for them, and the figures are consistent."""
    rt = m["realtime"]
    assert rt["beats"] == budget.REALTIME_BEATS, rt
    lt = rt["lateness_us"]
    assert 0 <= lt["p50"] <= lt["p90"] <= lt["p99"] <= lt["max"] < m["period_us"], rt
    assert rt["skipped_beats"] >= 0


@pytest.mark.xfail(budget.XFAIL["realtime"], strict=True, reason=budget.XFAIL_REASON)
def test_realtime_lateness_p99_under_10_percent_and_no_skipped_beat(m):
    """2,000 beats as on a board (idle() + step(), nothing measured in between): lateness p99
    < 10 % of the period and no beat skipped."""
    assert budget.check_realtime(m) == [], budget.check_realtime(m)


@pytest.mark.xfail(budget.XFAIL["alloc"], strict=True, reason=budget.XFAIL_REASON)
def test_no_allocation_in_the_steady_beat_with_a_device_key(m):
    assert budget.check_alloc(m) == [], budget.check_alloc(m)


@pytest.mark.xfail(budget.XFAIL["heap"], strict=True, reason=budget.XFAIL_REASON)
def test_heap_after_collection_at_least_48k_low_water_and_flat_over_the_run(m):
    fails = (budget.check_heap_level(m) + budget.check_heap_flat(m)
             + budget.check_heap_low_water(m))
    assert fails == [], fails


@pytest.mark.xfail(budget.XFAIL["step"], strict=True, reason=budget.XFAIL_REASON)
def test_heap_flat_over_5000_beats(m):
    # 5,000 beats take 21 emulated seconds at the target; at today's step() they would take
    # minutes of wall time: the long run only starts once step() is within its budget
    pre = budget.check_step(m)
    assert pre == [], "not run: %d beats need step() within budget first (%s)" % (
        budget.HEAP_FLAT_BEATS, pre)
    from becomingone.rp2040.measure import measure
    long = measure(board="pico", beats=budget.HEAP_FLAT_BEATS, key=True, heap_samples=25,
                   alloc_beats=20, pow_hashes=0)
    fails = (budget.check_heap_level(long) + budget.check_heap_flat(long)
             + budget.check_heap_low_water(long))
    assert fails == [], fails
