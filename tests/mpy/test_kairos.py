# Integer KAIROS Emissary (shared/kairos.py). Runs under pytest and tests/mpy_runner.py.
# Bit-exact checks against the documented integer definition (docs/DEVICE.md), coherence on
# known signals, the window of segments, bounds, and zero allocation on MicroPython. The
# Emissary takes the decimated, centred KAIROS stream (signed samples), shared/vibration.py
# makes it from the sensor.
import array
import math
import sys
import gc

from shared import kairos as K
from shared import kairos_host as KH

MPY = sys.implementation.name == "micropython"


def _rnd(v, k):
    # round half away from zero of v / 2^k (test-side bigints allowed)
    if k == 0:
        return v
    h = 1 << (k - 1)
    return (v + h) >> k if v >= 0 else -((-v + h) >> k)


def _ref_partials(xs, sizes, lag, step, shift):
    """The integer definition of DEVICE.md, written plainly (no limbs, no splits)."""
    ds = []
    out = []
    n = 0
    for sz in sizes:
        re = im = e0 = el = 0
        for _ in range(sz):
            x = xs[n]
            d = 0 if n == 0 else x - xs[n - 1]
            dl = ds[n - lag] if n >= lag else 0
            ds.append(d)
            c, s = K.cos_sin_q14((n * step) & K.PHASE_MASK)
            p = d * dl
            re += _rnd(p * c, 14 + shift)
            im += _rnd(p * s, 14 + shift)
            e0 += _rnd(d * d, shift)
            el += _rnd(dl * dl, shift)
            n += 1
        out.append((re, im, e0, el, sz))
    return out


class _Lcg:
    def __init__(self, seed):
        self.s = seed & 0x7FFFFFFF

    def next(self, n):
        # Park-Miller style LCG, small enough for 30-bit ints: s = s * 48271 mod (2^31 - 1)
        self.s = (self.s * 48271) % 2147483647
        return self.s % n


def _sine(n, f, fs, amp=1000, phase=0.0):
    # array('i'): one 4-byte block, not a list of boxed floats' ints (the 192K heap fragments)
    xs = array.array("i", bytes(4 * n))
    for i in range(n):
        xs[i] = int(amp * math.sin(2 * math.pi * f * i / fs + phase) + 0.5)
    return xs


def _noise(seed, n, top=4096):
    r = _Lcg(seed)
    xs = array.array("i", bytes(4 * n))
    for i in range(n):
        xs[i] = r.next(top) - top // 2
    return xs


def _last_coherence(xs, beat, **kw):
    em = K.Emissary(**kw)
    for i in range(len(xs)):
        em.add(xs[i])
        if i % beat == beat - 1:
            em.end_beat()
    em.end_beat()
    return em.coherence


def test_table_and_phasor():
    t = K.COS_Q14
    assert len(t) == 1025
    assert t[0] == 16384 and t[256] == 0 and t[512] == -16384 and t[768] == 0 and t[1024] == 16384
    for i in range(1024):
        assert t[i] == t[(1024 - i) & 1023]          # cos is even
    worst = 0.0
    for k in range(0, 1 << 30, 7919 * 1021):
        c, s = K.cos_sin_q14(k)
        a = 2 * math.pi * k / (1 << 30)
        worst = max(worst, abs(c - 16384 * math.cos(a)), abs(s - 16384 * math.sin(a)))
    assert worst < 1.0, worst


def test_helpers():
    assert K.phase_step_for(2.0, 1000) == 341783
    assert abs(KH.quantized_omega(341783, 1000) - 2.0) < 2 * math.pi * 1000 / (1 << 30)
    assert K.phase_step_for(0.0, 1000) == 0
    assert K.lag_for(0.05, 1000) == 50 and K.lag_for(0.0, 1000) == 1
    assert K.sum_shift_for(12, 31) == 0 and K.sum_shift_for(12, 32) == 1
    assert K.sum_shift_for(13, 4) == 0 and K.sum_shift_for(15, 1) == 2
    for b in (8, 10, 12, 13, 14, 15):
        for m in (1, 5, 16, 32, 100, 255):
            s = K.sum_shift_for(b, m)
            assert m * ((1 << (2 * b)) >> s) < (1 << 29)
            if s:
                assert m * ((1 << (2 * b)) >> (s - 1)) >= (1 << 29)
    for bad in ((0, 4), (16, 4), (12, 0), (12, 256)):
        try:
            K.sum_shift_for(*bad)
        except ValueError:
            continue
        raise AssertionError(bad)


def _check_exact(xs, sizes, **kw):
    got = KH.beat_partials(xs, sizes, **kw)
    em = K.Emissary(**dict(kw, max_samples_per_beat=max(sizes)))
    want = _ref_partials(xs, sizes, em.lag, em.phase_step, em.sum_shift)
    for g, w in zip(got, want):
        assert g[:5] == w, (g, w)
    return got


def test_partials_bit_exact_small_and_split_products():
    r = _Lcg(7)
    xs = [r.next(8191) - 4095 for _ in range(600)]          # full range: the a >= 2^16 path
    sizes = [1 + r.next(4) for _ in range(200)]
    while sum(sizes) > len(xs):
        sizes.pop()
    _check_exact(xs, sizes, rate_hz=1000, omega=2.0, lag=3)
    xs = _sine(400, 13, 1000, amp=40)                      # small products: direct path
    _check_exact(xs, [4] * 100, rate_hz=1000, omega=50.0, lag=7)
    _check_exact(xs, [2] * 200, rate_hz=250, omega=0.0, lag=9)   # the default: omega 0


def test_partials_bit_exact_with_sum_shift():
    r = _Lcg(11)
    xs = [r.next(1 << 15) - (1 << 14) for _ in range(300)]   # 15-bit stream: shift > 1
    got = _check_exact(xs, [4] * 75, rate_hz=2000, omega=-3.0, lag=3, bits=15)
    em = K.Emissary(rate_hz=2000, bits=15, max_samples_per_beat=4)
    assert em.sum_shift >= 2
    for g in got:
        for v in g[:4]:
            assert -(1 << 29) < v < (1 << 29)


def test_worst_case_bounds():
    # alternating -full / +full maximises every |d| and d*d_L: partials and segment sums stay
    # < 2^29 (the window keeps segments of seg_beats beats)
    for bits, m in ((13, 4), (13, 8), (15, 2), (10, 16)):
        top = (1 << (bits - 1)) - 1
        xs = [top if i & 1 else -top for i in range(40 * m)]
        em = K.Emissary(rate_hz=250, omega=0.0, lag=2, bits=bits, max_samples_per_beat=m)
        for b in range(40):
            for i in range(m):
                em.add(xs[b * m + i])
            em.end_beat()
            p = em.partials()
            assert p[2] * em.seg_beats < (1 << 29) and p[3] * em.seg_beats < (1 << 29)
            assert -(1 << 29) < p[0] * em.seg_beats < (1 << 29)
        assert em.coherence > 0.95 * 65536


def test_coherence_pure_sine_omega_zero():
    for f, lag in ((5, 50), (5, 25), (20, 3), (30, 25), (7, 10)):
        xs = _sine(1500, f, 250, phase=0.3)
        got = _last_coherence(xs, 1, rate_hz=250, omega=0.0, lag=lag,
                              max_samples_per_beat=2) / 65536.0
        want = math.cos(2 * math.pi * f * lag / 250.0) ** 2
        assert abs(got - want) < 1e-2, (f, lag, got, want)   # a 1 s window: edge effects


def test_coherence_white_noise_small():
    xs = _noise(3, 3000)
    c = _last_coherence(xs, 1, rate_hz=250, omega=0.0, lag=25, max_samples_per_beat=2)
    assert c < 0.05 * 65536, c


def test_coherence_zero_when_no_energy():
    out = KH.beat_partials([100] * 100, 1, rate_hz=250, lag=2)
    assert all(o[5] == 0 for o in out)
    assert K.coherence_q16(0, 0, 0, 5) == 0 and K.coherence_q16(3, 0, 9, 0) == 0


def test_coherence_q16_matches_float_ratio():
    r = _Lcg(5)
    for _ in range(300):
        e0 = r.next(1 << 30) * (1 << r.next(12)) + 1
        el = r.next(1 << 30) * (1 << r.next(12)) + 1
        bound = math.sqrt(e0 * el)
        tr = int(bound * (r.next(2001) - 1000) / 1000.0 * 0.7071)
        ti = int(bound * (r.next(2001) - 1000) / 1000.0 * 0.7071)
        want = (tr * tr + ti * ti) / (e0 * el)
        got = K.coherence_q16(tr, ti, e0, el) / 65536.0
        assert abs(got - min(want, 65535 / 65536.0)) < 4e-4 + 4e-4 * want, (tr, ti, e0, el, got, want)


def test_window_of_segments_exactly():
    r = _Lcg(9)
    xs = _noise(9, 1500, top=2000)
    em = K.Emissary(rate_hz=250, omega=2.0, lag=3, max_samples_per_beat=3, window_s=0.2,
                    beats_per_s=100.0, seg_beats=4)
    cap = em.capacity                      # ceil(0.2 * 100 / 4) = 5 closed segments
    assert cap == 5
    beats = []
    nb = 0
    i = 0
    while i < len(xs):
        sz = r.next(4)                      # 0..3 samples a beat, as a real beat has
        for _ in range(sz):
            if i < len(xs):
                em.add(xs[i])
                i += 1
        em.end_beat()
        beats.append(em.partials())
        nb += 1
        if len(beats) > cap * 4 + 4:
            beats.pop(0)
        open_n = nb % 4
        in_window = beats[-(cap * 4 + open_n):]
        tot = [sum(p[j] for p in in_window) for j in range(5)]
        assert list(em.window_totals()) == tot
        assert em.coherence == K.coherence_q16(tot[0], tot[1], tot[2], tot[3])


def test_overrun_and_clipping():
    em = K.Emissary(max_samples_per_beat=4, bits=13)
    for i in range(4):
        assert em.add(100 + i)
    assert em.add(5) is False and em.overruns == 1      # the beat is full
    em.end_beat()
    assert em.partials()[4] == 4 and em.add(6)          # a new beat has room again
    em.add(-99999)
    em.add(99999)
    assert em.counters()["clipped"] == 2


def test_collapse_edge_and_threshold():
    xs = _sine(3000, 5, 250)
    em = K.Emissary(rate_hz=250, omega=0.0, lag=50, threshold=0.95, max_samples_per_beat=2)
    edges = 0
    for i, x in enumerate(xs):
        em.add(x)
        em.end_beat()
        edges += 1 if em.counters()["collapse_edge"] else 0
    assert em.collapsed and edges == 1 and em.counters()["collapses"] == 1
    assert em.mem[K.CSTATE] & 1
    em.set_threshold(1.0)
    em.end_beat()
    assert not em.collapsed
    for bad in (-0.1, 1.5):
        try:
            em.set_threshold(bad)
        except ValueError:
            continue
        raise AssertionError(bad)


def test_set_lag_restarts_the_stream():
    em = K.Emissary(rate_hz=250, lag=25, max_samples_per_beat=2)
    for x in _sine(600, 5, 250):
        em.add(x)
        em.end_beat()
    assert em.counters()["window_n"] > 0
    em.set_lag(50)
    assert em.lag == 50 and em.counters()["window_n"] == 0 and em.coherence == 0
    for bad in (0, em.max_lag + 1):
        try:
            em.set_lag(bad)
        except ValueError:
            continue
        raise AssertionError(bad)


def test_history_ring_and_freeze():
    em = K.Emissary(rate_hz=250, lag=5, max_samples_per_beat=2, hist_len=16)
    for i in range(20):
        em.add(i * i)
        em.end_beat()
    buf, base, start, n, cnt = em.history_view()
    assert n == 16 and cnt == 16
    got = [buf[base + (start + k) % n] - K.KBIAS for k in range(n)]
    assert got == [2 * j - 1 for j in range(4, 20)]       # d = i^2 - (i-1)^2, the last 16
    em.freeze_history(True)
    em.add(1000)
    em.end_beat()
    assert em.history_view()[2] == start                  # frozen: nothing recorded
    em.freeze_history(False)


def test_bad_config_rejected():
    for kw in ({"rate_hz": 0}, {"bits": 16}, {"lag": 0}, {"window_s": 0.001},
               {"seg_beats": 0}, {"hysteresis": 0.6}, {"lag": 300, "max_lag": 100}):
        try:
            K.Emissary(**kw)
        except ValueError:
            continue
        raise AssertionError(kw)


def test_max_samples_per_beat_fits_telemetry_u8():
    # TELEMETRY n_samples is a u8: the Emissary refuses more than 255 samples per beat
    K.Emissary(max_samples_per_beat=63, window_s=1.0)
    for bad in (0, 256, 1000):
        try:
            K.Emissary(max_samples_per_beat=bad, window_s=5.0)
        except ValueError as e:
            assert "1..255" in str(e), str(e)
            continue
        raise AssertionError(bad)


def test_zero_alloc_per_sample_and_beat():
    if not MPY:
        return
    xs = _noise(1, 512)
    src = array.array("i", bytes(4 * 4))
    em = K.Emissary(rate_hz=250, omega=2.0, lag=7, max_samples_per_beat=4)
    for x in xs:                                   # warm: window full, every path taken
        em.add(x)
        em.end_beat()
    gc.collect()
    gc.disable()
    try:
        a0 = gc.mem_alloc()
        for j in range(4):
            for i in range(0, 512, 2):
                src[0] = xs[i] + K.KBIAS
                src[1] = xs[i + 1] + K.KBIAS
                K.add_block(em.mem, em.dl, src, 0, 2)
                K.end_beat(em.mem, em.ring)
        a1 = gc.mem_alloc()
    finally:
        gc.enable()
    assert a1 - a0 == 0, a1 - a0


def test_reset_restarts_stream():
    xs = _noise(17, 200, top=1000)
    em = K.Emissary(rate_hz=250, max_samples_per_beat=4, lag=3)
    for i in range(200):
        em.add(xs[i])
        if i % 2 == 1:
            em.end_beat()
    assert em.counters()["window_n"] == 200
    em.reset()
    assert em.window_totals() == (0, 0, 0, 0, 0) and em.coherence == 0
    fresh = K.Emissary(rate_hz=250, max_samples_per_beat=4, lag=3)
    for i in range(40):
        em.add(xs[i])
        fresh.add(xs[i])
        if i % 4 == 3:
            em.end_beat()
            fresh.end_beat()
            assert em.partials() + (em.coherence,) == fresh.partials() + (fresh.coherence,)
