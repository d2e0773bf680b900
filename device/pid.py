"""One general PID controller in integer fixed point (SPEC 4.4), for the genomic PID and the
actuator loop (sensor -> setpoint -> PWM duty).

Values (setpoint, measurement, error, output) are Q16 ints: 65536 = 1.0. Inputs are expected
normalised (sensor counts scaled to 0..1, duty 0..1); the error and the measurement change are
saturated at +-1.0. Gains are floats at configuration time and become (mantissa, shift) pairs
K = m / 2^s with |m| <= 2^13, 1 <= s <= 29, so |K| < 4096 and every product m*e < 2^30 (13-bit
mantissa: relative gain resolution 2^-12 or better). The integral is kept in Q24 output units.
update() allocates nothing on MicroPython and keeps every intermediate below 2^30.
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
from shared.compat import micropython, const  # noqa: F401

ONE = const(65536)
_EMAX = const(65536)        # error and measurement change saturate at +-1.0
_LIM = const(32)            # output / integral limits within +-32.0 (Q24 integral < 2^29)


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


class PID:
    def __init__(self, kp, ki, kd, setpoint=0.0, sample_time=0.01, output_limits=(-1.0, 1.0),
                 integral_limits=None, epsilon=0.0, d_on_measurement=True, starting_output=0.0,
                 p_on_measurement=False):
        self.kp = self.ki = self.kd = 0.0
        self.sample_time = 0.0
        self.sample_us = 1
        self.d_on_measurement = bool(d_on_measurement)
        self.auto = True
        self._pom = False
        self._pacc = 0
        self._start = 0
        self._bump = 0
        self.setpoint = to_q16(setpoint)
        self.out_min = -ONE
        self.out_max = ONE
        self.integral_limits = None
        self._i_lo = -(ONE << 8)
        self._i_hi = ONE << 8
        self.eps = 0
        self.missed = 0
        self.reset()
        self.set_output_limits(output_limits[0], output_limits[1])
        self.set_sample_time(sample_time)       # also sets the gains' scaled forms
        self.set_gains(kp, ki, kd)
        self.set_integral_limits(integral_limits)
        self.set_epsilon(epsilon)
        self.set_p_on_measurement(p_on_measurement)
        self.set_starting_output(starting_output)
        self.reset()

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
        on = bool(on)
        if on != self._pom:
            self._pom = on
            self._pacc = 0

    def set_starting_output(self, out):
        """The output a new PID (and reset()) starts from, in output units (simple-pid's
        starting_output); clamped to the output limits."""
        v = to_q16(out)
        self._start = min(self.out_max, max(self.out_min, v))

    def set_auto_mode(self, enabled, last_output=None, measurement=None):
        """Automatic (True) or manual (False).  Back to automatic: bumpless from last_output
        (Q16; default the current .output) at measurement (Q16; default the last one seen)."""
        if enabled and not self.auto:
            self.bumpless(self.output if last_output is None else last_output,
                          self._prev if measurement is None else measurement)
        self.auto = bool(enabled)

    def bumpless(self, last_output, measurement):
        """Continue from last_output (Q16) at this measurement (Q16): no bump at the transfer."""
        o = last_output
        if o > self.out_max:
            o = self.out_max
        elif o < self.out_min:
            o = self.out_min
        e = self.setpoint - measurement
        if e > _EMAX:
            e = _EMAX
        elif e < -_EMAX:
            e = -_EMAX
        self._pacc = 0
        p = 0 if self._pom else (self._pm * e + self._ph) >> self._ps
        i = (o - p) << 8
        if i > self._i_hi:
            i = self._i_hi
        elif i < self._i_lo:
            i = self._i_lo
        self.i_acc = i
        self._bump = o - p - ((i + 128) >> 8)     # what the bounds could not hold: faded out
        self.output = o
        self._prev = measurement if self.d_on_measurement else e
        self._have_prev = True
        self._acc_us = 0

    def set_gains(self, kp, ki, kd):
        pm, ps = _gain(kp, "Kp")
        im, is_ = _gain(ki * self.sample_time * 256.0, "Ki*sample_time*256")
        dm, ds = _gain(kd / self.sample_time, "Kd/sample_time")
        self.kp, self.ki, self.kd = kp, ki, kd
        self._pm, self._ps, self._ph = pm, ps, 1 << (ps - 1)
        self._im, self._is, self._ih = im, is_, 1 << (is_ - 1)
        self._dm, self._ds, self._dh = dm, ds, 1 << (ds - 1)
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
        self.out_min = to_q16(lo)
        self.out_max = to_q16(hi)
        self._bounds()
        self.output = min(self.out_max, max(self.out_min, self.output))

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

    def set_setpoint(self, sp):
        self.setpoint = to_q16(sp)

    def _bounds(self):
        # integral term bounds in Q24: output limits (anti-windup), intersected with Ki * limits
        lo = self.out_min << 8
        hi = self.out_max << 8
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
        self._i_lo = lo
        self._i_hi = hi
        if self.i_acc < lo:
            self.i_acc = lo
        elif self.i_acc > hi:
            self.i_acc = hi

    def reset(self):
        """Back to the starting output (integral = starting output, no history)."""
        s = self._start
        self.i_acc = min(self._i_hi, max(self._i_lo, s << 8))
        self.output = s
        self._pacc = 0
        self._bump = 0
        self.p_term = 0
        self.i_term = 0
        self.d_term = 0
        self._prev = 0
        self._have_prev = False
        self._acc_us = 0

    # --- the beat path: integers only, no allocation ---
    # update() and update_error() repeat the step inline: a method call costs as much as
    # a third of the step on MicroPython.
    @micropython.native
    def update(self, measurement):
        if not self.auto:              # manual: the caller owns the output; track the input
            self._prev = measurement if self.d_on_measurement else self.setpoint - measurement
            self._have_prev = True
            return self.output
        e = self.setpoint - measurement
        if e > _EMAX:
            e = _EMAX
        elif e < -_EMAX:
            e = -_EMAX
        if self.d_on_measurement:
            if self._have_prev:
                dd = self._prev - measurement
                if dd > _EMAX:
                    dd = _EMAX
                elif dd < -_EMAX:
                    dd = -_EMAX
            else:
                dd = 0
            self._prev = measurement
        else:
            dd = e - self._prev if self._have_prev else 0
            if dd > _EMAX:
                dd = _EMAX
            elif dd < -_EMAX:
                dd = -_EMAX
            self._prev = e
        self._have_prev = True
        return self._step(e, dd)

    @micropython.native
    def _step(self, e, dd):
        """P + I (anti-windup clamp, epsilon reset) + D, output limits; e, dd clamped Q16."""
        if self._pom:     # proportional on measurement: P += Kp * (previous - measurement)
            p = self._pacc + ((self._pm * dd + self._ph) >> self._ps)
            if p > self.out_max:
                p = self.out_max
            elif p < self.out_min:
                p = self.out_min
            self._pacc = p
        else:
            p = (self._pm * e + self._ph) >> self._ps
        i = self.i_acc + ((self._im * e + self._ih) >> self._is)
        if i > self._i_hi:
            i = self._i_hi
        elif i < self._i_lo:
            i = self._i_lo
        if -self.eps < e < self.eps:
            i = 0
        self.i_acc = i
        i = (i + 128) >> 8
        d = (self._dm * dd + self._dh) >> self._ds
        self.p_term = p
        self.i_term = i
        self.d_term = d
        o = p + i + d
        b = self._bump
        if b:                 # after a bumpless transfer the integral could not absorb
            o += b
            self._bump = b - (b >> 4) - (1 if b > 0 else 0)
        if o > self.out_max:
            o = self.out_max
        elif o < self.out_min:
            o = self.out_min
        self.output = o
        return o

    @micropython.native
    def update_error(self, e):
        if e > _EMAX:
            e = _EMAX
        elif e < -_EMAX:
            e = -_EMAX
        dd = e - self._prev if self._have_prev else 0
        if dd > _EMAX:
            dd = _EMAX
        elif dd < -_EMAX:
            dd = -_EMAX
        self._prev = e
        self._have_prev = True
        return self._step(e, dd)

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
