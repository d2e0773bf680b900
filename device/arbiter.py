"""The arbiter (SPEC 4.5): four cores R, B, E, O, the entropy model, the decision, and the
genome (weights) with its genomic PID and E feedback. All Q16 (65536 = 1.0), integer only,
no allocation per beat on MicroPython. docs/DEVICE.md "Arbiter" defines every formula the seed
leaves open; this docstring is the summary.

Per beat (after the Emissary):
  anoms   = min(A_MAX, window_anoms + risk_anoms)                       (count)
  threat  = TABLE[anoms], TABLE[a] = round(65536 * sigmoid(w*a + b)) capped at 65535
  R core  urgency u = min(0.9, anoms/100)       repair_score = mul(wR, u)  (R's weighted cost)
  B core  conserve = |actuator error| (0..1)    stability = min(1, 4 * mul(wB, conserve))
          (stabilisation demand; equals |error| at the neutral weight wB = 0.25)
  E core  threat                                 (thresholds below)
  O core  expected_gain = min(0.5, 0.12 * wO)    opt_gain = expected_gain
  decision: QUARANTINE threat >= 0.85; ALERT >= 0.60; APPLY_BALANCE stability > 0.25 and
            repair_score < 0.1; APPLY_OPTIMIZE opt_gain > 0.1; else NOOP.
Recalibrate (beat step 7):
  dO = -PID(dT) (genomic PID, output in [-0.05, 0.05]); O = clamp(O + dO, 0.1, 0.9)
  t  = beats since threat first exceeded 0.5 (0 on that beat; reset when threat <= 0.5)
  E  = 0.15 * threat * exp(-t/50) * (1 - O/0.3) if threat > 0.5 else 0.10, clamped [0.05, 0.30]
  normalise R, B, E, O so that the four Q16 weights sum to exactly 65536.

Public API
----------
Decision codes NOOP 0, APPLY_BALANCE 1, APPLY_OPTIMIZE 2, ALERT 3, QUARANTINE 4; NAMES tuple.
Arbiter(w=0.12, b=0.0, period_s=0.004211, a_max=1024, genome=(0.25, 0.25, 0.15, 0.35),
        quarantine=0.85, alert=0.60, balance_stability=0.25, balance_repair=0.1,
        optimize_gain=0.1)
    .step(window_anoms, act_err_q16=0) -> decision     cores + decision (0 alloc)
    .recalibrate(dT_q16) -> None                       genome update (0 alloc)
    .set_model(w, b)          rebuild the threat table now (MODEL frame; between beats; allocates)
    .stage_model(w, b); .stage_step(max_entries) -> bool; .model_pending
                              the same in slices: build the spare table in idle time, swap when
                              complete (no beat pays for the whole table)
    .set_period(period_s)     genomic PID sample time follows the pulse
    .set_thresholds(quarantine=None, alert=None)
    .set_genome(R, B, E, O)   floats, normalised
    .risk_anoms               the genome's risk anomaly count (host injects it)
    results (Q16 ints): .threat .urgency .repair_score .conserve .stability .expected_gain
                        .opt_gain .decision .anoms .R .B .E .O .dO .t_threat
    threat_q16(anoms) -> int  table lookup (tests)
mul16(a, b) -> int            Q16 product of two values in 0..65536 without a 2^30 overflow
normalise4(r, b, e, o) -> (r, b, e, o)   exact-sum Q16 normalisation (tests/host)
"""
import array
import math

from shared.compat import micropython, const  # noqa: F401

from device.pid import genomic_pid

NOOP = const(0)
APPLY_BALANCE = const(1)
APPLY_OPTIMIZE = const(2)
ALERT = const(3)
QUARANTINE = const(4)
NAMES = ("NOOP", "APPLY_BALANCE", "APPLY_OPTIMIZE", "ALERT", "QUARANTINE")

Q16_MAX = const(65535)
ONE = const(65536)
URGENCY_MAX = const(58982)      # 0.9
GAIN_MAX = const(32768)         # 0.5
GAIN_PER_O = const(7864)        # 0.12
E_GAIN = const(9830)            # 0.15
E_LOW = const(6554)             # 0.10 (threat <= 0.5)
E_MIN = const(3277)             # 0.05
E_MAX = const(19661)            # 0.30
O_MIN = const(6554)             # 0.1
O_MAX = const(58982)            # 0.9
HALF = const(32768)             # threat 0.5
EXP_LEN = const(600)            # exp(-t/50) table length: round(65536*exp(-600/50)) = 0


def q16(x):
    v = int(round(x * 65536.0))
    return 0 if v < 0 else (Q16_MAX if v > Q16_MAX else v)


@micropython.native
def mul16(a, b):
    """round-ish(a * b / 65536) for 0 <= a, b <= 65536 without intermediates >= 2^30:
    (a*(b>>8) + ((a*(b&255) + 128) >> 8) + 128) >> 8  (within 1 LSB of the exact rounding)."""
    return (a * (b >> 8) + ((a * (b & 255) + 128) >> 8) + 128) >> 8


@micropython.native
def _div16(x, total):
    # round(x * 65536 / total) for 0 <= x <= total < 2^21, in two 8-bit long-division steps
    y = x << 8
    q1 = y // total
    r = y - q1 * total
    q2 = ((r << 8) + (total >> 1)) // total
    return (q1 << 8) + q2


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


def _check_model(w, b):
    if not (-1e6 < w < 1e6 and -1e6 < b < 1e6):
        raise ValueError("entropy model w, b must be finite and |.| < 1e6, got (%r, %r)" % (w, b))


def _fill(t, i, j, w, b):
    for a in range(i, j):
        z = w * a + b
        if z >= 0:
            s = 1.0 / (1.0 + math.exp(-z)) if z < 700 else 1.0
        else:
            ez = math.exp(z) if z > -700 else 0.0
            s = ez / (1.0 + ez)
        t[a] = q16(s)


class Arbiter:
    def __init__(self, w=0.12, b=0.0, period_s=0.004211, a_max=1024,
                 genome=(0.25, 0.25, 0.15, 0.35), quarantine=0.85, alert=0.60,
                 balance_stability=0.25, balance_repair=0.1, optimize_gain=0.1):
        if not 1 <= a_max <= 8191:
            raise ValueError("a_max must be in 1..8191 anomalies, got %r" % (a_max,))
        self.a_max = a_max
        self._table = array.array("H", bytes(2 * (a_max + 1)))
        self._staged = array.array("H", bytes(2 * (a_max + 1)))
        self._stage_at = -1          # next entry of a staged model, -1 when none
        ex = array.array("H", bytes(2 * EXP_LEN))
        for t in range(EXP_LEN):
            ex[t] = q16(math.exp(-t / 50.0))
        self._exp = ex
        self.w = self.b = 0.0
        self.set_model(w, b)
        self.quarantine_q16 = self.alert_q16 = 0
        self.set_thresholds(quarantine, alert)
        self.stab_q16 = q16(balance_stability)
        self.repair_q16 = q16(balance_repair)
        self.gain_q16 = q16(optimize_gain)
        self.pid = genomic_pid(period_s)
        self.risk_anoms = 0
        self.anoms = 0
        self.threat = 0
        self.urgency = 0
        self.repair_score = 0
        self.conserve = 0
        self.stability = 0
        self.expected_gain = 0
        self.opt_gain = 0
        self.decision = NOOP
        self.dO = 0
        self.t_threat = -1
        self.R = self.B = self.E = self.O = 0
        self.set_genome(*genome)

    # --- configuration (floats allowed) ---
    def set_model(self, w, b):
        """Rebuild the threat table now: TABLE[a] = round(65536*sigmoid(w*a + b)), capped 65535
        (A_MAX + 1 float evaluations: ~1 ms for 1025 entries on the unix port)."""
        _check_model(w, b)
        _fill(self._table, 0, self.a_max + 1, w, b)
        self.w = w
        self.b = b
        self._stage_at = -1

    def stage_model(self, w, b):
        """Start building a new table in the spare buffer; stage_step() fills it in slices (in a
        beat's idle time) and swaps it in when complete, so no beat pays for the whole table."""
        _check_model(w, b)
        self._sw = w
        self._sb = b
        self._stage_at = 0

    def stage_step(self, max_entries):
        """Fill up to max_entries staged entries; True when the new model became active."""
        i = self._stage_at
        if i < 0:
            return False
        j = i + max_entries
        n = self.a_max + 1
        if j > n:
            j = n
        _fill(self._staged, i, j, self._sw, self._sb)
        if j < n:
            self._stage_at = j
            return False
        self._table, self._staged = self._staged, self._table
        self.w = self._sw
        self.b = self._sb
        self._stage_at = -1
        return True

    @property
    def model_pending(self):
        return self._stage_at >= 0

    def set_thresholds(self, quarantine=None, alert=None):
        qv = self.quarantine_q16 / 65536.0 if quarantine is None else quarantine
        av = self.alert_q16 / 65536.0 if alert is None else alert
        if not 0.0 < av <= qv <= 1.0:
            raise ValueError("thresholds need 0 < alert <= quarantine <= 1, got alert=%r "
                             "quarantine=%r" % (av, qv))
        self.quarantine_q16 = q16(qv)
        self.alert_q16 = q16(av)

    def set_period(self, period_s):
        self.pid.set_sample_time(period_s)

    def set_genome(self, r, b, e, o):
        for name, v in (("R", r), ("B", b), ("E", e), ("O", o)):
            if not 0.0 <= v <= 1.0:
                raise ValueError("genome weight %s must be in [0, 1], got %r" % (name, v))
        if r + b + e + o <= 0:
            raise ValueError("genome weights must not all be 0")
        self.R, self.B, self.E, self.O = normalise4(q16(r), q16(b), q16(e), q16(o))

    def threat_q16(self, anoms):
        if anoms < 0:
            anoms = 0
        return self._table[anoms if anoms <= self.a_max else self.a_max]

    # --- the beat path ---
    @micropython.native
    def step(self, window_anoms, act_err_q16=0):
        a = window_anoms + self.risk_anoms
        if a < 0:
            a = 0
        elif a > self.a_max:
            a = self.a_max
        self.anoms = a
        th = self._table[a]
        self.threat = th
        u = (a << 16) // 100
        if u > URGENCY_MAX:
            u = URGENCY_MAX
        self.urgency = u
        rep = mul16(self.R, u)
        self.repair_score = rep
        c = -act_err_q16 if act_err_q16 < 0 else act_err_q16
        if c > ONE:
            c = ONE
        self.conserve = c
        st = mul16(self.B, c) << 2
        if st > Q16_MAX:
            st = Q16_MAX
        self.stability = st
        g = (self.O * GAIN_PER_O + HALF) >> 16
        if g > GAIN_MAX:
            g = GAIN_MAX
        self.expected_gain = g
        self.opt_gain = g
        if th >= self.quarantine_q16:
            d = QUARANTINE
        elif th >= self.alert_q16:
            d = ALERT
        elif st > self.stab_q16 and rep < self.repair_q16:
            d = APPLY_BALANCE
        elif g > self.gain_q16:
            d = APPLY_OPTIMIZE
        else:
            d = NOOP
        self.decision = d
        return d

    @micropython.native
    def recalibrate(self, dT_q16):
        out = self.pid.update_error(dT_q16)
        self.dO = -out
        o = self.O - out
        if o < O_MIN:
            o = O_MIN
        elif o > O_MAX:
            o = O_MAX
        th = self.threat
        if th > HALF:
            t = self.t_threat + 1
            if t >= EXP_LEN:
                t = EXP_LEN           # saturates: exp term is 0 from here on
            self.t_threat = t
            f = ONE - (o * 10) // 3
            if f <= 0:
                e = E_MIN
            else:
                ex = self._exp[t] if t < EXP_LEN else 0
                e = mul16(mul16(mul16(E_GAIN, th), ex), f)
                if e < E_MIN:
                    e = E_MIN
                elif e > E_MAX:
                    e = E_MAX
        else:
            self.t_threat = -1
            e = E_LOW
        r = self.R
        b = self.B
        # normalise4() inlined: its returned tuple would allocate on the beat path
        t = r + b + e + o
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
        self.R = r
        self.B = b
        self.E = e
        self.O = o
