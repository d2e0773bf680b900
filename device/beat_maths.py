"""The maths of one beat, bundled for device/beat.py: T_Lambda pulse (device/pulse.py),
Emissary (shared/kairos.py), actuator PID (device/pid.py), arbiter with cores, entropy model,
genome and genomic PID (device/arbiter.py), proof-of-work miner (shared/pow.py).

The beat calls only the methods below, so this file is the one place that knows those modules'
APIs.  Config-time work (floats, validation) is in ``plan_config`` / ``apply_config``; the per-beat
methods allocate nothing on MicroPython."""
from device.pulse import Pulse
from device.pid import PID, to_q16
from shared.kairos import Emissary
from shared import protocol as P

_MAXS = 32    # samples one beat can take (f_s * period plus backlog)


class Maths:
    def __init__(self, f_s=1000, adc_bits=12, pulse_k=4.0, pulse_p=5.0, lag=10, omega=2.0,
                 coherence_threshold=0.95, setpoint=0.5, act_gains=(2.0, 8.0, 0.0),
                 pow_bits=16, arbiter=None, miner=None):
        self.pulse = Pulse(k=pulse_k, P=pulse_p)
        self.period_override_us = 0
        self.f_s = f_s
        self.adc_bits = adc_bits
        self.full = (1 << adc_bits) - 1
        # window of 1 s: one ring slot per beat (+ slack for beats that carry fewer samples)
        import gc
        gc.collect()
        cap = int(1.0 / self.pulse.period_s) + 16
        self.em = Emissary(f_s=f_s, omega=omega, adc_bits=adc_bits, max_samples_per_beat=_MAXS,
                           threshold=coherence_threshold, lag=lag, capacity=cap)
        self.omega = omega
        self.act = PID(act_gains[0], act_gains[1], act_gains[2], setpoint=setpoint,
                       sample_time=self.pulse.period_s, output_limits=(0.0, 1.0))
        if arbiter is None:
            from device.arbiter import Arbiter
            arbiter = Arbiter(period_s=self.pulse.period_s, a_max=255)  # threat saturates long before
        self.arb = arbiter
        if miner is None:
            from shared.pow import Miner
            miner = Miner()
        self.miner = miner
        self.decision = 0
        self.meas_q16 = 0

    # ---------------------------------------------------------------- period / HELLO values
    def period_q16(self):
        if self.period_override_us:
            return self.period_override_us << 16
        return int(round(self.pulse.period_s * 1e6 * 65536))

    def phase_step(self):
        return self.em.phase_step

    def lag_samples(self):
        return self.em.lag

    def sum_shift(self):
        return self.em.sum_shift

    def max_samples(self):
        return _MAXS

    # ---------------------------------------------------------------- per beat
    def emissary_feed(self, samples, n):
        em = self.em
        for i in range(n):
            em.add(samples[i])
        em.end_beat()

    def collapse(self):
        return self.em.collapsed

    def measure(self, mean_counts):
        """The beat's sensor value (mean sample, counts) normalised to Q16 for the actuator."""
        self.meas_q16 = (mean_counts << 16) // self.full if mean_counts < self.full else 65536

    def decide(self):
        """Cores + decision on the Emissary window's anomalies and the actuator error."""
        self.decision = self.arb.step(self.em.window_anoms, self.act.setpoint - self.meas_q16)
        return self.decision

    def actuate(self):
        """Actuator PID on the measurement -> PWM duty 0..65535."""
        out = self.act.update(self.meas_q16)
        return 65535 if out > 65535 else (0 if out < 0 else out)

    def recalibrate(self):
        self.arb.recalibrate(self.pulse.dT_q16)

    def dT_re(self):
        return self.em.dT_re

    def dT_im(self):
        return self.em.dT_im

    def dE0(self):
        return self.em.dE0

    def dEL(self):
        return self.em.dEL

    def n_samples(self):
        return self.em.n

    def coherence_q16(self):
        return self.em.coherence

    def threat_q16(self):
        t = self.arb.threat
        return 65535 if t > 65535 else t

    def o_weight_q16(self):
        w = self.arb.O
        return 65535 if w > 65535 else w

    def pid_error(self):
        """Actuator error (setpoint - measurement) in Q15, saturated to i16."""
        e = (self.act.setpoint - self.meas_q16) >> 1
        return 32767 if e > 32767 else (-32768 if e < -32768 else e)

    def pid_output(self):
        o = self.act.output
        return 65535 if o > 65535 else (0 if o < 0 else o)

    # ---------------------------------------------------------------- host: MODEL, CONFIG
    def set_model(self, w, b):
        self.arb.set_model(w, b)

    def plan_config(self, beat, pairs):
        """Validate CONFIG pairs against the current state; returns a plan (list of
        (name, value)) or raises KeyError(name) / ValueError(message).  Nothing changes here."""
        plan = []
        k = self.pulse.k
        p = self.pulse.P
        pulse_changed = False
        for kv in pairs:
            key = kv[0]
            raw = kv[1]
            spec = P.CONFIG_KEYS.get(key)
            if spec is None:
                raise KeyError("key %d unknown" % key)
            name = spec[0]
            v = raw / 65536.0 if spec[1] == "q16" else raw
            if name == "telemetry_every":
                _rng(name, v, 1, 255)
            elif name == "batch_beats":
                _rng(name, v, 1, P.MAX_BATCH)
            elif name == "heartbeat_every":
                _rng(name, v, 0, 100000)
            elif name == "pow_bits":
                _rng(name, v, 0, 28)
            elif name in ("coherence_threshold", "alert_threshold", "quarantine_threshold",
                          "setpoint", "output_safe"):
                if not 0.0 <= v <= 1.0:
                    raise ValueError("%s must be in [0, 1]" % name)
            elif name == "period_us":
                _rng(name, v, 0, 1000000)
                if 0 < v < 500:
                    raise ValueError("period_us 0 or >= 500")
            elif name in ("pid_kp", "pid_ki", "pid_kd"):
                if not -4096.0 < v < 4096.0:
                    raise ValueError("%s |gain| < 4096" % name)
            elif name == "lag_samples":
                if v != self.em.lag:
                    raise KeyError("lag: boot-time only")
            elif name == "omega":
                if abs(v - self.omega) > 1.0 / 65536:
                    raise KeyError("omega: boot-time only")
            elif name == "anomaly_z":
                if not 1.0 <= v <= 100.0:
                    raise ValueError("anomaly_z in [1, 100]")
            elif name == "pulse_k":
                k = v
                pulse_changed = True
            elif name == "pulse_p":
                p = v
                pulse_changed = True
            plan.append((name, v))
        if pulse_changed and not k * p > 1.0:
            raise ValueError("k*P must be > 1")
        return plan

    def apply_config(self, beat, plan):
        s = beat.s
        gains = [self.arb.pid.kp, self.arb.pid.ki, self.arb.pid.kd]
        gains_changed = False
        k = None
        p = None
        period = -1
        for name, v in plan:
            if name == "telemetry_every":
                s.telemetry_every = v
            elif name == "batch_beats":
                s.batch_beats = v
            elif name == "heartbeat_every":
                s.heartbeat_every = v
            elif name == "pow_bits":
                s.pow_bits = v
            elif name == "coherence_threshold":
                self.em.set_threshold(v)
            elif name == "alert_threshold":
                self.arb.set_thresholds(alert=v)
            elif name == "quarantine_threshold":
                self.arb.set_thresholds(quarantine=v)
            elif name == "setpoint":
                self.act.set_setpoint(v)
            elif name == "output_safe":
                d = int(round(v * 65535))
                beat.hw.pwm.safe_duty = d
                if beat.quarantined:
                    beat.hw.pwm.safe()
            elif name == "period_us":
                period = v
            elif name in ("pid_kp", "pid_ki", "pid_kd"):
                gains[("pid_kp", "pid_ki", "pid_kd").index(name)] = v
                gains_changed = True
            elif name == "anomaly_z":
                em = self.em
                em.anomaly_z = v
                em._zq = int(round(v * v * 16))   # Emissary's z^2 in Q4 (see shared/kairos.py)
            elif name == "pulse_k":
                k = v
            elif name == "pulse_p":
                p = v
        if gains_changed:
            self.arb.pid.set_gains(gains[0], gains[1], gains[2])
        if k is not None or p is not None:
            self.pulse.set_params(k=k, P=p)
        if period >= 0:
            # the host's period_us equal to round(T_Lambda) means "follow T_Lambda" (exact)
            self.period_override_us = 0 if period in (0, self.pulse.period_us) else period
        if k is not None or p is not None or period >= 0:
            beat.set_period(self.period_q16())
            ps = (self.pulse.period_s if not self.period_override_us
                  else self.period_override_us / 1e6)
            self.act.set_sample_time(ps)
            self.arb.set_period(ps)


def _rng(name, v, lo, hi):
    if not lo <= v <= hi:
        raise ValueError("%s must be %d..%d" % (name, lo, hi))
