"""Condition-monitoring features of the raw sensor stream, in integer fixed point (both runtimes).

Per sample x (ADC counts) at the board's rate f_s:
  y = x[n] - x[n-1]                 first difference (|y| saturated at 4095): a high-pass (|H| = 2 sin(pi f / f_s)) that
                                    keeps the kHz band where bearing impacts ring and drops the
                                    slow part (DC, the actuator loop's plant, sensor drift)
  S2 += y^2, S4 += y^4              exact, in 24-bit limbs (y^4 needs up to 48 bits)
  peak = max |y|
  exceedance when |y| > Z * med     med tracks the median of |y| with fixed relative steps
                                    (s += s/2^K + 1 above, -= below): an outlier moves it by one
                                    step whatever its size, so the test is heavy-tail safe; the
                                    first WARMUP samples of a stream never count
  zero-difference samples           a beat whose samples are all equal (and equal to the last
                                    one of the previous beat) is a stuck-sensor beat
  decimation for KAIROS             every M samples, the centred block sum scaled by
                                    round(2^(16+F) / M) and rounded: M-sample box filter, F
                                    fractional bits; minus a one-pole DC tracker (time
                                    constant 32 KAIROS samples) so a process trend is not
                                    read as vibration (shared/kairos.py runs at f_s / M)

Per beat, over the window (the most recent beats holding at most window_s * f_s samples):
  level  = log2(rms(y) / counts_per_unit)     Q8, e.g. -3.2 * 256 for rms(y) = 0.11 g
  kurt   = log2(n * S4 / S2^2)                Q8 (Gaussian noise: log2 3 = 1.585 -> 406)
  crest  = log2(peak / rms(y))                Q8
  anoms  = exceedances + counted events in the window (SPEC's anoms: the robust anomalous
           samples plus the beat's events: stuck or dead sensor, overruns, coherence loss)
Logarithms are exact bit lengths plus a 256-entry mantissa table (error < 1/256 octave), so
every feature is an integer the host can reproduce bit for bit (tests/reference/vibration_ref.py).

The hot paths are viper on MicroPython (machine-word integers, no allocation) and the same
source runs on CPython, where the decorators are no-ops and ptr16/ptr32 index the arrays
directly; every intermediate stays below 2^31 so both agree.

Public API
----------
block(mem, buf, n) -> k; end_beat(mem, events)   the kernels on a Features' mem (the beat calls
    them directly: a method call costs ~15 us on the Pico); LEVEL, KURT, CREST, ANOMS, STUCK,
    BEAT_SUM, KOUT, KBIAS index mem
Features(f_s, adc_bits=12, counts_per_unit=128.0, window_s=1.0, decim=48,
         max_samples_per_beat=128, z=8, med_k=7, warmup=2048, frac_bits=None,
         beats_per_s=237.5, seg_beats=4)
        the window: the last ceil(window_s * beats_per_s / seg_beats) closed segments of
        seg_beats beats, plus the beats of the open segment
    .block(buf, n) -> k     n samples of array('H') buf; k decimated samples in
                            .mem[.kout : .kout + k], each stored + 2^29 (KBIAS)
    .end_beat(events=0)     close the beat: window update, features; events = counted
                            events of the beat (they join the anomaly count)
    .level, .kurt, .crest   Q8 features (ints); LEVEL_NONE when the window holds no energy
    .anoms                  exceedances + events in the window
    .beat_stats() -> (n, sum, exceedances + events, stuck, median |y| Q4)
    .window() -> (samples, closed segments)
    .reset()                new stream
"""
import array

from shared.compat import micropython, const  # noqa: F401
from shared.qmath import bitlen      # the one definition (qmath is loaded on the device anyway)
try:
    from shared.compat import ptr16, ptr32    # CPython stand-ins; viper has them built in
except ImportError:
    pass

_LIMB = const(0xFFFFFF)
LEVEL_NONE = const(-8192)      # level/kurt/crest when the window has no energy (-32 octaves)

# state words (array('i')); the ring of per-beat records follows at _RING
_XPREV = const(0)   # last sample + 1, 0 before the first
_MED = const(1)     # median tracker of |y|, Q4 counts
_WARM = const(2)    # samples seen (saturates at WARMUP)
_DACC = const(3)    # decimator: centred sum of the current block, + _BIAS
_DCNT = const(4)    # decimator: samples in the current block
_S2L = const(5)     # beat sums (24-bit limbs)
_S2H = const(6)
_S4A = const(7)
_S4B = const(8)
_S4C = const(9)
_PEAK = const(10)
_EXC = const(11)
_NZ = const(12)     # zero-difference samples in the beat
_N = const(13)      # samples in the beat
_KN = const(14)     # decimated samples written this call
# configuration words
_DECIM = const(15)
_RCP = const(16)
_MID = const(17)
_ZQ = const(18)     # exceedance factor Z
_MEDK = const(19)
_WARMUP = const(20)
_CAP = const(21)
_WMAX = const(22)   # window_s * f_s samples
# window
_WH = const(23)     # oldest beat
_WC = const(24)     # beats in the window
_WN = const(25)     # samples in the window
_T2L = const(26)
_T2H = const(27)
_T4A = const(28)
_T4B = const(29)
_T4C = const(30)
_TEX = const(31)
_LEVEL = const(32)
_KURT = const(33)
_CREST = const(34)
_LCPU = const(35)   # log2(counts_per_unit), Q8
_STUCK = const(36)  # this beat was stuck (all differences zero)
_BEXC = const(37)   # this beat's exceedances (kept after the reset of _EXC)
_BN = const(38)     # this beat's samples
_KMAX = const(39)   # size of the decimated-sample output area
_SX = const(40)     # sum of x over the beat (the actuator loop's measurement)
_BSX = const(41)    # this beat's sum of x (kept after the reset of _SX)
_DCM = const(42)    # slow mean of the decimated stream, Q8, + _BIAS
_SEGB = const(43)   # beats per window segment
_OB = const(44)     # beats in the open segment
_OS2L = const(45)   # open segment sums
_OS2H = const(46)
_OS4A = const(47)
_OS4B = const(48)
_OS4C = const(49)
_OPK = const(50)
_OEX = const(51)
_ON = const(52)
_RPK = const(53)    # peak over the closed segments in the ring
_AN = const(54)     # anomalies in the window (closed + open)
_AWN = const(55)    # samples in the window (closed + open)
_KOUT = const(56)   # decimated samples follow here (KMAX words)
_BIAS = const(0x20000000)   # keeps stored words >= 0 (see the note above _block)
KBIAS = const(_BIAS)
# words the beat reads directly (an attribute or property costs ~30 us on the Pico)
LEVEL = const(_LEVEL)
KURT = const(_KURT)
CREST = const(_CREST)
ANOMS = const(_AN)
STUCK = const(_STUCK)
BEAT_SUM = const(_BSX)
KOUT = const(_KOUT)
WINDOW_N = const(_AWN)
# per-segment record in the ring: s2l, s2h | peak << 16, s4a, s4b, s4c, exc | n << 15
# (s2h < 2^16, peak < 2^12, exc and n < 2^15)
_REC = const(6)

# round(256 * log2(1 + i / 256)), i = 0..256 (the last entry is 256: one octave)
_LOG_TAB = array.array("H", (
    0, 1, 3, 4, 6, 7, 9, 10, 11, 13, 14, 16, 17, 18, 20, 21, 22, 24, 25, 26, 28, 29, 30, 32,
    33, 34, 36, 37, 38, 40, 41, 42, 44, 45, 46, 47, 49, 50, 51, 52, 54, 55, 56, 57, 59, 60, 61,
    62, 63, 65, 66, 67, 68, 69, 71, 72, 73, 74, 75, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88,
    89, 90, 92, 93, 94, 95, 96, 97, 98, 99, 100, 102, 103, 104, 105, 106, 107, 108, 109, 110,
    111, 112, 113, 114, 116, 117, 118, 119, 120, 121, 122, 123, 124, 125, 126, 127, 128, 129,
    130, 131, 132, 133, 134, 135, 136, 137, 138, 139, 140, 141, 142, 143, 144, 145, 146, 147,
    148, 149, 150, 151, 152, 153, 154, 155, 155, 156, 157, 158, 159, 160, 161, 162, 163, 164,
    165, 166, 167, 168, 168, 169, 170, 171, 172, 173, 174, 175, 176, 177, 177, 178, 179, 180,
    181, 182, 183, 184, 184, 185, 186, 187, 188, 189, 190, 191, 191, 192, 193, 194, 195, 196,
    196, 197, 198, 199, 200, 201, 201, 202, 203, 204, 205, 206, 206, 207, 208, 209, 210, 210,
    211, 212, 213, 214, 214, 215, 216, 217, 218, 218, 219, 220, 221, 221, 222, 223, 224, 225,
    225, 226, 227, 228, 228, 229, 230, 231, 231, 232, 233, 234, 234, 235, 236, 237, 237, 238,
    239, 240, 240, 241, 242, 243, 243, 244, 245, 245, 246, 247, 248, 248, 249, 250, 251, 251,
    252, 253, 253, 254, 255, 256))


# Viper reads a ptr32 word zero-extended into the machine word: on a 64-bit port (the unix
# port the tests run) a stored -1 comes back as 2^32 - 1, on the Pico as -1. So every word the
# viper code reads back holds a value in 0..2^31-1 (biased where it could be negative) and is
# loaded through int() so the arithmetic on it is signed.
@micropython.viper
def block(mem, buf, n: int) -> int:
    m = ptr32(mem)
    b = ptr16(buf)
    xp = int(m[_XPREV])
    med = int(m[_MED])
    warm = int(m[_WARM])
    warmup = int(m[_WARMUP])
    zq = int(m[_ZQ])
    mk = int(m[_MEDK])
    dacc = int(m[_DACC]) - _BIAS
    dcm = int(m[_DCM]) - _BIAS
    dcnt = int(m[_DCNT])
    decim = int(m[_DECIM])
    rcp = int(m[_RCP])
    mid = int(m[_MID])
    s2l = int(m[_S2L])
    s2h = int(m[_S2H])
    s4a = int(m[_S4A])
    s4b = int(m[_S4B])
    s4c = int(m[_S4C])
    pk = int(m[_PEAK])
    ex = int(m[_EXC])
    nz = int(m[_NZ])
    sx = int(m[_SX])
    kn = 0
    kmax = int(m[_KMAX])
    i = 0
    while i < n:
        x = int(b[i])
        sx += x
        if xp == 0:
            y = 0
        else:
            y = x - (xp - 1)
        xp = x + 1
        ay = y if y >= 0 else 0 - y
        if ay > 4095:
            ay = 4095          # keeps y^4 within 48 bits (a 12-bit ADC never reaches it)
        if ay == 0:
            nz += 1
        if ay > pk:
            pk = ay
        a16 = ay << 4
        if warm >= warmup:
            if a16 > zq * med:
                ex += 1
        else:
            warm += 1
        if a16 > med:
            med += (med >> mk) + 1
        else:
            med -= (med >> mk) + 1
            if med < 16:
                med = 16
        a = ay * ay
        s2l += a
        s2h += s2l >> 24
        s2l &= 0xFFFFFF
        ah = a >> 12
        al = a & 0xFFF
        mm = 2 * ah * al
        s4a += ((mm & 0xFFF) << 12) + al * al
        s4b += ah * ah + (mm >> 12) + (s4a >> 24)
        s4a &= 0xFFFFFF
        s4c += s4b >> 24
        s4b &= 0xFFFFFF
        dacc += x - mid
        dcnt += 1
        if dcnt == decim:
            if kn < kmax:
                # the block mean (F fractional bits) minus a slow DC tracker (a one-pole
                # high-pass, time constant 2^5 KAIROS samples): a trend or a DC step of the
                # process is not vibration, and differencing alone would pass a ramp as a
                # constant that correlates with itself
                v = (dacc * rcp + 32768) >> 16
                dcm += ((v << 8) - dcm) >> 5
                m[_KOUT + kn] = v - (dcm >> 8) + _BIAS
                kn += 1
            dacc = 0
            dcnt = 0
        i += 1
    m[_XPREV] = xp
    m[_MED] = med
    m[_WARM] = warm
    m[_DACC] = dacc + _BIAS
    m[_DCM] = dcm + _BIAS
    m[_DCNT] = dcnt
    m[_S2L] = s2l
    m[_S2H] = s2h
    m[_S4A] = s4a
    m[_S4B] = s4b
    m[_S4C] = s4c
    m[_PEAK] = pk
    m[_EXC] = ex
    m[_NZ] = nz
    m[_SX] = sx
    m[_N] = int(m[_N]) + n
    m[_KN] = kn
    return kn


@micropython.viper
def _log2_q8(tab, hi: int, lo: int) -> int:
    # 256 * log2(hi * 2^24 + lo) for 0 <= lo < 2^24, 0 <= hi < 2^24; LEVEL_NONE for 0
    t = ptr16(tab)
    if hi == 0:
        if lo == 0:
            return LEVEL_NONE
        v = lo
        e = 0
    else:
        # the top 31 bits of the two limbs: hi < 2^24 shifted by 7, plus lo's top 7 bits
        v = (hi << 7) | (lo >> 17)
        e = 17
    nb = int(bitlen(v))
    if nb > 9:
        f = (v >> (nb - 9)) & 0xFF
    else:
        f = (v << (9 - nb)) & 0xFF
    return ((nb - 1 + e) << 8) + int(t[f])


@micropython.viper
def _log2_3(tab, c: int, b: int, a: int) -> int:
    # 256 * log2(c * 2^48 + b * 2^24 + a), limbs < 2^24
    if c == 0:
        return int(_log2_q8(tab, b, a))
    # c * 2^24 + b as a two-limb number scaled by 2^24: log2 + 24 octaves (a drops below the
    # table's resolution once c > 0)
    return int(_log2_q8(tab, c, b)) + (24 << 8)


@micropython.viper
def end_beat(mem, events: int) -> int:
    # The window is the last CAP closed segments of SEGB beats plus the open segment: the ring
    # holds segments, not beats (a beat ring of a 1 s window would cost the Pico 6 KB of heap).
    tab = _LOG_TAB
    m = ptr32(mem)
    n = int(m[_N])
    ex = int(m[_EXC]) + events
    # a stuck beat (every sample repeated the previous one) is a sensor fault, not vibration:
    # it adds its events but no samples to the window, or its zero differences would read as
    # an impulsive signal (kurtosis of mostly-zero data) and the model would blame the machine
    stuck = 1 if (n > 0 and int(m[_NZ]) == n) else 0
    wn_add = 0 if stuck else n
    # this beat into the open segment
    o2l = int(m[_OS2L]) + int(m[_S2L])
    o2h = int(m[_OS2H]) + int(m[_S2H]) + (o2l >> 24)
    o2l &= 0xFFFFFF
    o4a = int(m[_OS4A]) + int(m[_S4A])
    o4b = int(m[_OS4B]) + int(m[_S4B]) + (o4a >> 24)
    o4a &= 0xFFFFFF
    o4c = int(m[_OS4C]) + int(m[_S4C]) + (o4b >> 24)
    o4b &= 0xFFFFFF
    opk = int(m[_OPK])
    bp = int(m[_PEAK])
    if bp > opk:
        opk = bp
    oex = int(m[_OEX]) + ex
    if oex > 0x7FFF:
        oex = 0x7FFF
    on = int(m[_ON]) + wn_add
    ob = int(m[_OB]) + 1
    wh = int(m[_WH])
    wc = int(m[_WC])
    wn = int(m[_WN])
    t2l = int(m[_T2L])
    t2h = int(m[_T2H])
    t4a = int(m[_T4A])
    t4b = int(m[_T4B])
    t4c = int(m[_T4C])
    tex = int(m[_TEX])
    rpk = int(m[_RPK])
    if ob >= int(m[_SEGB]):
        # close the segment: evict the oldest when the ring is full, push, re-take the peak
        cap = int(m[_CAP])
        ring = _KOUT + int(m[_KMAX])
        if wc >= cap:
            o = ring + wh * _REC
            t2l -= int(m[o])
            w1 = int(m[o + 1])
            t2h -= w1 & 0xFFFF
            t2h += t2l >> 24
            t2l &= 0xFFFFFF
            t4a -= int(m[o + 2])
            t4b -= int(m[o + 3])
            t4c -= int(m[o + 4])
            t4b += t4a >> 24
            t4a &= 0xFFFFFF
            t4c += t4b >> 24
            t4b &= 0xFFFFFF
            w5 = int(m[o + 5])
            tex -= w5 & 0x7FFF
            wn -= w5 >> 15
            wh += 1
            if wh == cap:
                wh = 0
            wc -= 1
        t = wh + wc
        if t >= cap:
            t -= cap
        o = ring + t * _REC
        if opk > 4095:
            opk = 4095
        if o2h > 0xFFFF:
            o2h = 0xFFFF
        m[o] = o2l
        m[o + 1] = o2h | (opk << 16)
        m[o + 2] = o4a
        m[o + 3] = o4b
        m[o + 4] = o4c
        m[o + 5] = oex | (on << 15)
        wc += 1
        wn += on
        t2l += o2l
        t2h += o2h + (t2l >> 24)
        t2l &= 0xFFFFFF
        t4a += o4a
        t4b += o4b + (t4a >> 24)
        t4a &= 0xFFFFFF
        t4c += o4c + (t4b >> 24)
        t4b &= 0xFFFFFF
        tex += oex
        rpk = 0
        j = 0
        k = wh
        while j < wc:
            p = int(m[ring + k * _REC + 1]) >> 16
            if p > rpk:
                rpk = p
            k += 1
            if k == cap:
                k = 0
            j += 1
        o2l = 0
        o2h = 0
        o4a = 0
        o4b = 0
        o4c = 0
        opk = 0
        oex = 0
        on = 0
        ob = 0
    m[_OS2L] = o2l
    m[_OS2H] = o2h
    m[_OS4A] = o4a
    m[_OS4B] = o4b
    m[_OS4C] = o4c
    m[_OPK] = opk
    m[_OEX] = oex
    m[_ON] = on
    m[_OB] = ob
    m[_WH] = wh
    m[_WC] = wc
    m[_WN] = wn
    m[_T2L] = t2l
    m[_T2H] = t2h
    m[_T4A] = t4a
    m[_T4B] = t4b
    m[_T4C] = t4c
    m[_TEX] = tex
    m[_RPK] = rpk
    m[_STUCK] = stuck
    m[_BEXC] = ex
    m[_BN] = n
    m[_BSX] = int(m[_SX])
    m[_SX] = 0
    m[_S2L] = 0
    m[_S2H] = 0
    m[_S4A] = 0
    m[_S4B] = 0
    m[_S4C] = 0
    m[_PEAK] = 0
    m[_EXC] = 0
    m[_NZ] = 0
    m[_N] = 0
    # the window: closed segments + the open one
    a2l = t2l + o2l
    a2h = t2h + o2h + (a2l >> 24)
    a2l &= 0xFFFFFF
    a4a = t4a + o4a
    a4b = t4b + o4b + (a4a >> 24)
    a4a &= 0xFFFFFF
    a4c = t4c + o4c + (a4b >> 24)
    a4b &= 0xFFFFFF
    an = wn + on
    pk = rpk if rpk > opk else opk
    m[_AN] = tex + oex
    m[_AWN] = an
    if a2h == 0 and a2l == 0:
        m[_LEVEL] = LEVEL_NONE
        m[_KURT] = 0
        m[_CREST] = 0
        return 0
    # the four logarithms: _log2_q8(a2h, a2l), _log2_3(a4c, a4b, a4a), _log2_q8(0, an),
    # _log2_q8(0, pk), with the helpers inlined (a viper call costs ~6-10 us on the Pico: these
    # were ten a beat)
    lt = ptr16(tab)
    l2 = 0
    l4 = 0
    ln = 0
    lp = 0
    k = 0
    while k < 4:
        add = 0
        if k == 0:
            hi = a2h
            lo = a2l
        elif k == 1:
            if a4c == 0:
                hi = a4b
                lo = a4a
            else:
                hi = a4c
                lo = a4b
                add = 24 << 8
        elif k == 2:
            hi = 0
            lo = an
        else:
            hi = 0
            lo = pk
        if hi == 0 and lo == 0:
            r = LEVEL_NONE
        else:
            if hi == 0:
                v = lo
                e = 0
            else:
                v = (hi << 7) | (lo >> 17)
                e = 17
            x = v
            nb = 0
            if x >= 0x10000:
                x >>= 16
                nb += 16
            if x >= 0x100:
                x >>= 8
                nb += 8
            if x >= 0x10:
                x >>= 4
                nb += 4
            if x >= 4:
                x >>= 2
                nb += 2
            if x >= 2:
                x >>= 1
                nb += 1
            nb += x
            if nb > 9:
                f = (v >> (nb - 9)) & 0xFF
            else:
                f = (v << (9 - nb)) & 0xFF
            r = ((nb - 1 + e) << 8) + int(lt[f]) + add
        if k == 0:
            l2 = r
        elif k == 1:
            l4 = r
        elif k == 2:
            ln = r
        else:
            lp = r
        k += 1
    lrms = (l2 - ln) >> 1
    m[_LEVEL] = lrms - int(m[_LCPU])
    m[_KURT] = ln + l4 - 2 * l2
    m[_CREST] = lp - lrms
    return 1


def log2_q8(v):
    """256 * log2(v) as the device computes it, for a Python int 0 < v < 2^72 (host/tests);
    LEVEL_NONE for 0."""
    if v < 0:
        raise ValueError("log2_q8 needs v >= 0, got %r" % (v,))
    c = v >> 48
    if c >= (1 << 24):
        raise ValueError("log2_q8 takes values below 2^72")
    return _log2_3(_LOG_TAB, c, (v >> 24) & _LIMB, v & _LIMB)


class Features:
    def __init__(self, f_s, adc_bits=12, counts_per_unit=128.0, window_s=1.0, decim=48,
                 max_samples_per_beat=128, z=8, med_k=7, warmup=2048, frac_bits=None,
                 beats_per_s=237.5, seg_beats=4):
        if not 1 <= adc_bits <= 15:
            raise ValueError("adc_bits must be 1..15, got %r" % (adc_bits,))
        if not 1 <= decim <= 4096:
            raise ValueError("KAIROS decimation must be 1..4096 samples, got %r" % (decim,))
        if not 1 <= max_samples_per_beat <= 512:
            raise ValueError("max_samples_per_beat must be 1..512, got %r"
                             % (max_samples_per_beat,))

        if not 2 <= z <= 64:
            raise ValueError("exceedance factor z must be 2..64 (times the median |y|), got %r"
                             % (z,))
        if not 2 <= med_k <= 12:
            raise ValueError("median tracker step med_k must be 2..12, got %r" % (med_k,))
        if not counts_per_unit > 0:
            raise ValueError("counts_per_unit must be > 0, got %r" % (counts_per_unit,))
        wmax = int(round(window_s * f_s))
        if wmax < max_samples_per_beat:
            raise ValueError("window_s * f_s (%d samples) must be >= max_samples_per_beat (%d)"
                             % (wmax, max_samples_per_beat))
        if frac_bits is None:
            frac_bits = 13 - adc_bits if adc_bits < 13 else 0
        if not 1 <= seg_beats <= 16:
            raise ValueError("seg_beats must be 1..16, got %r" % (seg_beats,))
        # closed segments so that they span window_s (the open one adds up to seg_beats)
        capacity = max(1, int(window_s * beats_per_s / seg_beats + 0.999))
        self.seg_beats = seg_beats
        self.f_s = f_s
        self.adc_bits = adc_bits
        self.decim = decim
        self.frac_bits = frac_bits
        self.counts_per_unit = counts_per_unit
        self.capacity = capacity
        self.max_samples = max_samples_per_beat
        self.z = z
        kmax = max_samples_per_beat // decim + 2
        self.kmax = kmax
        self.mem = array.array("i", bytes(4 * (_KOUT + kmax + _REC * capacity)))
        m = self.mem
        m[_DECIM] = decim
        # the decimated value (sum * rcp + 2^15) >> 16 keeps |sum * rcp| < 2^31
        m[_RCP] = ((1 << (16 + frac_bits)) + decim // 2) // decim
        m[_MID] = 1 << (adc_bits - 1)
        m[_ZQ] = z
        m[_MEDK] = med_k
        m[_WARMUP] = warmup
        m[_CAP] = capacity
        m[_WMAX] = wmax
        m[_SEGB] = seg_beats
        m[_KMAX] = kmax
        m[_LCPU] = log2_q8(int(round(counts_per_unit * 65536))) - (16 << 8)
        self.kout = _KOUT    # decimated samples of the last block(): mem[kout : kout + k]
        self.reset()

    def set_z(self, z):
        """Exceedance factor: |y| > z * median |y| (2..64)."""
        if not 2 <= z <= 64:
            raise ValueError("exceedance factor z must be 2..64, got %r" % (z,))
        self.z = z
        self.mem[_ZQ] = z

    def reset(self):
        m = self.mem
        for i in range(_DECIM):
            m[i] = 0
        m[_DACC] = _BIAS
        m[_DCM] = _BIAS
        for i in range(_WH, _KOUT):
            if i not in (_LCPU, _KMAX, _DCM, _SEGB):
                m[i] = 0
        m[_MED] = 16
        m[_LEVEL] = LEVEL_NONE

    def block(self, buf, n):
        return block(self.mem, buf, n)

    def end_beat(self, events=0):
        """Close the beat; ``events`` (stuck/dead-sensor beats, overruns, coherence loss: the
        beat's counted events) join this beat's exceedances in the window's anomaly count."""
        return end_beat(self.mem, events)

    @property
    def level(self):
        return self.mem[_LEVEL]

    @property
    def kurt(self):
        return self.mem[_KURT]

    @property
    def crest(self):
        return self.mem[_CREST]

    @property
    def anoms(self):
        """Anomalies in the window: exceedances plus counted events."""
        return self.mem[_AN]

    def beat_stats(self):
        """This beat's (samples, sum of samples, exceedances + events, stuck flag) and the
        median |y| tracker (Q4): a tuple for tests and reports."""
        m = self.mem
        return (m[_BN], m[_BSX], m[_BEXC], m[_STUCK], m[_MED])

    def window(self):
        """(samples, closed segments) in the window."""
        return self.mem[_AWN], self.mem[_WC]
