"""The arbiter (SPEC 4.5): four cores R, B, E, O, the entropy model, the decision, and the
genome (weights) with its genomic PID and E feedback. All Q16 (65536 = 1.0), integer only, no
allocation per beat (viper on MicroPython). docs/DEVICE.md "Arbiter" defines every quantity;
this docstring is the summary.

Per beat (inputs measured by the beat: shared/vibration.py features, the actuator error, the
sensor-health and coherence-loss threats):
  z       = b + w_level*level + w_kurt*kurt + w_crest*crest + w_anoms*anoms      (entropy model)
  threat  = max(sigmoid(z), ext)        ext = the beat's sensor-fault / coherence-loss threat
  R core  urgency u = min(0.9, anoms/100)       repair_score = wR * u
  B core  conserve = |actuator error| (0..1)    stability = min(1, 4 * wB * conserve)
  E core  threat                                 (thresholds below)
  O core  expected_gain = opt_gain = min(0.5, 0.12 * wO)
  decision: QUARANTINE threat >= 0.85; ALERT >= 0.60; APPLY_BALANCE stability > 0.25 and
            repair_score < 0.1; APPLY_OPTIMIZE opt_gain > 0.1; else NOOP.
Recalibrate (beat step 7), with e = T_Lambda - measured beat interval (seconds, Q16):
  dO = -PID(e) (genomic PID: output in [-0.05, 0.05], eps-reset when |e| < 1e-4 s)
  O  = clamp(O + dO, 0.1, 0.9)
  E  = 0.15 * threat * exp(-t/50) * (1 - O/0.3) if threat > 0.5 else 0.10, clamped [0.05, 0.30]
  normalise R, B, E, O to sum exactly 65536; then, while the pulse is on time (|e| < eps, the
  genomic PID's eps-reset), every weight relaxes toward its initial value by 1/2^relax_k.
  On time the genome stays home (NOOP); a beat that stays late pushes O up and the others
  down through the normalisation until opt_gain > 0.1: APPLY_OPTIMIZE (the beat sheds optional
  work, device/beat.py), which is what an overloaded beat needs.

Model weights: level, kurt, crest in Q12 per Q8 feature unit (|w| < 16), anoms in Q16 per
anomaly (|w| < 8), bias in Q12 (|b| < 64). z is Q12, clamped to +-12; sigmoid by a 769-entry
Q16 table (steps of 1/32) with linear interpolation (error < 1.3e-5). The seed model
threat = sigmoid(0.12 * anoms) is set_seed_model(0.12, 0.0): 5 anomalies -> 42315/65536
= 0.6457.

Public API
----------
decisions are shared/protocol_codes.py DECISION_* (NOOP 0 .. QUARANTINE 4)
Arbiter(model=None, period_s=0.004211, a_max=1024, genome=(0.25, 0.25, 0.15, 0.35),
        quarantine=0.85, alert=0.60, balance_stability=0.25, balance_repair=0.1,
        optimize_gain=0.1, relax_k=8)
    .step(level, kurt, crest, anoms, act_err_q16=0, ext_q16=0) -> decision
    .recalibrate(err_q16)              genomic PID + genome update
    .set_model(bias, w_level, w_kurt, w_crest, w_anoms)   floats; ValueError when out of range
    .set_seed_model(w, b)              the seed's threat = sigmoid(w * anoms + b)
    .model() -> (bias, w_level, w_kurt, w_crest, w_anoms)   floats as quantised
    .set_thresholds(quarantine=None, alert=None), .set_period(s), .set_genome(R, B, E, O)
    .threat_q16(anoms, level=..., kurt=0, crest=0) -> int   model threat (tests, host)
    results (Q16 ints): .threat .decision .R .B .E .O; the others by name:
                        .value("urgency" | "repair" | "conserve" | "stability" | "gain" (=
                        expected_gain = opt_gain) | "threat_model" | "anoms" | "dO" | "z" |
                        "t_threat")
mul16(a, b), normalise4(r, b, e, o), sigmoid_q16(z_q12)
step(st, level, kurt, crest, anoms, err, ext), recal(st, exp_table, out, relax)   the kernels on
    an Arbiter's .st (the beat calls step directly: a method call costs ~15 us on the Pico)
"""
import array
import math

from shared.compat import micropython, const  # noqa: F401
try:
    from shared.compat import ptr16, ptr32    # CPython stand-ins; viper has them built in
except ImportError:
    pass

from device.pid import genomic_pid
from shared.vibration import LEVEL_NONE

# the decisions: shared/protocol_codes.py DECISION_* (folded here for the viper kernel)
_NOOP = const(0)
_APPLY_BALANCE = const(1)
_APPLY_OPTIMIZE = const(2)
_ALERT = const(3)
_QUARANTINE = const(4)

_Q16_MAX = const(65535)
ONE = const(65536)
_URGENCY_MAX = const(58982)      # 0.9
_GAIN_MAX = const(32768)         # 0.5
_GAIN_PER_O = const(7864)        # 0.12
_E_GAIN = const(9830)            # 0.15
_E_LOW = const(6554)             # 0.10 (threat <= 0.5)
_E_MIN = const(3277)             # 0.05
_E_MAX = const(19661)            # 0.30
_O_MIN = const(6554)             # 0.1
_O_MAX = const(58982)            # 0.9
HALF = const(32768)             # threat 0.5
_EXP_LEN = const(600)            # exp(-t/50) table length: round(65536*exp(-600/50)) = 0
Z_LIM = const(49151)            # |z| <= 12 - 2^-12 (Q12): sigmoid(12) rounds to 1.0 in Q16

# state words (array('i'), all stored >= 0; signed ones + _B)
_B = const(0x20000000)
_BIAS = const(0)      # model bias Q12 + _B
_WL = const(1)        # weights + _B
_WK = const(2)
_WC = const(3)
_WA = const(4)        # Q16
_AMAX = const(5)
_QTH = const(6)
_ATH = const(7)
_STH = const(8)
_RTH = const(9)
_GTH = const(10)
_R = const(11)
_BB = const(12)
_E = const(13)
_O = const(14)
_R0 = const(15)
_B0 = const(16)
_E0 = const(17)
_O0 = const(18)
_RK = const(19)       # relax_k
_TT = const(20)       # t_threat + 1 (0 = threat not above 0.5)
_ANOMS = const(21)
_THREAT = const(22)
_THM = const(23)      # model threat
_URG = const(24)
_REP = const(25)
_CONS = const(26)
_STAB = const(27)
_GAIN = const(28)
_DEC = const(29)
_DO = const(30)       # dO + _B
_Z = const(31)        # z + _B
_CAPM = const(32)     # cap on the model's threat (below QUARANTINE while the window fills)
_NST = const(33)


def q16(x):
    v = int(round(x * 65536.0))
    return 0 if v < 0 else (_Q16_MAX if v > _Q16_MAX else v)


def _sig_table():
    # round(65536 * sigmoid(i/32 - 12)) capped at 65535, i = 0..768
    t = array.array("H", bytes(2 * 769))
    for i in range(769):
        z = i / 32.0 - 12.0
        if z >= 0:
            s = 1.0 / (1.0 + math.exp(-z))
        else:
            ez = math.exp(z)
            s = ez / (1.0 + ez)
        t[i] = q16(s)
    return t


_SIG = _sig_table()


def _exp_table():
    ex = array.array("H", bytes(2 * _EXP_LEN))
    for t in range(_EXP_LEN):
        ex[t] = q16(math.exp(-t / 50.0))
    return ex


@micropython.viper
def mul16(a: int, b: int) -> int:
    """round-ish(a * b / 65536) for 0 <= a, b <= 65536 without intermediates >= 2^30:
    (a*(b>>8) + ((a*(b&255) + 128) >> 8) + 128) >> 8  (within 1 LSB of the exact rounding)."""
    return (a * (b >> 8) + ((a * (b & 255) + 128) >> 8) + 128) >> 8


@micropython.viper
def _div16(x: int, total: int) -> int:
    # round(x * 65536 / total) for 0 <= x <= total < 2^21, in two 8-bit long-division steps
    y = x << 8
    q1 = y // total
    r = y - q1 * total
    q2 = ((r << 8) + (total >> 1)) // total
    return (q1 << 8) + q2


@micropython.viper
def _sigmoid(tab, z: int) -> int:
    # z in Q12, |z| <= Z_LIM; linear interpolation in a table of 1/32 steps (error < 1.3e-5)
    t = ptr16(tab)
    u = z + (12 << 12)
    i = u >> 7
    f = u & 0x7F
    a = int(t[i])
    if f == 0:
        return a
    b = int(t[i + 1])
    return a + (((b - a) * f + 64) >> 7)


def sigmoid_q16(z_q12):
    """The device's sigmoid of a Q12 z (clamped to +-16), in Q16."""
    if z_q12 > Z_LIM:
        z_q12 = Z_LIM
    elif z_q12 < -Z_LIM:
        z_q12 = -Z_LIM
    return _sigmoid(_SIG, z_q12)


def normalise4(r, b, e, o):
    """Q16 weights scaled to sum exactly 65536; each is round(x*65536/total) and the rounding
    residue (at most +-2) is added to the largest weight (first of R, B, E, O on ties)."""
    t = r + b + e + o
    if t <= 0:
        return 16384, 16384, 16384, 16384
    r = _div16(r, t)
    b = _div16(b, t)
    e = _div16(e, t)
    o = _div16(o, t)
    res = ONE - (r + b + e + o)
    if res:
        if r >= b and r >= e and r >= o:
            r += res
        elif b >= e and b >= o:
            b += res
        elif e >= o:
            e += res
        else:
            o += res
    return r, b, e, o


@micropython.viper
def step(st, level: int, kurt: int, crest: int, anoms: int, err: int, ext: int) -> int:
    s = ptr32(st)
    sig = _SIG
    amax = int(s[_AMAX])
    a = anoms
    if a < 0:
        a = 0
    elif a > amax:
        a = amax
    s[_ANOMS] = a
    z = int(s[_BIAS]) - _B
    z += ((int(s[_WL]) - _B) * level) >> 8
    z += ((int(s[_WK]) - _B) * kurt) >> 8
    z += ((int(s[_WC]) - _B) * crest) >> 8
    z += ((int(s[_WA]) - _B) * a + 8) >> 4
    if z > Z_LIM:
        z = Z_LIM
    elif z < 0 - Z_LIM:
        z = 0 - Z_LIM
    s[_Z] = z + _B
    # _sigmoid and mul16 inlined below (a viper call costs ~6-10 us on the Pico)
    st16 = ptr16(sig)
    u = z + (12 << 12)
    i = u >> 7
    f = u & 0x7F
    tm = int(st16[i])
    if f != 0:
        tm += (((int(st16[i + 1]) - tm) * f + 64) >> 7)
    cap = int(s[_CAPM])
    if tm > cap:
        tm = cap
    s[_THM] = tm
    th = tm if tm > ext else ext
    if th > _Q16_MAX:
        th = _Q16_MAX
    s[_THREAT] = th
    u = (a << 16) // 100
    if u > _URGENCY_MAX:
        u = _URGENCY_MAX
    s[_URG] = u
    wr = int(s[_R])
    rep = (wr * (u >> 8) + ((wr * (u & 255) + 128) >> 8) + 128) >> 8
    s[_REP] = rep
    c = 0 - err if err < 0 else err
    if c > ONE:
        c = ONE
    s[_CONS] = c
    wb = int(s[_BB])
    stb = ((wb * (c >> 8) + ((wb * (c & 255) + 128) >> 8) + 128) >> 8) << 2
    if stb > _Q16_MAX:
        stb = _Q16_MAX
    s[_STAB] = stb
    g = (int(s[_O]) * _GAIN_PER_O + HALF) >> 16
    if g > _GAIN_MAX:
        g = _GAIN_MAX
    s[_GAIN] = g
    if th >= int(s[_QTH]):
        d = _QUARANTINE
    elif th >= int(s[_ATH]):
        d = _ALERT
    elif stb > int(s[_STH]) and rep < int(s[_RTH]):
        d = _APPLY_BALANCE
    elif g > int(s[_GTH]):
        d = _APPLY_OPTIMIZE
    else:
        d = _NOOP
    s[_DEC] = d
    return d


@micropython.viper
def recal(st, ex, out: int, relax: int) -> int:
    s = ptr32(st)
    x = ptr16(ex)
    s[_DO] = _B - out
    o = int(s[_O]) - out
    if o < _O_MIN:
        o = _O_MIN
    elif o > _O_MAX:
        o = _O_MAX
    th = int(s[_THREAT])
    if th > HALF:
        t = int(s[_TT])            # t_threat + 1 of the previous beat (0: was not above)
        if t >= _EXP_LEN:
            t = _EXP_LEN
        s[_TT] = t + 1
        f = ONE - (o * 10) // 3
        if f <= 0:
            e = _E_MIN
        else:
            xt = int(x[t]) if t < _EXP_LEN else 0
            e = int(mul16(int(mul16(int(mul16(_E_GAIN, th)), xt)), f))
            if e < _E_MIN:
                e = _E_MIN
            elif e > _E_MAX:
                e = _E_MAX
    else:
        s[_TT] = 0
        e = _E_LOW
    r = int(s[_R])
    b = int(s[_BB])
    t = r + b + e + o
    # round(x * 65536 / t) for each weight (_div16, inlined: a viper call costs ~6-10 us on the
    # Pico)
    y = r << 8
    q1 = y // t
    r = (q1 << 8) + ((((y - q1 * t) << 8) + (t >> 1)) // t)
    y = b << 8
    q1 = y // t
    b = (q1 << 8) + ((((y - q1 * t) << 8) + (t >> 1)) // t)
    y = e << 8
    q1 = y // t
    e = (q1 << 8) + ((((y - q1 * t) << 8) + (t >> 1)) // t)
    y = o << 8
    q1 = y // t
    o = (q1 << 8) + ((((y - q1 * t) << 8) + (t >> 1)) // t)
    res = ONE - (r + b + e + o)
    if res:
        if r >= b and r >= e and r >= o:
            r += res
        elif b >= e and b >= o:
            b += res
        elif e >= o:
            e += res
        else:
            o += res
    if relax:
        k = int(s[_RK])
        r += (int(s[_R0]) - r) >> k
        b += (int(s[_B0]) - b) >> k
        e += (int(s[_E0]) - e) >> k
        o += (int(s[_O0]) - o) >> k
        # the relaxed weights still sum to 65536 up to the shifts' rounding: put the residue
        # on the largest (same rule as above)
        res = ONE - (r + b + e + o)
        if res:
            if r >= b and r >= e and r >= o:
                r += res
            elif b >= e and b >= o:
                b += res
            elif e >= o:
                e += res
            else:
                o += res
    s[_R] = r
    s[_BB] = b
    s[_E] = e
    s[_O] = o
    return o


class Arbiter:
    def __init__(self, model=None, period_s=0.004211, a_max=1024,
                 genome=(0.25, 0.25, 0.15, 0.35), quarantine=0.85, alert=0.60,
                 balance_stability=0.25, balance_repair=0.1, optimize_gain=0.1, relax_k=8):
        if not 1 <= a_max <= 8191:
            raise ValueError("a_max must be in 1..8191 anomalies, got %r" % (a_max,))
        if not 1 <= relax_k <= 20:
            raise ValueError("relax_k must be 1..20 (relaxation 1/2^k per beat), got %r"
                             % (relax_k,))
        self.a_max = a_max
        self.st = array.array("i", bytes(4 * _NST))
        s = self.st
        s[_AMAX] = a_max
        s[_RK] = relax_k
        s[_STH] = q16(balance_stability)
        s[_RTH] = q16(balance_repair)
        s[_GTH] = q16(optimize_gain)
        s[_DO] = _B
        s[_Z] = _B
        s[_CAPM] = _Q16_MAX
        self.exp = _exp_table()      # exp(-t/50) in Q16 (recal's table)
        if model is None:
            from device.model_default import MODEL
            model = MODEL
        self.set_model(*model)
        self.set_thresholds(quarantine, alert)
        self.pid = genomic_pid(period_s)
        self.risk_anoms = 0
        self.set_genome(*genome)
        s[_R0] = s[_R]
        s[_B0] = s[_BB]
        s[_E0] = s[_E]
        s[_O0] = s[_O]

    # --- configuration (floats allowed) ---
    def set_model(self, bias, w_level, w_kurt, w_crest, w_anoms):
        """The entropy model: threat = sigmoid(bias + w_level*level + w_kurt*kurt +
        w_crest*crest + w_anoms*anoms), features in octaves (level, kurt, crest: log2 of rms in
        sensor units, of kurtosis, of crest factor) and anoms a count."""
        for name, v, lim in (("bias", bias, 64.0), ("w_level", w_level, 16.0),
                             ("w_kurt", w_kurt, 16.0), ("w_crest", w_crest, 16.0),
                             ("w_anoms", w_anoms, 8.0)):
            if not -lim < v < lim:     # also refuses NaN
                raise ValueError("entropy model %s = %r: allowed -%g < %s < %g"
                                 % (name, v, lim, name, lim))
        s = self.st
        s[_BIAS] = int(round(bias * 4096)) + _B
        s[_WL] = int(round(w_level * 4096)) + _B     # Q12; times a Q8 feature, >> 8: Q12
        s[_WK] = int(round(w_kurt * 4096)) + _B
        s[_WC] = int(round(w_crest * 4096)) + _B
        s[_WA] = int(round(w_anoms * 65536)) + _B

    def set_seed_model(self, w, b):
        """The seed's entropy model threat = sigmoid(w * anoms + b) (VENOM: w = 0.12, b = 0)."""
        self.set_model(b, 0.0, 0.0, 0.0, w)

    def model(self):
        s = self.st
        return ((s[_BIAS] - _B) / 4096.0, (s[_WL] - _B) / 4096.0, (s[_WK] - _B) / 4096.0,
                (s[_WC] - _B) / 4096.0, (s[_WA] - _B) / 65536.0)

    def hold_quarantine(self, hold):
        """While ``hold``, the model's threat stays below the QUARANTINE threshold (the feature
        window is still filling: a few beats of samples are no grounds to stop a machine);
        ALERT and the health threat (a dead or stuck sensor) are unaffected."""
        self.st[_CAPM] = (self.st[_QTH] - 1) if hold else _Q16_MAX

    def set_thresholds(self, quarantine=None, alert=None):
        s = self.st
        qv = s[_QTH] / 65536.0 if quarantine is None else quarantine
        av = s[_ATH] / 65536.0 if alert is None else alert
        if not 0.0 < av <= qv <= 1.0:
            raise ValueError("thresholds need 0 < alert <= quarantine <= 1, got alert=%r "
                             "quarantine=%r" % (av, qv))
        s[_QTH] = q16(qv)
        s[_ATH] = q16(av)

    @property
    def quarantine_q16(self):
        return self.st[_QTH]

    @property
    def alert_q16(self):
        return self.st[_ATH]

    def set_period(self, period_s):
        self.pid.set_sample_time(period_s)

    def set_genome(self, r, b, e, o):
        for name, v in (("R", r), ("B", b), ("E", e), ("O", o)):
            if not 0.0 <= v <= 1.0:
                raise ValueError("genome weight %s must be in [0, 1], got %r" % (name, v))
        if r + b + e + o <= 0:
            raise ValueError("genome weights must not all be 0")
        s = self.st
        s[_R], s[_BB], s[_E], s[_O] = normalise4(q16(r), q16(b), q16(e), q16(o))

    def threat_q16(self, anoms, level=LEVEL_NONE, kurt=0, crest=0):
        """The model threat for these features (no state change)."""
        s = self.st
        a = 0 if anoms < 0 else (self.a_max if anoms > self.a_max else anoms)
        z = (s[_BIAS] - _B) + (((s[_WL] - _B) * level) >> 8) + (((s[_WK] - _B) * kurt) >> 8) \
            + (((s[_WC] - _B) * crest) >> 8) + (((s[_WA] - _B) * a + 8) >> 4)
        return sigmoid_q16(z)

    # --- the beat path ---
    def step(self, level, kurt, crest, anoms, act_err_q16=0, ext_q16=0):
        return step(self.st, level, kurt, crest, anoms + self.risk_anoms, act_err_q16, ext_q16)

    def recalibrate(self, err_q16):
        pid = self.pid
        out = pid.update_error(err_q16)
        e = err_q16 if err_q16 >= 0 else -err_q16
        recal(self.st, self.exp, out, 1 if e < pid.eps else 0)

    # --- results (the words of .st; THREAT, STABILITY, ... index it) ---
    @property
    def threat(self):
        return self.st[_THREAT]

    @property
    def decision(self):
        return self.st[_DEC]

    @property
    def R(self):
        return self.st[_R]

    @property
    def B(self):
        return self.st[_BB]

    @property
    def E(self):
        return self.st[_E]

    @property
    def O(self):
        return self.st[_O]

    def value(self, name):
        """One result word by name: "threat", "threat_model", "urgency", "repair", "conserve",
        "stability", "gain" (= expected_gain = opt_gain), "anoms" (Q16 or counts as stored),
        "dO", "z" (signed), "t_threat" (beats above 0.5; -1 when not). Tests and reports: the
        names are one string, split when asked, so they are not interned on a board."""
        names = "threat threat_model urgency repair conserve stability gain anoms dO z t_threat"
        i = names.split().index(name)
        word = (_THREAT, _THM, _URG, _REP, _CONS, _STAB, _GAIN, _ANOMS, _DO, _Z, _TT)[i]
        v = self.st[word]
        if word == _DO or word == _Z:
            return v - _B
        if word == _TT:
            return v - 1
        return v
