"""Integer fixed-point helpers shared by the Emissary (shared/kairos.py) and host code: the Q14
phasor table and 30-bit phase, bit lengths, 24-bit-limb numbers, and the Q16 coherence of
window totals. Both runtimes; no intermediate reaches 2^30; nothing allocates.

Public API
----------
COS_Q14                                array('h'), 1025 entries: round(16384 cos(2 pi i / 1024))
cos_sin_q14(theta) -> (c, s)           Q14 phasor of a 30-bit phase (1024-step table, linear
                                       interpolation rounded half up); same code as Emissary.add
coherence_q16(t_re, t_im, e0, el) -> int      C = |T|^2 / (E0 EL) in Q16 from Python ints
coherence_limbs(rh, rl, ih, il, eh, el, lh, ll) -> int   the same from hi*2^24 + lo limbs
bitlen(v) -> int                       bit length of 0 <= v < 2^31 (no int.bit_length on MicroPython)
docs/DEVICE.md "KAIROS integer definition" describes every rounding.
"""
import array

from shared.compat import micropython, const  # noqa: F401
# the coherence functions are viper on MicroPython (machine words, no boxing): the Emissary
# calls them every beat; on CPython they are plain Python

PHASE_MASK = const(0x3FFFFFFF)   # 2^30 = one turn
QUARTER = const(0x10000000)      # pi/2 in phase units
FRAC_MASK = const(0xFFFFF)       # low 20 bits of the phase: interpolation fraction
FRAC_HALF = const(0x80000)
LIMB_MASK = const(0xFFFFFF)      # limb numbers are hi * 2^24 + lo with 0 <= lo < 2^24
C_MAX = const(65535)

# round(16384 * cos(pi * j / 512)) for j = 0..256 (a quarter turn), int16 little-endian.
# A literal, so every runtime (rp2 floats are 32-bit) gets identical values;
# tests/test_kairos_reference.py re-derives it in float64.
_QUARTER_HEX = (
    "00400040ff3ffd3ffb3ff83ff53ff13fec3fe73fe13fdb3fd43fcc3fc43fbb3f"
    "b13fa73f9c3f913f853f783f6b3f5d3f4f3f403f303f203f0f3ffd3eeb3ed83e"
    "c53eb13e9d3e883e723e5c3e453e2d3e153efc3de33dc93daf3d933d783d5b3d"
    "3f3d213d033de43cc53ca53c853c643c423c203cfd3bda3bb63b923b6d3b473b"
    "213bfa3ad33aab3a823a593a303a063adb39b039843958392b39fd38cf38a138"
    "713842381238e137b0377e374b371837e536b1367d3648361236dc35a5356e35"
    "3735ff34c6348d3453341934df33a33368332c33ef32b23274323632f831b931"
    "79313931f930b83076303430f22faf2f6c2f282fe42e9f2e5a2e152ecf2d882d"
    "412dfa2cb22c6a2c212cd82b8f2b452bfb2ab02a652a1a2ace2981293529e728"
    "9a284c28fe27af2760271127c12671262026cf257e252c25da2488243524e223"
    "8e233b23e72292223d22e82193213d21e72091203a20e31f8c1f341fdc1e841e"
    "2b1ed31d791d201dc61c6c1c121cb81b5d1b021ba71a4b1aef1993193719db18"
    "7e182118c41766170917ab164c16ee1590153115d21473141314b4135413f412"
    "94123412d31173111211b1105010ee0f8d0f2b0fca0e680e060ea40d410ddf0c"
    "7c0c1a0cb70b540bf10a8e0a2b0ac709640901099d083908d60772070e07aa06"
    "4606e2057e051a05b5045104ed0388032403c0025b02f70192012e01c9006500"
    "0000"
)


def _build_table():
    import binascii
    quarter = array.array("h", binascii.unhexlify(_QUARTER_HEX))
    t = array.array("h", bytes(2050))
    for i in range(1025):
        k = i & 1023
        quad = k >> 8
        j = k & 255
        if quad == 0:
            v = quarter[j]
        elif quad == 1:
            v = -quarter[256 - j]
        elif quad == 2:
            v = -quarter[j]
        else:
            v = quarter[256 - j]
        t[i] = v
    return t


COS_Q14 = _build_table()


def cos_sin_q14(theta):
    """(cos, sin) of the 30-bit phase theta in Q14: table of 1024 steps per turn, linear
    interpolation rounded half up: c = T[i] + (((T[i+1] - T[i]) * f + 2^19) >> 20)."""
    tab = COS_Q14
    i = theta >> 20
    f = theta & FRAC_MASK
    c0 = tab[i]
    c = c0 + (((tab[i + 1] - c0) * f + FRAC_HALF) >> 20)
    ts = (theta - QUARTER) & PHASE_MASK
    i = ts >> 20
    f = ts & FRAC_MASK
    s0 = tab[i]
    s = s0 + (((tab[i + 1] - s0) * f + FRAC_HALF) >> 20)
    return c, s


@micropython.viper
def bitlen(v: int) -> int:
    """Bit length of 0 <= v < 2^31 (no int.bit_length on MicroPython)."""
    n = 0
    if v >= 0x10000:
        v >>= 16
        n += 16
    if v >= 0x100:
        v >>= 8
        n += 8
    if v >= 0x10:
        v >>= 4
        n += 4
    if v >= 4:
        v >>= 2
        n += 2
    if v >= 2:
        v >>= 1
        n += 1
    return n + v


@micropython.viper
def coherence_limbs(rh: int, rl: int, ih: int, il: int, eh: int, el: int, lh: int,
                    ll: int) -> int:
    # C = (T_re^2 + T_im^2) / (E0 * EL) in Q16 from 24-bit-limb totals (see DEVICE.md), in one
    # call: the exponents (bit lengths), mantissas and the Q16 ratio are inlined (a call from
    # viper costs ~6-10 us on the Pico; as helpers this was 17 calls every beat)
    if (eh == 0 and el == 0) or (lh == 0 and ll == 0):
        return 0
    # the exponents: et = max(_limb_exp(rh, rl, 14), _limb_exp(ih, il, 14)),
    # e0 = _limb_exp(eh, el, 15), e1 = _limb_exp(lh, ll, 15)
    et = 0
    e0 = 0
    e1 = 0
    k = 0
    while k < 4:
        if k == 0:
            h = rh
            lo = rl
        elif k == 1:
            h = ih
            lo = il
        elif k == 2:
            h = eh
            lo = el
        else:
            h = lh
            lo = ll
        if h == 0:
            v = lo
            nb = 0
        elif h == -1:
            v = (1 << 24) - lo
            nb = 0
        else:
            v = (0 - h if h < 0 else h) + 1
            nb = 24
        if v >= 0x10000:
            v >>= 16
            nb += 16
        if v >= 0x100:
            v >>= 8
            nb += 8
        if v >= 0x10:
            v >>= 4
            nb += 4
        if v >= 4:
            v >>= 2
            nb += 2
        if v >= 2:
            v >>= 1
            nb += 1
        nb += v
        bits = 14 if k < 2 else 15
        e = nb - bits if nb > bits else 0
        if k == 0:
            et = e
        elif k == 1:
            if e > et:
                et = e
        elif k == 2:
            e0 = e
        else:
            e1 = e
        k += 1
    # the mantissas (_limb_shr)
    if et >= 24:
        mr = rh >> (et - 24)
        mi = ih >> (et - 24)
    else:
        mr = (rh << (24 - et)) + (rl >> et)
        mi = (ih << (24 - et)) + (il >> et)
    if e0 >= 24:
        m0 = eh >> (e0 - 24)
    else:
        m0 = (eh << (24 - e0)) + (el >> e0)
    if e1 >= 24:
        m1 = lh >> (e1 - 24)
    else:
        m1 = (lh << (24 - e1)) + (ll >> e1)
    if m0 == 0 or m1 == 0:
        return 0
    # _ratio_q16(num, den, kk)
    num = mr * mr + mi * mi
    den = m0 * m1
    kk = 16 + 2 * et - e0 - e1
    if den >= 0x400000:
        v = den
        nb = 0
        if v >= 0x10000:
            v >>= 16
            nb += 16
        if v >= 0x100:
            v >>= 8
            nb += 8
        if v >= 0x10:
            v >>= 4
            nb += 4
        if v >= 4:
            v >>= 2
            nb += 2
        if v >= 2:
            v >>= 1
            nb += 1
        sh = nb + v - 22
        den >>= sh
        kk -= sh
    if kk < 0:
        if kk <= -30:
            return 0
        num >>= 0 - kk
        kk = 0
    q = num // den
    r = num - q * den
    if q > C_MAX:
        return C_MAX
    while kk > 0:
        sh = 8 if kk >= 8 else kk
        r <<= sh
        d = r // den
        q = (q << sh) + d
        r -= d * den
        kk -= sh
        if q > C_MAX:
            return C_MAX
    return q


def coherence_q16(t_re, t_im, e0, el):
    """The device's integer coherence of window totals given as plain Python ints (host/tests).
    Identical to what Emissary.end_beat computes from the same totals."""
    return coherence_limbs(t_re >> 24, t_re & LIMB_MASK, t_im >> 24, t_im & LIMB_MASK,
                            e0 >> 24, e0 & LIMB_MASK, el >> 24, el & LIMB_MASK)
