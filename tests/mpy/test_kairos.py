# Integer KAIROS Emissary (shared/kairos.py). Runs under pytest and tests/mpy_runner.py.
# Bit-exact checks against the documented integer definition (docs/DEVICE.md), coherence on
# known signals, window sliding, bounds, anomalies, and zero allocation on MicroPython.
import array
import math
import sys
import gc

from shared import kairos as K

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


def _sine(n, f, fs, amp=1000, mid=2048, phase=0.0):
    out = array.array("H", bytes(2 * n))
    for i in range(n):
        out[i] = int(mid + amp * math.sin(2 * math.pi * f * i / fs + phase) + 0.5)
    return out


def _noise(seed, n, top=4096):
    r = _Lcg(seed)
    out = array.array("H", bytes(2 * n))
    for i in range(n):
        out[i] = r.next(top)
    return out


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
    assert abs(K.quantized_omega(341783, 1000) - 2.0) < 2 * math.pi * 1000 / (1 << 30)
    assert K.phase_step_for(0.0, 1000) == 0
    assert K.lag_for(0.05, 1000) == 50 and K.lag_for(0.0, 1000) == 1
    assert K.sum_shift_for(12, 32) == 0 and K.sum_shift_for(12, 33) == 1
    assert K.sum_shift_for(15, 1) == 1
    for b in (8, 10, 12, 14, 15):
        for m in (1, 5, 32, 100, 255):
            s = K.sum_shift_for(b, m)
            assert m * _rnd(((1 << b) - 1) ** 2, s) < (1 << 29)
            if s:
                assert m * _rnd(((1 << b) - 1) ** 2, s - 1) >= (1 << 29)
    for bad in ((0, 4), (16, 4), (12, 0), (12, 256)):
        try:
            K.sum_shift_for(*bad)
        except ValueError:
            continue
        raise AssertionError(bad)


def _check_exact(xs, sizes, **kw):
    got = K.beat_partials(xs, sizes, **kw)
    em = K.Emissary(**dict(kw, max_samples_per_beat=max(sizes)))
    want = _ref_partials(xs, sizes, em.lag, em.phase_step, em.sum_shift)
    for g, w in zip(got, want):
        assert g[:5] == w, (g, w)
    return got


def test_partials_bit_exact_small_and_split_products():
    r = _Lcg(7)
    xs = [r.next(4096) for _ in range(600)]                # full-range noise: a >= 2^16 path
    sizes = [1 + r.next(9) for _ in range(120)]
    sizes = sizes[:]
    while sum(sizes) > len(xs):
        sizes.pop()
    _check_exact(xs, sizes, f_s=1000, omega=2.0, tau_bar=0.003)
    xs = _sine(400, 13, 1000, amp=40)                      # small products: direct path
    _check_exact(xs, [4] * 100, f_s=1000, omega=50.0, lag=7)


def test_partials_bit_exact_with_sum_shift():
    r = _Lcg(11)
    xs = [r.next(1 << 15) for _ in range(300)]             # 15-bit ADC, shift > 1
    got = _check_exact(xs, [30] * 10, f_s=2000, omega=-3.0, lag=3, adc_bits=15)
    em = K.Emissary(f_s=2000, adc_bits=15, max_samples_per_beat=30)
    assert em.sum_shift >= 2
    for g in got:
        for v in g[:4]:
            assert -(1 << 29) < v < (1 << 29)


def test_worst_case_bounds():
    # alternating 0 / full scale maximises every |d| and d*d_L: partials stay < 2^29
    for bits, m in ((12, 32), (12, 200), (15, 8), (10, 255)):
        top = (1 << bits) - 1
        xs = [top if i & 1 else 0 for i in range(3 * m)]
        out = K.beat_partials(xs, m, f_s=1000, omega=0.0, lag=2, adc_bits=bits,
                              window_s=max(1.0, 3.0 * m / 1000))
        for g in out:
            assert g[2] < (1 << 29) and g[3] < (1 << 29)
            assert -(1 << 29) < g[0] < (1 << 29) and -(1 << 29) < g[1] < (1 << 29)
        # d * d_L = top^2 at every sample once the delay line is full: C = EL / E0 over the
        # stream (d[0] = 0 and the first two d_L are 0): (3m - 3) / (3m - 1)
        want = (3.0 * m - 3) / (3.0 * m - 1)
        assert abs(out[-1][6] / 65536.0 - want) < 2e-4, (bits, m, out[-1][6], want)


def test_coherence_pure_sine_omega_zero():
    for f, tau in ((50, 0.003), (50, 0.010), (37, 0.002), (120, 0.001), (10, 0.02)):
        xs = _sine(2500, f, 1000, phase=0.3)
        got = _last_coherence(xs, 4, f_s=1000, omega=0.0, tau_bar=tau) / 65536.0
        want = math.cos(2 * math.pi * f * tau) ** 2
        assert abs(got - want) < 3e-3, (f, tau, got, want)


def test_coherence_white_noise_small():
    xs = _noise(3, 3000)
    c = _last_coherence(xs, 4, f_s=1000, omega=2.0, tau_bar=0.01)
    assert c < 0.02 * 65536, c


def test_coherence_zero_when_no_energy():
    out = K.beat_partials([1000] * 100, 4, f_s=1000, tau_bar=0.002)
    assert all(o[6] == 0 for o in out)
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


def test_window_totals_slide_exactly():
    r = _Lcg(9)
    xs = _noise(9, 1200)
    em = K.Emissary(f_s=100, omega=2.0, lag=3, max_samples_per_beat=8, window_s=0.5)
    parts = []
    i = 0
    while i < len(xs):
        sz = 1 + r.next(8)
        for _ in range(sz):
            if i < len(xs):
                em.add(xs[i])
                i += 1
        em.end_beat()
        parts.append((em.dT_re, em.dT_im, em.dE0, em.dEL, em.n))
        if len(parts) > 60:
            parts.pop(0)
        assert em.window_n <= 50
        nb = em.window_beats
        tot = [sum(p[j] for p in parts[-nb:]) for j in range(5)]
        assert list(em.window_totals()) == tot
        if nb < len(parts):   # the next older beat would not have fit
            assert tot[4] + parts[-nb - 1][4] > 50
        assert em.coherence == K.coherence_q16(tot[0], tot[1], tot[2], tot[3])


def test_overrun_and_clipping():
    em = K.Emissary(max_samples_per_beat=4)
    for i in range(4):
        assert em.add(100 + i)
    assert em.room() == 0
    assert em.add(5) is False and em.overruns == 1
    em.end_beat()
    assert em.n == 4 and em.room() == 4
    em.add(-3)
    em.add(99999)
    assert em.clipped == 2


def test_collapse_edge_and_threshold():
    xs = _sine(3000, 50, 1000)
    em = K.Emissary(f_s=1000, omega=0.0, lag=20, threshold=0.95)   # cos^2(2 pi) = 1: coherent
    edges = 0
    for i, x in enumerate(xs):
        em.add(x)
        if i % 4 == 3:
            em.end_beat()
            edges += 1 if em.collapse_edge else 0
    assert em.collapsed and edges == 1 and em.collapses == 1
    em.set_threshold(1.0)
    em.end_beat()
    assert not em.collapsed
    for bad in (-0.1, 1.5):
        try:
            em.set_threshold(bad)
        except ValueError:
            continue
        raise AssertionError(bad)


def test_anomalies_spike_counted_after_warmup():
    r = _Lcg(21)
    em = K.Emissary(f_s=1000, max_samples_per_beat=10)
    count = 0
    for i in range(2000):
        x = 2048 + r.next(41) - 20                 # +-20 counts of noise
        if i in (1500, 1700):
            x = 3500                               # two large spikes
        em.add(x)
        if i % 10 == 9:
            em.end_beat()
            if i >= em.warmup:
                count += em.anoms
    assert 2 <= count <= 8, count                  # the spikes, and few false positives
    assert em.window_anoms >= 2
    em.set_anomaly_z(100.0)                        # nothing is 100 sigma away
    em.add(4095)
    em.end_beat()
    assert em.anoms == 0
    em.set_anomaly_z(1.0)
    for bad in (0.5, 101.0):
        try:
            em.set_anomaly_z(bad)
        except ValueError:
            continue
        raise AssertionError(bad)


def test_bad_config_rejected():
    for kw in ({"f_s": 0}, {"adc_bits": 16}, {"lag": 0}, {"window_s": 0.001},
               {"anomaly_k": 0}, {"anomaly_z": 0.5}, {"capacity": 0}):
        try:
            K.Emissary(**kw)
        except ValueError:
            continue
        raise AssertionError(kw)


def test_max_samples_per_beat_fits_telemetry_u8():
    # TELEMETRY n_samples is a u8: the Emissary refuses more than 255 samples per beat
    K.Emissary(max_samples_per_beat=255, window_s=1.0)
    for bad in (0, 256, 1000):
        try:
            K.Emissary(max_samples_per_beat=bad, window_s=2.0)
        except ValueError as e:
            assert "1..255" in str(e), str(e)
            continue
        raise AssertionError(bad)


def test_zero_alloc_per_sample_and_beat():
    if not MPY:
        return
    xs = _noise(1, 512)
    em = K.Emissary(f_s=1000, omega=2.0, tau_bar=0.01, window_s=0.1)
    for x in xs:                                   # warm: window full, every path taken
        em.add(x)
        if em.room() == 28:
            em.end_beat()
    gc.collect()
    gc.disable()
    try:
        a0 = gc.mem_alloc()
        for j in range(4):
            for i in range(512):
                em.add(xs[i])
                if i & 3 == 3:
                    em.end_beat()
        a1 = gc.mem_alloc()
    finally:
        gc.enable()
    assert a1 - a0 == 0, a1 - a0


def test_capacity_bounds_window_and_reset_restarts_stream():
    xs = _noise(17, 200)
    em = K.Emissary(f_s=1000, max_samples_per_beat=4, capacity=10, lag=3)
    for i in range(200):
        em.add(xs[i])
        if i % 2 == 1:
            em.end_beat()
    assert em.window_beats == 10 and em.window_n == 20
    em.reset()
    assert em.window_beats == 0 and em.window_totals() == (0, 0, 0, 0, 0) and em.coherence == 0
    fresh = K.Emissary(f_s=1000, max_samples_per_beat=4, capacity=10, lag=3)
    for i in range(40):
        em.add(xs[i])
        fresh.add(xs[i])
        if i % 4 == 3:
            em.end_beat()
            fresh.end_beat()
            assert (em.dT_re, em.dT_im, em.dE0, em.dEL, em.coherence) == \
                (fresh.dT_re, fresh.dT_im, fresh.dE0, fresh.dEL, fresh.coherence)
