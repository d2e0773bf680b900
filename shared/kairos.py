"""KAIROS temporal resonance in integer fixed point (SPEC 4.2): the Emissary's streaming sums.

The KAIROS stream is the sensor decimated to the KAIROS rate f_k = f_s / M (shared/vibration.py
makes it: an M-sample box filter, centred, with F fractional bits), so v[n] is a signed integer,
|v| < 2^(bits-1). Runs unmodified on MicroPython (viper: machine words, no allocation) and
CPython; docs/DEVICE.md "KAIROS integer definition" is the byte-exact reference a host must
reproduce (tests/reference/kairos_ref.py does, with numpy).

Per KAIROS sample:  d[n] = v[n] - v[n-1] (d[0] = 0), d_L[n] = d[n-L] (0 before the stream),
  p = d * d_L, phasor (cos, sin) of theta_n = n * phase_step mod 2^30 in Q14,
  tre = rnd_{14+S}(p * cos), tim = rnd_{14+S}(p * sin), e0 = rnd_S(d^2), el = rnd_S(d_L^2)
Per beat: the sums of those (dT_re, dT_im, dE0, dEL, n) are the TELEMETRY partials; the window
(the last beats holding at most window_s * f_k samples) gives C = |T|^2 / (E0 EL) in Q16.

Public API
----------
Emissary(rate_hz=250, omega=0.0, lag=25, bits=13, max_samples_per_beat=8, window_s=1.0,
         threshold=0.95, phase_step=None, hist_len=512, max_lag=None, hysteresis=0.05,
         beats_per_s=237.5, seg_beats=4)
        the window: the last ceil(window_s * beats_per_s / seg_beats) closed segments of
        seg_beats beats plus the open segment
    em.add(v) -> bool          one KAIROS sample (clamped to |v| < 2^(bits-1), counted in
                               em.clipped); False (not consumed, em.overruns += 1) when the
                               beat already holds max_samples_per_beat samples
    em.end_beat() -> int       close the beat (partials, window slide, coherence); 0 alloc
    em.partials() -> (dT_re, dT_im, dE0, dEL, n)   this beat's partials
    em.coherence (Q16), em.collapsed, em.counters() (window_n, window_segments, collapses,
        collapse_edge, clipped, history)
    em.mem[CSTATE]             bit 0 collapsed, bit 1 clearly below (C < I_c - hysteresis);
        COHERENCE, COLLAPSED, PART_* index mem for the beat
    em.lag, em.phase_step, em.sum_shift, em.rate_hz
    em.set_threshold(c), em.set_lag(L) (a new stream), em.reset() (a new stream)
    em.mem, em.dl, em.ring     the state words, delay line + history, window ring (kernels)
    em.freeze_history(bool), em.history_view()   for the lag learner
    em.window_totals() -> (T_re, T_im, E0, EL, n)   Python ints; tests only (allocates)

Kernels the beat calls directly on an Emissary's arrays: add_block(mem, dl, src, off, k),
end_beat(mem, ring); COHERENCE, COLLAPSED, CSTATE, PART_* index mem.

Helpers: phase_step_for(omega, f) -> int; lag_for(tau_bar, f) -> int;
sum_shift_for(bits, max_samples_per_beat) -> int; coherence_q16 / cos_sin_q14 / COS_Q14
(shared/qmath.py). For the host and tests: shared/kairos_host.py (quantized_omega, beat_partials).
"""
import array

from shared.qmath import COS_Q14, cos_sin_q14, coherence_q16, coherence_limbs  # noqa: F401

from shared.compat import micropython, const  # noqa: F401
try:
    from shared.compat import ptr16, ptr32    # CPython stand-ins; viper has them built in
except ImportError:
    pass

PHASE_MASK = const(0x3FFFFFFF)   # the phase accumulator is 30 bits: 2^30 = one turn
QUARTER = const(0x10000000)      # pi/2 in phase units
FRAC_MASK = const(0xFFFFF)       # low 20 bits of the phase: interpolation fraction
FRAC_HALF = const(0x80000)
LIMB_MASK = const(0xFFFFFF)      # window totals are hi * 2^24 + lo with 0 <= lo < 2^24
_BEAT_LIMIT = const(0x20000000)   # 2^29: every per-beat partial stays below this magnitude
C_MAX = const(65535)
_BIAS = const(0x20000000)        # stored words are >= 0 (see shared/vibration.py's note)

# state words
_PREV = const(0)     # previous sample + _BIAS (0 before the first)
_DI = const(1)       # delay line index
_LAG = const(2)
_THETA = const(3)
_STEP = const(4)
_SH = const(5)       # sum_shift S
_ARE = const(6)      # beat sums + _BIAS
_AIM = const(7)
_AE0 = const(8)
_AEL = const(9)
_AN = const(10)
_MAXS = const(11)
_CAP = const(12)
_WMAX = const(13)
_WH = const(14)
_WC = const(15)
_WN = const(16)
_TREH = const(17)    # window totals: hi + _BIAS, lo
_TREL = const(18)
_TIMH = const(19)
_TIML = const(20)
_TE0H = const(21)
_TE0L = const(22)
_TELH = const(23)
_TELL = const(24)
_COH = const(25)
_HI = const(26)      # history ring write index
_HLEN = const(27)
_HN = const(28)      # history entries (saturates at HLEN)
_VMAX = const(29)    # |v| limit
_CLIP = const(30)
# published partials of the last beat (+ _BIAS for the signed ones)
_PRE = const(31)
_PIM = const(32)
_PE0 = const(33)
_PEL = const(34)
_PN = const(35)
_THR = const(36)     # collapse threshold, Q16
_COLL = const(37)    # collapsed now (0/1)
_EDGE = const(38)    # collapse edge this beat (0/1)
_NCOLL = const(39)   # collapses so far
_LTHR = const(40)    # "clearly below" threshold (collapse threshold - hysteresis), Q16
_CST = const(41)     # collapse state for the beat: bit 0 collapsed, bit 1 clearly below
_HFRZ = const(42)    # history frozen (the lag learner is reading it)
_SEGB = const(43)    # beats per window segment
_OB = const(44)      # beats in the open segment
_ORE = const(45)     # open segment sums (re, im + _BIAS)
_OIM = const(46)
_OE0 = const(47)
_OEL = const(48)
_ON = const(49)
_AWN = const(50)     # samples in the window (closed + open)
_NSTATE = const(51)
# words the beat reads directly (an attribute or property costs ~30 us on the Pico)
COHERENCE = const(_COH)
COLLAPSED = const(_COLL)
CSTATE = const(_CST)
PART_RE = const(_PRE)      # this beat's partials: re, im stored + 2^29 (KBIAS), e0, el, n
PART_IM = const(_PIM)
PART_E0 = const(_PE0)
PART_EL = const(_PEL)
PART_N = const(_PN)
KBIAS = const(_BIAS)
_REC = const(5)      # ring record: re+B, im+B, e0, el, n


def phase_step_for(omega, f_s):
    """round(omega / (2 pi f_s) * 2^30) mod 2^30: the 30-bit phase increment per sample."""
    if f_s <= 0:
        raise ValueError("sample rate must be > 0 Hz, got %r" % (f_s,))
    import math
    return int(round(omega / (2 * math.pi * f_s) * (1 << 30))) & PHASE_MASK


def lag_for(tau_bar, f_s):
    """max(1, round(tau_bar * f_s)) samples."""
    if not tau_bar >= 0:
        raise ValueError("tau_bar must be >= 0 s, got %r" % (tau_bar,))
    return max(1, int(round(tau_bar * f_s)))


def sum_shift_for(bits, max_samples_per_beat):
    """Smallest S >= 0 with max_samples_per_beat * 2^(2*bits - S) < 2^29, where |d| < 2^bits
    bounds a difference of two KAIROS samples; so every per-beat partial stays < 2^29."""
    if not 1 <= max_samples_per_beat <= 255:
        raise ValueError("max_samples_per_beat must be 1..255, got %r" % (max_samples_per_beat,))
    if not 1 <= bits <= 15:
        raise ValueError("KAIROS sample bits must be 1..15, got %r" % (bits,))
    s = 0
    while max_samples_per_beat * ((1 << (2 * bits)) >> s) >= _BEAT_LIMIT:
        s += 1
    return s


def _biased_cos_table():
    # COS_Q14 + 16384 as unsigned halfwords (viper reads ptr16 zero-extended)
    t = array.array("H", bytes(2 * 1025))
    for i in range(1025):
        t[i] = COS_Q14[i] + 16384
    return t


COS_Q14_BIASED = _biased_cos_table()   # COS_Q14 + 16384 as array("H"): viper-readable
_COSB = COS_Q14_BIASED


@micropython.viper
def _rnd_mul(a: int, c: int, sh: int, fast: int) -> int:
    # rnd_{sh}(a * c) for a >= 0, |c| <= 16384, without a product >= 2^31 (DEVICE.md)
    neg = 0
    if c < 0:
        c = 0 - c
        neg = 1
    half = 1 << (sh - 1)
    if a < fast:
        r = (a * c + half) >> sh
    else:
        ah = a >> 15
        al = a & 0x7FFF
        x = ah * c
        z = al * c + half
        if sh == 14:
            r = (x << 1) + (z >> 14)
        else:
            r = (x + (z >> 15)) >> (sh - 15)
    return 0 - r if neg else r


@micropython.viper
def _add(mem, dl, tab, v: int) -> int:
    m = ptr32(mem)
    if int(m[_AN]) >= int(m[_MAXS]):
        return 0
    vmax = int(m[_VMAX])
    if v > vmax:
        v = vmax
        m[_CLIP] = int(m[_CLIP]) + 1
    elif v < 0 - vmax:
        v = 0 - vmax
        m[_CLIP] = int(m[_CLIP]) + 1
    pv = int(m[_PREV])
    d = 0 if pv == 0 else v - (pv - _BIAS)
    m[_PREV] = v + _BIAS
    q = ptr32(dl)
    lag = int(m[_LAG])
    i = int(m[_DI])
    dlg = int(q[i]) - _BIAS
    q[i] = d + _BIAS
    i += 1
    if i == lag:
        i = 0
    m[_DI] = i
    # history ring for the lag learner (after the delay line, which holds the last `lag`);
    # frozen while the learner reads it
    if not int(m[_HFRZ]):
        hl = int(m[_HLEN])
        hi = int(m[_HI])
        q[lag + hi] = d + _BIAS
        hi += 1
        if hi == hl:
            hi = 0
        m[_HI] = hi
        if int(m[_HN]) < hl:
            m[_HN] = int(m[_HN]) + 1
    s = int(m[_SH])
    if s:
        h = 1 << (s - 1)
        m[_AE0] = int(m[_AE0]) + ((d * d + h) >> s)
        m[_AEL] = int(m[_AEL]) + ((dlg * dlg + h) >> s)
    else:
        m[_AE0] = int(m[_AE0]) + d * d
        m[_AEL] = int(m[_AEL]) + dlg * dlg
    m[_AN] = int(m[_AN]) + 1
    th = int(m[_THETA])
    m[_THETA] = (th + int(m[_STEP])) & PHASE_MASK
    p = d * dlg
    if p == 0:
        return 1
    neg = 0
    a = p
    if p < 0:
        a = 0 - p
        neg = 1
    sh = 14 + s
    fast = 0x10000 if s == 0 else 0x8000
    t = ptr16(tab)
    j = th >> 20
    f = th & FRAC_MASK
    c0 = int(t[j]) - 16384
    c = c0 + (((int(t[j + 1]) - 16384 - c0) * f + FRAC_HALF) >> 20)
    ts = (th - QUARTER) & PHASE_MASK
    j = ts >> 20
    f = ts & FRAC_MASK
    c0 = int(t[j]) - 16384
    sn = c0 + (((int(t[j + 1]) - 16384 - c0) * f + FRAC_HALF) >> 20)
    tr = int(_rnd_mul(a, c, sh, fast))
    ti = int(_rnd_mul(a, sn, sh, fast))
    if neg:
        tr = 0 - tr
        ti = 0 - ti
    m[_ARE] = int(m[_ARE]) + tr
    m[_AIM] = int(m[_AIM]) + ti
    return 1


@micropython.viper
def end_beat(mem, ring) -> int:
    # The window is the last CAP closed segments of SEGB beats plus the open segment (the
    # ring holds segments, not beats: a beat ring for 1 s costs the Pico 5 KB of heap).
    m = ptr32(mem)
    w = ptr32(ring)
    re = int(m[_ARE]) - _BIAS
    im = int(m[_AIM]) - _BIAS
    e0 = int(m[_AE0])
    el = int(m[_AEL])
    n = int(m[_AN])
    m[_PRE] = re + _BIAS
    m[_PIM] = im + _BIAS
    m[_PE0] = e0
    m[_PEL] = el
    m[_PN] = n
    m[_ARE] = _BIAS
    m[_AIM] = _BIAS
    m[_AE0] = 0
    m[_AEL] = 0
    m[_AN] = 0
    # this beat into the open segment (sum_shift keeps a segment's sums below 2^29)
    ore = int(m[_ORE]) - _BIAS + re
    oim = int(m[_OIM]) - _BIAS + im
    oe0 = int(m[_OE0]) + e0
    oel = int(m[_OEL]) + el
    on = int(m[_ON]) + n
    ob = int(m[_OB]) + 1
    wh = int(m[_WH])
    wc = int(m[_WC])
    wn = int(m[_WN])
    rh = int(m[_TREH]) - _BIAS
    rl = int(m[_TREL])
    ih = int(m[_TIMH]) - _BIAS
    il = int(m[_TIML])
    eh = int(m[_TE0H])
    elo = int(m[_TE0L])
    lh = int(m[_TELH])
    llo = int(m[_TELL])
    if ob >= int(m[_SEGB]):
        cap = int(m[_CAP])
        if wc >= cap:
            o = wh * _REC
            rl -= int(w[o]) - _BIAS
            rh += rl >> 24
            rl &= 0xFFFFFF
            il -= int(w[o + 1]) - _BIAS
            ih += il >> 24
            il &= 0xFFFFFF
            elo -= int(w[o + 2])
            eh += elo >> 24
            elo &= 0xFFFFFF
            llo -= int(w[o + 3])
            lh += llo >> 24
            llo &= 0xFFFFFF
            wn -= int(w[o + 4])
            wh += 1
            if wh == cap:
                wh = 0
            wc -= 1
        t = wh + wc
        if t >= cap:
            t -= cap
        o = t * _REC
        w[o] = ore + _BIAS
        w[o + 1] = oim + _BIAS
        w[o + 2] = oe0
        w[o + 3] = oel
        w[o + 4] = on
        wc += 1
        wn += on
        rl += ore
        rh += rl >> 24
        rl &= 0xFFFFFF
        il += oim
        ih += il >> 24
        il &= 0xFFFFFF
        elo += oe0
        eh += elo >> 24
        elo &= 0xFFFFFF
        llo += oel
        lh += llo >> 24
        llo &= 0xFFFFFF
        ore = 0
        oim = 0
        oe0 = 0
        oel = 0
        on = 0
        ob = 0
        m[_WH] = wh
        m[_WC] = wc
        m[_WN] = wn
        m[_TREH] = rh + _BIAS
        m[_TREL] = rl
        m[_TIMH] = ih + _BIAS
        m[_TIML] = il
        m[_TE0H] = eh
        m[_TE0L] = elo
        m[_TELH] = lh
        m[_TELL] = llo
    m[_ORE] = ore + _BIAS
    m[_OIM] = oim + _BIAS
    m[_OE0] = oe0
    m[_OEL] = oel
    m[_ON] = on
    m[_OB] = ob
    # the window: closed segments + the open one
    rl += ore
    rh += rl >> 24
    rl &= 0xFFFFFF
    il += oim
    ih += il >> 24
    il &= 0xFFFFFF
    elo += oe0
    eh += elo >> 24
    elo &= 0xFFFFFF
    llo += oel
    lh += llo >> 24
    llo &= 0xFFFFFF
    m[_AWN] = wn + on
    c = int(coherence_limbs(rh, rl, ih, il, eh, elo, lh, llo))
    m[_COH] = c
    was = int(m[_COLL])
    now = 1 if (c >= int(m[_THR]) and (eh != 0 or elo != 0)) else 0
    m[_COLL] = now
    m[_CST] = now | (2 if c < int(m[_LTHR]) else 0)
    if now and not was:
        m[_EDGE] = 1
        m[_NCOLL] = int(m[_NCOLL]) + 1
    else:
        m[_EDGE] = 0
    return c


@micropython.viper
def add_block(mem, dl, src, off: int, k: int) -> int:
    # k KAIROS samples from src[off:off+k] (array('i'), each stored + 2^29)
    tab = _COSB
    q = ptr32(src)
    i = 0
    while i < k:
        _add(mem, dl, tab, int(q[off + i]) - _BIAS)
        i += 1
    return k


def _zeros(n):
    # array('i') of n zeros (int32 on every port) without a temporary list
    return array.array("i", bytes(4 * n))


class Emissary:
    def __init__(self, rate_hz=250, omega=0.0, lag=25, bits=13, max_samples_per_beat=8,
                 window_s=1.0, threshold=0.95, phase_step=None, hist_len=512,
                 max_lag=None, hysteresis=0.05, beats_per_s=237.5, seg_beats=4):
        if not rate_hz > 0:
            raise ValueError("KAIROS rate must be > 0 Hz, got %r" % (rate_hz,))
        if not 2 <= bits <= 15:
            raise ValueError("KAIROS sample bits must be 2..15, got %r" % (bits,))
        self.rate_hz = rate_hz
        self.bits = bits
        if not 1 <= seg_beats <= 16:
            raise ValueError("seg_beats must be 1..16, got %r" % (seg_beats,))
        # |v| < 2^(bits-1), so |d| < 2^bits; a window segment's sums stay below 2^29 too
        self.sum_shift = sum_shift_for(bits, max_samples_per_beat * seg_beats)
        self.seg_beats = seg_beats
        self.max_samples = max_samples_per_beat
        self.window_samples = max(1, int(round(window_s * rate_hz)))
        if self.window_samples < max_samples_per_beat:
            raise ValueError("window_s * rate (%d samples) must be >= max_samples_per_beat (%d)"
                             % (self.window_samples, max_samples_per_beat))
        # closed segments spanning window_s (the open one adds up to seg_beats)
        capacity = max(1, int(window_s * beats_per_s / seg_beats + 0.999))
        self.capacity = capacity
        self.phase_step = (phase_step_for(omega, rate_hz) if phase_step is None
                           else int(phase_step) & PHASE_MASK)
        self.max_lag = int(max_lag) if max_lag is not None else max(int(lag), hist_len // 2)
        if not 1 <= lag <= self.max_lag:
            raise ValueError("lag must be 1..%d samples, got %r" % (self.max_lag, lag))
        self.hist_len = hist_len
        if not 0.0 <= hysteresis < 0.5:
            raise ValueError("coherence hysteresis must be in [0, 0.5), got %r" % (hysteresis,))
        self.hysteresis = hysteresis
        self.mem = _zeros(_NSTATE)
        self.dl = _zeros(self.max_lag + hist_len)
        self.ring = _zeros(_REC * capacity)
        self.overruns = 0
        m = self.mem
        m[_STEP] = self.phase_step
        m[_SH] = self.sum_shift
        m[_MAXS] = max_samples_per_beat
        m[_CAP] = capacity
        m[_WMAX] = self.window_samples
        m[_SEGB] = seg_beats
        m[_HLEN] = hist_len
        m[_VMAX] = (1 << (bits - 1)) - 1
        self.set_threshold(threshold)
        self.lag = int(lag)
        self.reset()

    def set_threshold(self, c):
        if not 0.0 <= c <= 1.0:
            raise ValueError("coherence threshold I_c must be in [0, 1], got %r" % (c,))
        self.threshold_q16 = min(C_MAX, int(round(c * 65536)))
        self.mem[_THR] = self.threshold_q16
        lt = self.threshold_q16 - int(round(self.hysteresis * 65536))
        self.mem[_LTHR] = lt if lt > 0 else 0

    def set_lag(self, lag):
        """A new lag (samples): the partials change meaning, so the stream restarts."""
        lag = int(lag)
        if not 1 <= lag <= self.max_lag:
            raise ValueError("lag must be 1..%d samples, got %r" % (self.max_lag, lag))
        self.lag = lag
        self.reset()

    def reset(self):
        """Start a new stream: phase 0, zero delay line, empty window and history."""
        m = self.mem
        for i in (_PREV, _DI, _THETA, _AE0, _AEL, _AN, _WH, _WC, _WN, _TREL, _TIML, _TE0H,
                  _TE0L, _TELH, _TELL, _COH, _HI, _HN, _PE0, _PEL, _PN, _CLIP, _HFRZ, _OB,
                  _OE0, _OEL, _ON, _AWN):
            m[i] = 0
        for i in (_ARE, _AIM, _TREH, _TIMH, _PRE, _PIM, _ORE, _OIM):
            m[i] = _BIAS
        m[_LAG] = self.lag
        m[_COLL] = 0
        m[_EDGE] = 0
        dl = self.dl
        for i in range(len(dl)):
            dl[i] = _BIAS

    def add(self, v):
        if _add(self.mem, self.dl, _COSB, v):
            return True
        self.overruns += 1
        return False

    def add_block(self, src, off, k):
        """k KAIROS samples from array('i') src starting at off, each stored + 2^29
        (shared/vibration.py's decimated output): one call instead of k."""
        return add_block(self.mem, self.dl, src, off, k)

    def end_beat(self):
        return end_beat(self.mem, self.ring)

    @property
    def collapsed(self):
        return self.mem[_COLL] != 0

    # published values (the beat reads mem[COHERENCE] etc. directly; these are for the
    # boot path, tests and the host: properties cost heap on a Pico, so few of them)
    @property
    def coherence(self):
        return self.mem[_COH]

    def partials(self):
        """(dT_re, dT_im, dE0, dEL, n): the last beat's partials (allocates a tuple)."""
        m = self.mem
        return (m[_PRE] - _BIAS, m[_PIM] - _BIAS, m[_PE0], m[_PEL], m[_PN])

    def counters(self):
        """Window samples and segments, collapses so far, the collapse edge of the last beat,
        clipped samples, history entries (a dict: tests, reports)."""
        m = self.mem
        return {"window_n": m[_AWN], "window_segments": m[_WC], "collapses": m[_NCOLL],
                "collapse_edge": m[_EDGE] != 0, "clipped": m[_CLIP], "history": m[_HN]}

    def freeze_history(self, frozen):
        """Stop (True) or resume (False) recording differences into the history ring, so the
        lag learner can read it in place across several idle slices."""
        self.mem[_HFRZ] = 1 if frozen else 0

    def history_full(self):
        """True once the history ring holds hist_len differences."""
        m = self.mem
        return m[_HN] >= m[_HLEN]

    def history_view(self):
        """(array, base, start, length, count) of the history ring: element k (0 = oldest) is
        array[base + (start + k) % length] - 2^29; complete once count == length."""
        m = self.mem
        return self.dl, m[_LAG], m[_HI], m[_HLEN], m[_HN]

    def window_totals(self):
        """(T_re, T_im, E0, EL, n) of the window (closed segments + open) as Python ints
        (allocates; tests/debug)."""
        m = self.mem
        return (((m[_TREH] - _BIAS) << 24) + m[_TREL] + m[_ORE] - _BIAS,
                ((m[_TIMH] - _BIAS) << 24) + m[_TIML] + m[_OIM] - _BIAS,
                (m[_TE0H] << 24) + m[_TE0L] + m[_OE0], (m[_TELH] << 24) + m[_TELL] + m[_OEL],
                m[_AWN])
