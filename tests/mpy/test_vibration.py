# Condition-monitoring features (shared/vibration.py). Runs under pytest and tests/mpy_runner.py.
# The kernels against the integer definition written plainly (Python ints, no limbs), the
# window of segments, stuck and exceedance detection, the decimated KAIROS stream, and zero
# allocation on MicroPython.
import array
import gc
import math
import sys

from shared import vibration as V

MPY = sys.implementation.name == "micropython"


class _Lcg:
    def __init__(self, seed):
        self.s = seed & 0x7FFFFFFF

    def next(self, n):
        self.s = (self.s * 48271) % 2147483647
        return self.s % n


class _Gauss:
    """A Gaussian-like vibration in counts (sum of four uniforms), generated on demand."""

    def __init__(self, seed, sd=10, mid=2048):
        self.r = _Lcg(seed)
        self.k = int(sd * 0.866 + 0.5)          # 4 uniforms on [0, 2k]: sd = 2k / sqrt(3)
        self.mid = mid

    def next(self):
        r = self.r
        k2 = 2 * self.k + 1
        return self.mid + r.next(k2) + r.next(k2) + r.next(k2) + r.next(k2) - 4 * self.k


def _log2_ref(v):
    # the device's log2 in Q8 (exact bit length + 8-bit mantissa, LEVEL_NONE for 0)
    return V.log2_q8(v)


class _Ref:
    """shared/vibration.py's definition with plain ints."""

    def __init__(self, decim, frac, cpu_q8, z=8, med_k=7, warmup=2048, seg=4, cap=60):
        self.decim = decim
        self.rcp = ((1 << (16 + frac)) + decim // 2) // decim
        self.xp = None
        self.med = 16
        self.warm = 0
        self.warmup = warmup
        self.z = z
        self.mk = med_k
        self.dacc = 0
        self.dcnt = 0
        self.dcm = 0
        self.cpu_q8 = cpu_q8
        self.seg = seg
        self.cap = cap
        self.closed = []          # closed segments: (s2, s4, peak, exc, n)
        self.open = [0, 0, 0, 0, 0]
        self.ob = 0
        self.kout = []

    def block(self, xs):
        s2 = s4 = pk = ex = n = nz = 0
        for x in xs:
            y = 0 if self.xp is None else x - self.xp
            self.xp = x
            ay = min(abs(y), 4095)
            if ay == 0:
                nz += 1
            pk = max(pk, ay)
            if self.warm >= self.warmup:
                if (ay << 4) > self.z * self.med:
                    ex += 1
            else:
                self.warm += 1
            if (ay << 4) > self.med:
                self.med += (self.med >> self.mk) + 1
            else:
                self.med = max(16, self.med - (self.med >> self.mk) - 1)
            s2 += ay * ay
            s4 += ay ** 4
            n += 1
            self.dacc += x - 2048
            self.dcnt += 1
            if self.dcnt == self.decim:
                v = (self.dacc * self.rcp + 32768) >> 16
                self.dcm += ((v << 8) - self.dcm) >> 5
                self.kout.append(v - (self.dcm >> 8))
                self.dacc = 0
                self.dcnt = 0
        return s2, s4, pk, ex, n, nz

    def end(self, beat, events=0):
        s2, s4, pk, ex, n, nz = beat
        o = self.open
        stuck = 1 if n > 0 and nz == n else 0
        o[0] += s2
        o[1] += s4
        o[2] = max(o[2], pk)
        o[3] += min(ex + events, 0x7FFF)
        o[4] += 0 if stuck else n             # a stuck beat adds no samples to the window
        self.ob += 1
        if self.ob >= self.seg:
            self.closed.append((o[0], o[1], min(o[2], 4095), o[3], o[4]))
            if len(self.closed) > self.cap:
                self.closed.pop(0)
            self.open = [0, 0, 0, 0, 0]
            self.ob = 0
        t2 = sum(c[0] for c in self.closed) + self.open[0]
        t4 = sum(c[1] for c in self.closed) + self.open[1]
        tn = sum(c[4] for c in self.closed) + self.open[4]
        tp = max([c[2] for c in self.closed] + [self.open[2]])
        ta = sum(c[3] for c in self.closed) + self.open[3]
        if t2 == 0:
            return V.LEVEL_NONE, 0, 0, ta, tn, stuck
        l2 = _log2_ref(t2)
        ln = _log2_ref(tn)
        lrms = (l2 - ln) >> 1
        return (lrms - self.cpu_q8, ln + _log2_ref(t4) - 2 * l2, _log2_ref(tp) - lrms, ta, tn,
                stuck)


def _run_both(sample, beats, beat, f_kw, events=None, keep=()):
    """Run the kernels and the plain definition over `beats` beats of `beat` samples given by
    sample(i); assert they agree every beat; return the outputs of the beats in `keep` (and
    the last), and the decimated streams' length and the largest |difference| between them."""
    f = V.Features(12000, **f_kw)
    cpu_q8 = f.mem[35]                        # log2(counts_per_unit) in Q8 (_LCPU)
    r = _Ref(f.decim, f.frac_bits, cpu_q8, seg=f.seg_beats, cap=f.capacity)
    buf = array.array("H", bytes(2 * beat))
    kept = {}
    nk = 0
    i = 0
    for b in range(beats):
        for j in range(beat):
            buf[j] = sample(i + j)
        k = f.block(buf, beat)
        r.kout = []
        rb = r.block(buf)
        assert len(r.kout) == k
        for j in range(k):
            assert f.mem[f.kout + j] - V.KBIAS == r.kout[j]
        nk += k
        ev = events[b] if events else 0
        f.end_beat(ev)
        want = r.end(rb, ev)
        got = (f.level, f.kurt, f.crest, f.anoms, f.window()[0], f.beat_stats()[3])
        assert got == want, (b, got, want)
        if b in keep or b == beats - 1:
            kept[b] = got
        i += beat
    return kept, nk


def test_log2_q8():
    assert V.log2_q8(1) == 0 and V.log2_q8(2) == 256 and V.log2_q8(0) == V.LEVEL_NONE
    for v in (3, 5, 1000, 123456, 1 << 40, (1 << 60) + 12345):
        got = V.log2_q8(v) / 256.0
        assert abs(got - math.log(v) / math.log(2)) < 1.0 / 128, (v, got)


def test_features_match_the_plain_definition():
    g = _Gauss(7, sd=12)
    kept, nk = _run_both(lambda i: g.next(), 300, 51, {"decim": 48, "max_samples_per_beat": 64})
    assert nk == 51 * 300 // 48


def test_gaussian_vibration_features():
    g = _Gauss(3, sd=12)
    kept, _ = _run_both(lambda i: g.next(), 300, 51, {"decim": 48, "max_samples_per_beat": 64})
    level, kurt, crest, anoms, n, stuck = kept[299]
    # y = x[n] - x[n-1] of a Gaussian: kurtosis near 3 (log2 3 = 1.585), no exceedance
    assert 1.35 < kurt / 256.0 < 1.75, kurt / 256.0
    assert anoms == 0 and stuck == 0
    # rms(y) = sqrt(2) * sd counts, in g at 128 counts per g
    want = math.log(math.sqrt(2) * 12 / 128.0) / math.log(2)
    assert abs(level / 256.0 - want) < 0.15, (level / 256.0, want)
    # the window holds 60 closed segments of 4 beats plus the open one (~1 s)
    assert 60 * 4 * 51 <= n <= (60 * 4 + 3) * 51


def test_impacts_raise_kurtosis_crest_and_exceedances():
    g = _Gauss(5, sd=8)
    ring = (600, -450, 300, -200, 120, -60)

    def sample(i):
        v = g.next()
        j = (i - 3000) % 75                    # an impact every 75 samples (160 Hz)
        if i >= 3000 and j < 6:
            v = max(0, min(4095, v + ring[j]))
        return v
    kept, _ = _run_both(sample, 300, 51, {"decim": 48, "max_samples_per_beat": 64})
    level, kurt, crest, anoms, n, stuck = kept[299]
    # healthy Gaussian: log2 kurtosis ~1.6, log2 crest ~2; impacts: far above both
    assert kurt / 256.0 > 3.0 and crest / 256.0 > 2.4 and anoms > 500, (kurt, crest, anoms)


def test_stuck_beats_and_events():
    g = _Gauss(9, sd=10)
    last = [0]

    def sample(i):
        if 51 * 30 <= i < 51 * 40:
            return last[0]                     # frozen input: every difference zero
        last[0] = g.next()
        return last[0]
    ev = [0] * 60
    ev[45] = 7
    keep = tuple(range(29, 47))
    kept, _ = _run_both(sample, 60, 51, {"decim": 48, "max_samples_per_beat": 64}, events=ev,
                        keep=keep)
    assert [kept[b][5] for b in range(30, 40)] == [1] * 10
    assert kept[29][5] == 0 and kept[41][5] == 0
    assert kept[45][3] - kept[44][3] == 7      # counted events join the window's anomalies


def test_dc_ramp_does_not_reach_the_kairos_stream():
    # a slow process trend (a ramp of 1500 counts over 1 s) leaves the high-passed stream near 0
    f = V.Features(12000, decim=48, max_samples_per_beat=64)
    buf = array.array("H", bytes(2 * 48))
    kd = []
    for b in range(750):                       # 3 s in blocks of one decimated sample
        for j in range(48):
            i = b * 48 + j
            buf[j] = 1000 + (1500 * min(i, 12000)) // 12000
        f.block(buf, 48)
        kd.append(f.mem[f.kout] - V.KBIAS)
        f.end_beat()
    assert max(abs(v) for v in kd[-250:]) <= 1      # settled after the ramp
    # during the ramp the tracker lags by slope * time constant: a constant, so KAIROS's
    # difference of the stream stays near 0 (a ramp no longer reads as a self-similar signal)
    assert max(abs(kd[i] - kd[i - 1]) for i in range(150, 250)) <= 2


def test_bad_configuration_is_refused():
    for kw in ({"adc_bits": 0}, {"decim": 0}, {"max_samples_per_beat": 0}, {"z": 1},
               {"med_k": 1}, {"counts_per_unit": 0}, {"seg_beats": 0}):
        try:
            V.Features(12000, **kw)
        except ValueError as e:
            assert str(e)
            continue
        raise AssertionError(kw)


def test_zero_alloc_per_beat():
    if not MPY:
        return
    f = V.Features(12000, decim=48, max_samples_per_beat=64)
    g = _Gauss(11, sd=10)
    xs = array.array("H", bytes(2 * 51))
    for i in range(51):
        xs[i] = g.next()
    for _ in range(10):
        V.block(f.mem, xs, 51)
        V.end_beat(f.mem, 0)
    gc.collect()
    a0 = gc.mem_alloc()
    for _ in range(50):
        V.block(f.mem, xs, 51)
        V.end_beat(f.mem, 1)
    assert gc.mem_alloc() - a0 == 0
