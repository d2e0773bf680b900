"""One general PID controller in integer fixed point (SPEC 4.4), for the genomic PID and the
actuator loop (sensor -> setpoint -> PWM duty).

Values (setpoint, measurement, error, output) are Q16 ints: 65536 = 1.0. Inputs are expected
normalised (sensor counts scaled to 0..1, duty 0..1); the error and the measurement change are
saturated at +-1.0. Gains are floats at configuration time and become (mantissa, shift) pairs
K = m / 2^s with |m| <= 2^13, 1 <= s <= 29, so |K| < 4096 and every product m*e < 2^30 (13-bit
mantissa: relative gain resolution 2^-12 or better). The integral is kept in Q24 output units.
update() allocates nothing on MicroPython and keeps every intermediate below 2^30: the state is
array('i') words (.st) and the step is a viper kernel, update(st, m) / update_error(st, e),
which the beat calls directly (a method call costs tens of microseconds on the Pico).
Rounding of every product: round half up, (m*e + 2^(s-1)) >> s (arithmetic shift).

Public API
----------
PID(kp, ki, kd, setpoint=0.0, sample_time=0.01, output_limits=(-1.0, 1.0),
    integral_limits=None, epsilon=0.0, d_on_measurement=True, starting_output=0.0,
    p_on_measurement=False)
    .update(measurement_q16) -> output_q16     one step of exactly sample_time (e = sp - meas)
    .update_error(error_q16) -> output_q16     one step with the caller's error (derivative on
                                               error; used by the genomic PID: e = dT)
    .tick(measurement_q16, elapsed_us) -> output_q16
                     sample-time gate: steps only once sample_time has elapsed (remainder
                     carried, backlog beyond one period dropped and counted in .missed),
                     otherwise returns the last output
    .setpoint (Q16 int, writable on the beat path), .output, .p_term, .i_term, .d_term (Q16)
    .set_setpoint(float), .set_gains(kp, ki, kd), .set_sample_time(seconds),
    .configure(kp, ki, kd, sample_time)   gains and sample time together (checked together)
    .set_output_limits(lo, hi), .set_integral_limits(lims or None), .set_epsilon(eps),
    .set_p_on_measurement(bool), .reset()
                     config-time setters (floats OK), ValueError with the rule on bad values,
                     raised before anything changes
    .check_gains(kp, ki, kd, sample_time=None)   validate only (CONFIG planning)
  What simple-pid users expect, too:
    .auto (bool), .set_auto_mode(enabled, last_output_q16=None, measurement_q16=None)
                     manual mode: update() steps nothing and returns .output (the caller's);
                     back to automatic with bumpless transfer (below)
    .bumpless(last_output_q16, measurement_q16)
                     continue from last_output: the integral is set so that P + I equals it
                     at this measurement and the derivative starts from it, so the next
                     update() moves the output by one integration step only (simple-pid sets
                     the integral to last_output, which still jumps by the P term).  When the
                     anti-windup bounds cannot hold that integral (a large P term), the gap is
                     added to the output and fades by 1/16 per step: a ramp, never a step
    starting_output  the output (and integral) a new or reset() PID starts from
    p_on_measurement proportional on measurement (simple-pid's proportional_on_measurement):
                     P accumulates -Kp * d(measurement), so a setpoint change does not kick
                     the output (needs d_on_measurement)
check_gains(kp, ki, kd, sample_time)   module-level: ValueError if the gains do not fit
genomic_pid(period_s) -> PID   the VENOM genomic PID: Kp 0.6, Ki 0.1, Kd 0.05, integral of e
                               clamped to [-1, 1], eps-reset |e| < 1e-4, output limited to
                               [-0.05, 0.05] (the caller applies dO = -output), derivative on error
to_q16(x: float) -> int, from_q16(v: int) -> float
"""
from array import array

from shared.compat import micropython, const  # noqa: F401
try:
    from shared.compat import ptr32    # CPython stand-in; viper has it built in
except ImportError:
    pass

ONE = const(65536)
_EMAX = const(65536)        # error and measurement change saturate at +-1.0
_LIM = const(32)            # output / integral limits within +-32.0 (Q24 integral < 2^29)

# state words (array('i')); signed values are stored + _B so every word is >= 0 (a viper
# ptr32 load is zero-extended on 64-bit ports)
_B = const(0x20000000)
_SP = const(0)        # setpoint Q16 + _B
_OUT = const(1)       # output Q16 + _B
_IACC = const(2)      # integral term Q24 + _B (|.| <= 2^29)
_PREV = const(3)      # previous measurement (or error) + _B
_HAVE = const(4)      # a previous value exists
_PM = const(5)        # Kp mantissa + _B, shift
_PS = const(6)
_IM = const(7)        # Ki * sample_time * 256 mantissa + _B, shift
_IS = const(8)
_DM = const(9)        # Kd / sample_time mantissa + _B, shift
_DS = const(10)
_OMIN = const(11)     # output limits Q16 + _B
_OMAX = const(12)
_ILO = const(13)      # integral bounds Q24 + _B
_IHI = const(14)
_EPS = const(15)      # epsilon reset Q16
_DOM = const(16)      # derivative on measurement
_POM = const(17)      # proportional on measurement
_PACC = const(18)     # P accumulated on measurement + _B
_BUMP = const(19)     # bumpless gap still fading out + _B
_AUTO = const(20)
_PT = const(21)       # last P, I, D terms Q16 + _B
_IT = const(22)
_DT = const(23)
_NST = const(24)
SETPOINT = const(_SP)  # the words the beat reads: setpoint + BIAS
BIAS = const(_B)


def to_q16(x):
    return int(round(x * 65536.0))


def from_q16(v):
    return v / 65536.0


def _gain(k, what):
    """(m, s) with k ~= m / 2^s, |m| <= 8192, 1 <= s <= 29."""
    if not -4096.0 < k < 4096.0:
        raise ValueError("%s = %r out of range: |gain| must be < 4096 (per Q16 unit)" % (what, k))
    if k == 0:
        return 0, 1
    s = 1
    a = -k if k < 0 else k
    while a * (1 << s) < 4096.0 and s < 29:
        s += 1
    return int(round(k * (1 << s))), s


def check_gains(kp, ki, kd, sample_time):
    """Raise ValueError (naming the rule) if these gains cannot step every sample_time s."""
    st = sample_time
    if not 1e-6 <= st <= 500.0:
        raise ValueError("sample_time must be in [1e-6, 500] s, got %r" % (st,))
    _gain(kp, "Kp")
    _gain(ki * st * 256.0, "Ki*sample_time*256")
    _gain(kd / st, "Kd/sample_time")


@micropython.viper
def _sat(v: int) -> int:
    # clamp to +-1.0 in Q16
    if v > _EMAX:
        return _EMAX
    if v < 0 - _EMAX:
        return 0 - _EMAX
    return v


@micropython.viper
def _step(st, e: int, dd: int) -> int:
    # P + I (anti-windup clamp, epsilon reset) + D, output limits; e, dd clamped Q16
    s = ptr32(st)
    omin = int(s[_OMIN]) - _B
    omax = int(s[_OMAX]) - _B
    ps = int(s[_PS])
    if int(s[_POM]):      # proportional on measurement: P += Kp * (previous - measurement)
        p = int(s[_PACC]) - _B + (((int(s[_PM]) - _B) * dd + (1 << (ps - 1))) >> ps)
        if p > omax:
            p = omax
        elif p < omin:
            p = omin
        s[_PACC] = p + _B
    else:
        p = ((int(s[_PM]) - _B) * e + (1 << (ps - 1))) >> ps
    sh = int(s[_IS])
    i = int(s[_IACC]) - _B + (((int(s[_IM]) - _B) * e + (1 << (sh - 1))) >> sh)
    lo = int(s[_ILO]) - _B
    hi = int(s[_IHI]) - _B
    if i > hi:
        i = hi
    elif i < lo:
        i = lo
    eps = int(s[_EPS])
    if e < eps and e > 0 - eps:
        i = 0
    s[_IACC] = i + _B
    i = (i + 128) >> 8
    sh = int(s[_DS])
    d = ((int(s[_DM]) - _B) * dd + (1 << (sh - 1))) >> sh
    s[_PT] = p + _B
    s[_IT] = i + _B
    s[_DT] = d + _B
    o = p + i + d
    b = int(s[_BUMP]) - _B
    if b:                 # after a bumpless transfer the integral could not absorb
        o += b
        b = b - (b >> 4) - (1 if b > 0 else 0)
        s[_BUMP] = b + _B
    if o > omax:
        o = omax
    elif o < omin:
        o = omin
    s[_OUT] = o + _B
    return o


@micropython.viper
def update(st, measurement: int) -> int:
    """One step of the PID on its words st (a PID's .st) with this measurement (Q16): the
    kernel PID.update calls (the beat calls it directly)."""
    s = ptr32(st)
    sp = int(s[_SP]) - _B
    if not int(s[_AUTO]):      # manual: the caller owns the output; track the input
        s[_PREV] = (measurement if int(s[_DOM]) else sp - measurement) + _B
        s[_HAVE] = 1
        return int(s[_OUT]) - _B
    e = int(_sat(sp - measurement))
    if int(s[_DOM]):
        dd = int(_sat(int(s[_PREV]) - _B - measurement)) if int(s[_HAVE]) else 0
        s[_PREV] = measurement + _B
    else:
        dd = int(_sat(e - (int(s[_PREV]) - _B))) if int(s[_HAVE]) else 0
        s[_PREV] = e + _B
    s[_HAVE] = 1
    return int(_step(st, e, dd))


@micropython.viper
def update_error(st, e: int) -> int:
    """One step with the caller's error (Q16; derivative on error): the genomic PID's kernel."""
    s = ptr32(st)
    e = int(_sat(e))
    dd = int(_sat(e - (int(s[_PREV]) - _B))) if int(s[_HAVE]) else 0
    s[_PREV] = e + _B
    s[_HAVE] = 1
    return int(_step(st, e, dd))


class PID:
    def __init__(self, kp, ki, kd, setpoint=0.0, sample_time=0.01, output_limits=(-1.0, 1.0),
                 integral_limits=None, epsilon=0.0, d_on_measurement=True, starting_output=0.0,
                 p_on_measurement=False):
        self.st = array("i", bytes(4 * _NST))
        s = self.st
        for w in (_SP, _OUT, _IACC, _PREV, _PM, _IM, _DM, _OMIN, _OMAX, _ILO, _IHI, _PACC,
                  _BUMP, _PT, _IT, _DT):
            s[w] = _B
        s[_PS] = s[_IS] = s[_DS] = 1
        s[_AUTO] = 1
        s[_DOM] = 1 if d_on_measurement else 0
        self.kp = self.ki = self.kd = 0.0
        self.sample_time = 0.0
        self.sample_us = 1
        self.eps = 0
        self.missed = 0
        self.integral_limits = None
        self._start = 0
        self._acc_us = 0
        s[_SP] = to_q16(setpoint) + _B
        s[_OMIN] = _B - ONE
        s[_OMAX] = _B + ONE
        self.set_output_limits(output_limits[0], output_limits[1])
        self.set_sample_time(sample_time)       # also sets the gains' scaled forms
        self.set_gains(kp, ki, kd)
        self.set_integral_limits(integral_limits)
        self.set_epsilon(epsilon)
        self.set_p_on_measurement(p_on_measurement)
        self.set_starting_output(starting_output)
        self.reset()

    # --- the words as numbers (Q16 / Q24 ints) ---
    @property
    def output(self):
        return self.st[_OUT] - _B

    @output.setter
    def output(self, v):
        self.st[_OUT] = v + _B

    @property
    def setpoint(self):
        return self.st[_SP] - _B

    @setpoint.setter
    def setpoint(self, v):
        self.st[_SP] = v + _B

    @property
    def auto(self):
        return self.st[_AUTO] != 0

    @property
    def d_on_measurement(self):
        return self.st[_DOM] != 0

    @property
    def i_acc(self):
        return self.st[_IACC] - _B

    @property
    def p_term(self):
        return self.st[_PT] - _B

    @property
    def i_term(self):
        return self.st[_IT] - _B

    @property
    def d_term(self):
        return self.st[_DT] - _B

    # --- configuration (floats allowed) ---
    def check_gains(self, kp, ki, kd, sample_time=None):
        """Raise ValueError (naming the rule) if set_gains/set_sample_time would; change nothing."""
        check_gains(kp, ki, kd, self.sample_time if sample_time is None else sample_time)

    def configure(self, kp, ki, kd, sample_time):
        """New gains and sample time at once (each alone could be refused with the other's
        old value); checked first, nothing changes on error."""
        check_gains(kp, ki, kd, sample_time)
        self.sample_time = sample_time
        self.sample_us = max(1, int(round(sample_time * 1e6)))
        self.set_gains(kp, ki, kd)

    def set_p_on_measurement(self, on):
        if on and not self.d_on_measurement:
            raise ValueError("proportional on measurement needs d_on_measurement=True")
        v = 1 if on else 0
        s = self.st
        if v != s[_POM]:
            s[_POM] = v
            s[_PACC] = _B

    @property
    def p_on_measurement(self):
        return self.st[_POM] != 0

    def set_starting_output(self, out):
        """The output a new PID (and reset()) starts from, in output units (simple-pid's
        starting_output); clamped to the output limits."""
        s = self.st
        v = to_q16(out)
        self._start = min(s[_OMAX] - _B, max(s[_OMIN] - _B, v))

    def set_auto_mode(self, enabled, last_output=None, measurement=None):
        """Automatic (True) or manual (False).  Back to automatic: bumpless from last_output
        (Q16; default the current .output) at measurement (Q16; default the last one seen)."""
        s = self.st
        if enabled and not s[_AUTO]:
            self.bumpless(self.output if last_output is None else last_output,
                          s[_PREV] - _B if measurement is None else measurement)
        s[_AUTO] = 1 if enabled else 0

    def bumpless(self, last_output, measurement):
        """Continue from last_output (Q16) at this measurement (Q16): no bump at the transfer."""
        s = self.st
        omin = s[_OMIN] - _B
        omax = s[_OMAX] - _B
        o = min(omax, max(omin, last_output))
        e = min(_EMAX, max(-_EMAX, self.setpoint - measurement))
        s[_PACC] = _B
        ps = s[_PS]
        p = 0 if s[_POM] else ((s[_PM] - _B) * e + (1 << (ps - 1))) >> ps
        i = min(s[_IHI] - _B, max(s[_ILO] - _B, (o - p) << 8))
        s[_IACC] = i + _B
        s[_BUMP] = o - p - ((i + 128) >> 8) + _B   # what the bounds could not hold: faded out
        s[_OUT] = o + _B
        s[_PREV] = (measurement if s[_DOM] else e) + _B
        s[_HAVE] = 1
        self._acc_us = 0

    def set_gains(self, kp, ki, kd):
        pm, ps = _gain(kp, "Kp")
        im, is_ = _gain(ki * self.sample_time * 256.0, "Ki*sample_time*256")
        dm, ds = _gain(kd / self.sample_time, "Kd/sample_time")
        self.kp, self.ki, self.kd = kp, ki, kd
        s = self.st
        s[_PM] = pm + _B
        s[_PS] = ps
        s[_IM] = im + _B
        s[_IS] = is_
        s[_DM] = dm + _B
        s[_DS] = ds
        self._bounds()

    def set_sample_time(self, seconds):
        check_gains(self.kp, self.ki, self.kd, seconds)   # raises before any change
        self.sample_time = seconds
        self.sample_us = max(1, int(round(seconds * 1e6)))
        if self.kp or self.ki or self.kd:
            self.set_gains(self.kp, self.ki, self.kd)

    def set_output_limits(self, lo, hi):
        if not (-_LIM <= lo < hi <= _LIM):
            raise ValueError("output limits must satisfy -32 <= lo < hi <= 32, got (%r, %r)"
                             % (lo, hi))
        s = self.st
        s[_OMIN] = to_q16(lo) + _B
        s[_OMAX] = to_q16(hi) + _B
        self._bounds()
        s[_OUT] = min(s[_OMAX], max(s[_OMIN], s[_OUT]))

    def set_integral_limits(self, lims):
        """Bounds on the integral of the error (error * seconds), or None (then only the output
        limits bound the integral term: anti-windup)."""
        if lims is not None:
            lo, hi = lims
            if not lo < hi:
                raise ValueError("integral limits need lo < hi, got (%r, %r)" % (lo, hi))
        self.integral_limits = lims
        self._bounds()

    def set_epsilon(self, eps):
        if not 0.0 <= eps < 1.0:
            raise ValueError("epsilon must be in [0, 1), got %r" % (eps,))
        self.eps = to_q16(eps)
        self.st[_EPS] = self.eps

    def set_setpoint(self, sp):
        self.st[_SP] = to_q16(sp) + _B

    def _bounds(self):
        # integral term bounds in Q24: output limits (anti-windup), intersected with Ki * limits
        s = self.st
        lo = (s[_OMIN] - _B) << 8
        hi = (s[_OMAX] - _B) << 8
        lims = self.integral_limits
        if lims is not None and self.ki != 0:
            a = self.ki * lims[0]
            b = self.ki * lims[1]
            if a > b:
                a, b = b, a
            a = int(round(a * 16777216.0))
            b = int(round(b * 16777216.0))
            if a > lo:
                lo = a
            if b < hi:
                hi = b
            if lo > hi:
                lo = hi = 0
        s[_ILO] = lo + _B
        s[_IHI] = hi + _B
        s[_IACC] = min(hi, max(lo, s[_IACC] - _B)) + _B

    def reset(self):
        """Back to the starting output (integral = starting output, no history)."""
        s = self.st
        st0 = self._start
        s[_IACC] = min(s[_IHI] - _B, max(s[_ILO] - _B, st0 << 8)) + _B
        s[_OUT] = st0 + _B
        for w in (_PACC, _BUMP, _PT, _IT, _DT, _PREV):
            s[w] = _B
        s[_HAVE] = 0
        self._acc_us = 0

    # --- the beat path: integers only, no allocation (viper kernels on .st) ---
    def update(self, measurement):
        return update(self.st, measurement)

    def update_error(self, e):
        return update_error(self.st, e)

    def tick(self, measurement, elapsed_us):
        a = self._acc_us + elapsed_us
        st = self.sample_us
        if a < st:
            self._acc_us = a
            return self.output
        a -= st
        if a >= st:
            self.missed += 1
            a = 0
        self._acc_us = a
        return self.update(measurement)


def genomic_pid(period_s):
    """The VENOM genomic PID (SPEC 4.4) stepping once per beat of period_s seconds."""
    return PID(0.6, 0.1, 0.05, setpoint=0.0, sample_time=period_s,
               output_limits=(-0.05, 0.05), integral_limits=(-1.0, 1.0), epsilon=1e-4,
               d_on_measurement=False)
