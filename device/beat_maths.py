"""The maths of one beat, bundled for device/beat.py: T_Lambda pulse (device/pulse.py),
Emissary (shared/kairos.py), actuator PID (device/pid.py), arbiter with cores, entropy model,
genome and genomic PID (device/arbiter.py), proof-of-work miner (shared/pow.py).

The beat calls only the methods below, so this file is the one place that knows those modules'
APIs.  Config-time work (floats, validation) is in the constructor and the setters; CONFIG is
planned and applied by device/config_plan.py (checked as a whole by device/config_rules.py).
The per-beat methods allocate nothing on MicroPython."""
from device.pulse import Pulse
from device.pid import PID
from shared.kairos import Emissary

_MAXS = 32    # samples one beat can take by default (a board's LIMITS["spb_max"])


class Maths:
    def __init__(self, f_s=1000, adc_bits=12, pulse_k=4.0, pulse_p=5.0, lag=10, omega=2.0,
                 coherence_threshold=0.95, setpoint=0.5, act_gains=(2.0, 8.0, 0.0),
                 pow_bits=16, arbiter=None, miner=None, max_samples=_MAXS, act_start=0.0):
        self.pulse = Pulse(k=pulse_k, P=pulse_p)
        self.period_override_us = 0
        self.f_s = f_s
        self.spb_max = max_samples
        self.adc_bits = adc_bits
        self.full = (1 << adc_bits) - 1
        # window of 1 s: one ring slot per beat (+ slack for beats that carry fewer samples)
        import gc
        gc.collect()
        cap = int(1.0 / self.pulse.period_s) + 16
        self.em = Emissary(f_s=f_s, omega=omega, adc_bits=adc_bits, max_samples_per_beat=max_samples,
                           threshold=coherence_threshold, lag=lag, capacity=cap)
        self.omega = omega
        self.act = PID(act_gains[0], act_gains[1], act_gains[2], setpoint=setpoint,
                       sample_time=self.pulse.period_s, output_limits=(0.0, 1.0),
                       starting_output=act_start)
        self.act_manual_q16 = 0       # the output in manual mode (CONFIG act_mode/act_manual)
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
        return self.spb_max

    def period_s(self):
        """The beat period in seconds (config time: a float)."""
        if self.period_override_us:
            return self.period_override_us / 1e6
        return self.pulse.period_s

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
        """Actuator PID on the measurement -> PWM duty 0..65535 (manual mode: act_manual)."""
        act = self.act
        out = act.update(self.meas_q16)
        if not act.auto:
            out = self.act_manual_q16
            act.output = out
        return 65535 if out > 65535 else (0 if out < 0 else out)

    def set_act_mode(self, manual, duty):
        """CONFIG act_mode: 1 manual (the output is act_manual), 0 automatic, taking over
        bumplessly from the output now (duty 0..65535)."""
        self.act.set_auto_mode(not manual, duty, self.meas_q16)

    def resume_output(self, duty):
        """QUARANTINE cleared: the PID continues from the output held (the safe duty) at this
        measurement, without a bump (device/pid.py bumpless)."""
        if self.act.auto:
            self.act.bumpless(duty, self.meas_q16)

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
