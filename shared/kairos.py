"""KAIROS temporal resonance in integer fixed point (SPEC 4.2): the Emissary's streaming sums.

Runs unmodified on MicroPython and CPython. The per-sample and per-beat paths allocate nothing
on MicroPython and keep every intermediate integer below 2^30 in magnitude (Pico small ints).
docs/DEVICE.md "KAIROS integer definition" is the byte-exact reference a host must reproduce.

Public API
----------
Emissary(f_s=1000, omega=2.0, tau_bar=0.05, adc_bits=12, max_samples_per_beat=32,
         window_s=1.0, capacity=256, threshold=0.95, lag=None, phase_step=None,
         anomaly_z=3.0, anomaly_k=6, warmup=None)
        window = the most recent beats holding at most window_s * f_s samples and at most
        `capacity` beats (ring of 6 int32 per beat: size it ceil(window_s / period) + margin)
    em.add(x) -> bool          one ADC sample (counts, 0 <= x < 2^adc_bits; out-of-range values
                               are clamped and counted in em.clipped). O(1), 0 alloc.
                               False (sample NOT consumed, em.overruns += 1) when the current beat
                               already holds max_samples_per_beat samples: call end_beat() first.
    em.room() -> int           samples the current beat can still take
    em.end_beat() -> int       close the beat: publish the partials below, slide the window,
                               update the coherence; returns em.coherence (Q16). 0 alloc.
    after end_beat():
      em.dT_re, em.dT_im       i32 wire fields (|v| < 2^29): sums of rnd(p*cos), rnd(p*sin)
      em.dE0, em.dEL           u32 wire fields (0 <= v < 2^29): sums of rnd(d^2), rnd(d_L^2)
      em.n                     samples in the beat
      em.anoms                 anomalous samples in the beat (|z| > anomaly_z, see DEVICE.md)
      em.coherence             C = |T|^2/(E0*EL) over the window, Q16 (0..65535); 0 if E0*EL = 0
      em.collapsed             C >= threshold (bool); em.collapse_edge True on the rising beat
      em.collapses             rising edges so far
      em.window_anoms, em.window_n, em.window_beats
    em.lag, em.phase_step, em.sum_shift, em.adc_bits   (values for HELLO)
    em.set_threshold(c: float) (threshold_q16), em.set_anomaly_z(z: float) (1..100)
    em.reset()                 new stream: phase 0, delay line zero, window empty, anomaly
                               statistics restarted
    em.window_totals() -> (T_re, T_im, E0, EL, n)   Python ints (bigints on CPython). Test/debug
                          only: allocates.

Helpers (config time / host; floats allowed)
    phase_step_for(omega, f_s) -> int          round(omega / (2 pi f_s) * 2^30) mod 2^30
    quantized_omega(phase_step, f_s) -> float  the omega the device really uses (float64 on host)
    lag_for(tau_bar, f_s) -> int               max(1, round(tau_bar * f_s))
    sum_shift_for(adc_bits, max_samples_per_beat) -> int
    cos_sin_q14(theta) -> (c, s)               the Q14 phasor of a 30-bit phase (as add() does)
    COS_Q14                                    array('h'), 1025 entries, cos table of one turn
    coherence_q16(t_re, t_im, e0, el) -> int   the integer coherence of four Python ints
        (these three live in shared/qmath.py and are re-exported here)
    beat_partials(samples, beat_sizes, **emissary_kwargs) -> list of
        (dT_re, dT_im, dE0, dEL, n, anoms, coherence)   same code path as the device
"""
import array

from shared.qmath import COS_Q14, cos_sin_q14, coherence_q16, coherence_limbs  # noqa: F401

from shared.compat import micropython, const  # noqa: F401

PHASE_MASK = const(0x3FFFFFFF)   # the phase accumulator is 30 bits: 2^30 = one turn
QUARTER = const(0x10000000)      # pi/2 in phase units
FRAC_MASK = const(0xFFFFF)       # low 20 bits of the phase: interpolation fraction
FRAC_HALF = const(0x80000)
LIMB_MASK = const(0xFFFFFF)      # window totals are hi * 2^24 + lo with 0 <= lo < 2^24
BEAT_LIMIT = const(0x20000000)   # 2^29: every per-beat partial stays below this magnitude
C_MAX = const(65535)


def phase_step_for(omega, f_s):
    """Phase increment per sample: round(omega / (2 pi f_s) * 2^30) mod 2^30 (negative omega
    wraps, i.e. is the same as 2 pi f_s - |omega|)."""
    import math
    if f_s <= 0:
        raise ValueError("f_s must be > 0 Hz, got %r" % (f_s,))
    return int(round(omega / (2.0 * math.pi * f_s) * 1073741824.0)) & PHASE_MASK


def quantized_omega(phase_step, f_s):
    """The angular frequency (rad/s) the device actually uses for a phase_step."""
    import math
    return phase_step * 2.0 * math.pi * f_s / 1073741824.0


def lag_for(tau_bar, f_s):
    """L = max(1, round(tau_bar * f_s)) samples (Python round: half to even)."""
    if tau_bar < 0:
        raise ValueError("tau_bar must be >= 0 s, got %r" % (tau_bar,))
    return max(1, int(round(tau_bar * f_s)))


def _rnd(v, k):
    # round half away from zero of v / 2^k (k >= 0)
    if k == 0:
        return v
    if v >= 0:
        return (v + (1 << (k - 1))) >> k
    return -((-v + (1 << (k - 1))) >> k)


def sum_shift_for(adc_bits, max_samples_per_beat):
    """Smallest S >= 0 such that max_samples_per_beat * rnd((2^b - 1)^2 / 2^S) < 2^29, so every
    per-beat partial fits an i32/u32 wire field and a MicroPython small int.
    max_samples_per_beat must be 1..255: TELEMETRY carries a count in a u8 (PROTOCOL.md 2.2)."""
    if not 1 <= adc_bits <= 15:
        raise ValueError("adc_bits must be in 1..15 (d*d_L must stay < 2^30), got %r" % (adc_bits,))
    if not 1 <= max_samples_per_beat <= 255:
        raise ValueError("max_samples_per_beat must be 1..255 (TELEMETRY n_samples is a u8), "
                         "got %r" % (max_samples_per_beat,))
    big = ((1 << adc_bits) - 1) ** 2
    s = 0
    while max_samples_per_beat * _rnd(big, s) >= BEAT_LIMIT:
        s += 1
    return s


def _zeros(n):
    # array('i') of n zeros (int32 on every port) without a temporary list
    return array.array("i", bytes(4 * n))


class Emissary:
    def __init__(self, f_s=1000, omega=2.0, tau_bar=0.05, adc_bits=12, max_samples_per_beat=32,
                 window_s=1.0, capacity=256, threshold=0.95, lag=None, phase_step=None,
                 anomaly_z=3.0, anomaly_k=6, warmup=None):
        if f_s <= 0:
            raise ValueError("f_s must be > 0 Hz, got %r" % (f_s,))
        self.f_s = f_s
        self.adc_bits = adc_bits
        # sum_shift_for also bounds max_samples_per_beat to 1..255 (a ValueError otherwise)
        self.sum_shift = sum_shift_for(adc_bits, max_samples_per_beat)
        self.max_samples = max_samples_per_beat
        self.lag = lag_for(tau_bar, f_s) if lag is None else int(lag)
        if self.lag < 1:
            raise ValueError("lag must be >= 1 sample, got %r" % (lag,))
        self.phase_step = (phase_step_for(omega, f_s) if phase_step is None
                           else int(phase_step) & PHASE_MASK)
        self.window_samples = max(1, int(round(window_s * f_s)))
        if self.window_samples < max_samples_per_beat:
            raise ValueError("window_s * f_s (%d samples) must be >= max_samples_per_beat (%d)"
                             % (self.window_samples, max_samples_per_beat))
        if capacity is None:
            capacity = 256
        if capacity < 1:
            raise ValueError("capacity must be >= 1 beat, got %r" % (capacity,))
        self.capacity = capacity
        if not 1 <= anomaly_k <= 12:
            raise ValueError("anomaly_k must be in 1..12 (EWMA alpha = 2^-k), got %r" % (anomaly_k,))
        self.set_anomaly_z(anomaly_z)
        self._ak = anomaly_k
        sh = 2 * adc_bits + anomaly_k - 30
        self._ag = sh if sh > 0 else 0                     # pre-shift of squared deviations
        self._vfloor = (1 << anomaly_k) >> self._ag        # 1 count^2 in variance units
        if self._vfloor < 1:
            self._vfloor = 1
        self.warmup = (4 << anomaly_k) if warmup is None else int(warmup)
        self._sh = 14 + self.sum_shift
        self._half = 1 << (self._sh - 1)
        self._eh = (1 << (self.sum_shift - 1)) if self.sum_shift else 0
        self._xmax = (1 << adc_bits) - 1
        # direct product when a*|c| + half < 2^30: a < 2^16 with S = 0 (half = 2^13), else a < 2^15
        self._fast = 0x10000 if self.sum_shift == 0 else 0x8000
        self._dl = _zeros(self.lag)
        n = capacity
        self._w_re = _zeros(n)
        self._w_im = _zeros(n)
        self._w_e0 = _zeros(n)
        self._w_el = _zeros(n)
        self._w_n = _zeros(n)
        self._w_an = _zeros(n)
        self.overruns = 0
        self.clipped = 0
        self.collapses = 0
        self.set_threshold(threshold)
        self.reset()

    def set_anomaly_z(self, z):
        """|z| threshold of the anomaly test (CONFIG anomaly_z), 1 <= z <= 100."""
        if not 1.0 <= z <= 100.0:
            raise ValueError("anomaly_z must be in [1, 100], got %r" % (z,))
        self.anomaly_z = z
        self._zq = int(round(z * z * 16))   # z^2 in Q4

    def set_threshold(self, c):
        if not 0.0 <= c <= 1.0:
            raise ValueError("coherence threshold I_c must be in [0, 1], got %r" % (c,))
        self.threshold_q16 = min(C_MAX, int(round(c * 65536)))

    def reset(self):
        """Start a new stream (new boot id): phase 0, zero delay line, empty window."""
        dl = self._dl
        for i in range(len(dl)):
            dl[i] = 0
        self._di = 0
        self._prev = -1
        self._theta = 0
        self._are = 0
        self._aim = 0
        self._ae0 = 0
        self._ael = 0
        self._n = 0
        self._an = 0
        self._mean = 0
        self._var = 0
        self._seen = 0
        self.dT_re = 0
        self.dT_im = 0
        self.dE0 = 0
        self.dEL = 0
        self.n = 0
        self.anoms = 0
        self._wh = 0          # index of the oldest beat
        self._wc = 0          # beats in the window
        self._tre_h = 0
        self._tre_l = 0
        self._tim_h = 0
        self._tim_l = 0
        self._te0_h = 0
        self._te0_l = 0
        self._tel_h = 0
        self._tel_l = 0
        self.window_n = 0
        self.window_anoms = 0
        self.window_beats = 0
        self.coherence = 0
        self.collapsed = False
        self.collapse_edge = False

    def room(self):
        return self.max_samples - self._n

    @micropython.native
    def add(self, x):
        if self._n >= self.max_samples:
            self.overruns += 1
            return False
        if x < 0:
            x = 0
            self.clipped += 1
        elif x > self._xmax:
            x = self._xmax
            self.clipped += 1
        # anomaly: squared deviation from the EWMA mean against the EWMA variance
        k = self._ak
        seen = self._seen
        if seen == 0:
            self._mean = x << k
        m = self._mean
        dx = x - ((m + (1 << (k - 1))) >> k)
        q = ((dx * dx) >> self._ag) << k
        if seen >= self.warmup:
            v = self._var
            if v < self._vfloor:
                v = self._vfloor
            zq = self._zq
            if ((q // zq) << 4) + (((q % zq) << 4) // zq) > v:
                self._an += 1
        else:
            self._seen = seen + 1
        self._mean = m + (((x << k) - m) >> k)
        self._var += (q - self._var) >> k
        # KAIROS terms
        p = self._prev
        d = 0 if p < 0 else x - p
        self._prev = x
        i = self._di
        dl = self._dl[i]
        self._dl[i] = d
        i += 1
        if i == self.lag:
            i = 0
        self._di = i
        s = self.sum_shift
        if s:
            h = self._eh
            self._ae0 += (d * d + h) >> s
            self._ael += (dl * dl + h) >> s
        else:
            self._ae0 += d * d
            self._ael += dl * dl
        self._n += 1
        th = self._theta
        self._theta = (th + self.phase_step) & PHASE_MASK
        p = d * dl
        if p == 0:
            return True
        tab = COS_Q14
        j = th >> 20
        f = th & FRAC_MASK
        c0 = tab[j]
        c = c0 + (((tab[j + 1] - c0) * f + FRAC_HALF) >> 20)
        th = (th - QUARTER) & PHASE_MASK
        j = th >> 20
        f = th & FRAC_MASK
        c0 = tab[j]
        sn = c0 + (((tab[j + 1] - c0) * f + FRAC_HALF) >> 20)
        neg = p < 0
        a = -p if neg else p
        sh = self._sh
        half = self._half
        if a < self._fast:
            # a * |c| + half < 2^30: direct
            if c < 0:
                tr = -((a * -c + half) >> sh)
            else:
                tr = (a * c + half) >> sh
            if sn < 0:
                ti = -((a * -sn + half) >> sh)
            else:
                ti = (a * sn + half) >> sh
        else:
            # a = ah * 2^15 + al; (ah*|c|*2^15 + al*|c| + half) >> sh without a 2^30 overflow
            ah = a >> 15
            al = a & 0x7FFF
            cc = -c if c < 0 else c
            x_ = ah * cc
            z = al * cc + half
            if sh == 14:
                r = (x_ << 1) + (z >> 14)
            else:
                r = (x_ + (z >> 15)) >> (sh - 15)
            tr = -r if c < 0 else r
            cc = -sn if sn < 0 else sn
            x_ = ah * cc
            z = al * cc + half
            if sh == 14:
                r = (x_ << 1) + (z >> 14)
            else:
                r = (x_ + (z >> 15)) >> (sh - 15)
            ti = -r if sn < 0 else r
        if neg:
            self._are -= tr
            self._aim -= ti
        else:
            self._are += tr
            self._aim += ti
        return True

    @micropython.native
    def end_beat(self):
        n = self._n
        re = self._are
        im = self._aim
        e0 = self._ae0
        el = self._ael
        an = self._an
        self.dT_re = re
        self.dT_im = im
        self.dE0 = e0
        self.dEL = el
        self.n = n
        self.anoms = an
        self._are = 0
        self._aim = 0
        self._ae0 = 0
        self._ael = 0
        self._n = 0
        self._an = 0
        # slide: drop the oldest beats until the new one fits in window_samples and capacity
        cap = self.capacity
        while self._wc > 0 and (self._wc >= cap or self.window_n + n > self.window_samples):
            o = self._wh
            self._sub(self._w_re[o], self._w_im[o], self._w_e0[o], self._w_el[o])
            self.window_n -= self._w_n[o]
            self.window_anoms -= self._w_an[o]
            o += 1
            if o == cap:
                o = 0
            self._wh = o
            self._wc -= 1
        t = self._wh + self._wc
        if t >= cap:
            t -= cap
        self._w_re[t] = re
        self._w_im[t] = im
        self._w_e0[t] = e0
        self._w_el[t] = el
        self._w_n[t] = n
        self._w_an[t] = an
        self._wc += 1
        self.window_beats = self._wc
        self.window_n += n
        self.window_anoms += an
        lo = self._tre_l + re
        self._tre_h += lo >> 24
        self._tre_l = lo & LIMB_MASK
        lo = self._tim_l + im
        self._tim_h += lo >> 24
        self._tim_l = lo & LIMB_MASK
        lo = self._te0_l + e0
        self._te0_h += lo >> 24
        self._te0_l = lo & LIMB_MASK
        lo = self._tel_l + el
        self._tel_h += lo >> 24
        self._tel_l = lo & LIMB_MASK
        c = coherence_limbs(self._tre_h, self._tre_l, self._tim_h, self._tim_l,
                             self._te0_h, self._te0_l, self._tel_h, self._tel_l)
        self.coherence = c
        was = self.collapsed
        now = c >= self.threshold_q16 and self._te0_h | self._te0_l != 0
        self.collapsed = now
        self.collapse_edge = now and not was
        if self.collapse_edge:
            self.collapses += 1
        return c

    @micropython.native
    def _sub(self, re, im, e0, el):
        lo = self._tre_l - re
        self._tre_h += lo >> 24
        self._tre_l = lo & LIMB_MASK
        lo = self._tim_l - im
        self._tim_h += lo >> 24
        self._tim_l = lo & LIMB_MASK
        lo = self._te0_l - e0
        self._te0_h += lo >> 24
        self._te0_l = lo & LIMB_MASK
        lo = self._tel_l - el
        self._tel_h += lo >> 24
        self._tel_l = lo & LIMB_MASK

    def window_totals(self):
        """(T_re, T_im, E0, EL, n) of the window as Python ints (allocates; tests/debug)."""
        return ((self._tre_h << 24) + self._tre_l, (self._tim_h << 24) + self._tim_l,
                (self._te0_h << 24) + self._te0_l, (self._tel_h << 24) + self._tel_l,
                self.window_n)


def beat_partials(samples, beat_sizes, **kwargs):
    """Run the device Emissary over a list of samples cut into beats of the given sizes (a list,
    or an int for equal beats, the last one possibly shorter). Returns
    [(dT_re, dT_im, dE0, dEL, n, anoms, coherence), ...]. Same code path as the device; used by
    tests, the emulator and host cross-checks."""
    total = len(samples)
    if isinstance(beat_sizes, int):
        if beat_sizes < 1:
            raise ValueError("beat size must be >= 1 sample, got %r" % (beat_sizes,))
        nb = (total + beat_sizes - 1) // beat_sizes
        biggest = beat_sizes
    else:
        nb = len(beat_sizes)
        biggest = max(beat_sizes) if nb else 1
    if "max_samples_per_beat" not in kwargs:
        kwargs["max_samples_per_beat"] = max(biggest, 1)
    em = Emissary(**kwargs)
    out = []
    i = 0
    for b in range(nb):
        sz = beat_sizes if isinstance(beat_sizes, int) else beat_sizes[b]
        for _ in range(sz):
            if i >= total:
                break
            if not em.add(samples[i]):
                raise ValueError("beat of %d samples exceeds max_samples_per_beat=%d"
                                 % (sz, em.max_samples))
            i += 1
        em.end_beat()
        out.append((em.dT_re, em.dT_im, em.dE0, em.dEL, em.n, em.anoms, em.coherence))
    return out
