# Tick wrap-around (2^30), device time (era, off) and the non-drifting deadline schedule.
from device.clock import MASK, HALF, tdiff, tadd, VirtualClock, DeviceTime, Deadline, Clock


def test_tdiff_and_tadd_cross_the_wrap():
    a = MASK - 10
    b = tadd(a, 25)
    assert b == 14
    assert tdiff(b, a) == 25
    assert tdiff(a, b) == -25
    assert tadd(MASK, 1) == 0
    assert tadd(0, MASK) == MASK
    assert tdiff(0, HALF) == -HALF


def test_device_time_era_increments_at_the_wrap():
    c = VirtualClock(start=MASK - 1000)
    dt = DeviceTime(c)
    c.advance(999)
    dt.update()
    assert (dt.era, dt.off) == (0, 999)
    c.advance(1)
    dt.update()
    assert (dt.era, dt.off) == (0, 1000)
    c.advance(5000)            # crosses the tick wrap
    t = dt.update()
    assert t == 4999
    assert (dt.era, dt.off) == (0, 6000)
    # push off across 2^30 as well
    for _ in range(4):
        c.advance(HALF // 2)
        dt.update()
    assert dt.era == 1 and dt.off == 6000 - 0 + 4 * (HALF // 2) - MASK - 1
    assert dt.off < MASK and dt.off >= 0


def test_device_time_values_stay_small_ints():
    c = VirtualClock(start=MASK - 3)
    dt = DeviceTime(c)
    for _ in range(20):
        c.advance(HALF - 1)
        dt.update()
        assert 0 <= dt.off <= MASK
    assert dt.era == 9


def test_deadline_never_drifts_with_fractional_period():
    # T_Lambda = 0.004 / 0.95 s = 4210.526... us; Q16 period
    q16 = 275941540  # round(4210.526315789 * 65536)
    c = VirtualClock(start=MASK - 50000)
    d = Deadline(c.ticks(), q16)
    start = d.at
    n = 100000
    for _ in range(n):
        d.advance()
    # total elapsed on the circle vs the exact n * period
    total = (d.at - start) & MASK
    exact = n * q16 // 65536
    assert abs(total - exact) <= 1, (total, exact)


def test_deadline_remaining_and_resync_across_wrap():
    c = VirtualClock(start=MASK - 100)
    d = Deadline(c.ticks(), 1000 << 16)
    d.advance()
    assert d.remaining(c.ticks()) == 1000
    c.sleep_us(1500)
    assert d.remaining(c.ticks()) == -500
    c.sleep_us(10000)
    skipped = d.resync(c.ticks())
    assert skipped == 10          # the current beat is now less than one period late
    assert -1000 < d.remaining(c.ticks()) <= 0


def test_deadline_rejects_bad_period():
    for bad in (0, 100, (1 << 29) << 16):
        try:
            Deadline(0, bad)
        except ValueError as e:
            assert "period" in str(e)
        else:
            assert False, bad


def test_virtual_clock_rejects_out_of_range_start():
    try:
        VirtualClock(start=MASK + 1)
    except ValueError:
        pass
    else:
        assert False


def test_real_clock_is_monotonic_on_short_scale():
    c = Clock()
    a = c.ticks()
    c.sleep_us(2000)
    b = c.ticks()
    assert 1500 <= tdiff(b, a) < 500000


def test_lateness_histogram_percentiles():
    from device.lateness import LatenessHistogram
    h = LatenessHistogram()
    assert h.percentile(50) == 0
    for i in range(100):
        h.add(i * 10)          # 0, 10, ..., 990
    assert h.count == 100 and h.max_us == 990
    assert h.percentile(50) == 499
    assert h.percentile(99) == 990          # bucket 980..999, capped at the exact max
    assert h.percentile(100) == 990
    h.add(100000)
    h.add(-5)
    assert h.max_us == 100000
    assert h.percentile(100) == 100000
    h.add(10 ** 8)            # overflow bucket
    assert h.percentile(100) == 10 ** 8
    h.reset()
    assert h.count == 0 and h.percentile(99) == 0
