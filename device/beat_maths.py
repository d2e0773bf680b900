"""The maths of one beat, bundled for device/beat.py: T_Lambda pulse (device/pulse.py),
condition-monitoring features (shared/vibration.py), the Emissary (shared/kairos.py) with its
lag learner (device/lag.py), sensor and coherence health (device/health.py), actuator PID
(device/pid.py), arbiter with cores, entropy model, genome and genomic PID (device/arbiter.py),
proof-of-work miner (shared/pow.py).

The beat calls only the methods below, so this file is the one place that knows those modules'
APIs.  Config-time work (floats, validation) is in the constructor and the setters; CONFIG is
planned and applied by device/config_plan.py (checked as a whole by device/config_rules.py).
The per-beat methods allocate nothing on MicroPython.

Signal path (docs/DEVICE.md "Signal path"): samples at f_s -> features over the Emissary window
(level, kurtosis, crest, robust exceedances) and the KAIROS stream at f_k = f_s / M (an M-sample
box filter, M = round(f_s / 250)); KAIROS lag = one period of the machine, learned (lag 0 = auto)
or fixed."""
from shared.compat import micropython, const  # noqa: F401
from device.pulse import Pulse
from device import pid as pidk
from device.pid import PID, SETPOINT as PID_SP, BIAS as PID_B
from device import arbiter as arbk
from device import health as healthk
from device.health import SignalHealth
from shared import kairos as kairosk
from shared.kairos import Emissary, lag_for, CSTATE
from shared import vibration as vibk
from shared.vibration import (Features, LEVEL, KURT, CREST, ANOMS, STUCK, BEAT_SUM, KOUT,
                              WINDOW_N)

_KAIROS_HZ = const(250)  # the KAIROS rate f_k aimed at: f_k = f_s / M, M = round(f_s / f_k)
WINDOW_S = 1.0         # the Emissary window (emissary.tau_max)
HIST_S = 1.0           # history the lag learner searches (s): twice the longest lag
LAG_MAX_S = 0.5        # longest period the learner looks for (2 Hz)
FALLBACK_TAU = 0.1     # lag until one is learned (s)
RELEARN_S = 10.0       # retry an unsuccessful lag search after this long


class Maths:
    def __init__(self, f_s=12000, adc_bits=12, pulse_k=4.0, pulse_p=5.0, lag=0, omega=0.0,
                 coherence_threshold=0.95, setpoint=0.5, act_gains=(2.0, 8.0, 0.0),
                 pow_bits=12, arbiter=None, miner=None, kairos_hz=_KAIROS_HZ,
                 counts_per_unit=128.0, anomaly_z=5.4, max_samples=None, act_start=0.0):
        self.pulse = Pulse(k=pulse_k, P=pulse_p)
        self.period_override_us = 0
        self.f_s = f_s
        self.adc_bits = adc_bits
        self.full = (1 << adc_bits) - 1
        if not kairos_hz > 0:
            raise ValueError("KAIROS rate must be > 0 Hz, got %r" % (kairos_hz,))
        # the KAIROS stream: M-sample boxes, f_k = f_s / M as near kairos_hz as M allows
        decim = int(f_s / kairos_hz + 0.5)
        if decim < 1:
            decim = 1
        kairos_hz = f_s / decim
        per_beat = f_s * self.pulse.period_s
        if max_samples is None:
            # a beat takes up to 2.5 beats of samples (a late beat catches up), at least 8
            # (boards give theirs: LIMITS["spb_max"], also sent in HELLO)
            max_samples = int(per_beat * 2.5) + 8
            if max_samples > 255:
                max_samples = 255
        self.spb_max = max_samples
        self.expected = 1 if per_beat >= 1.0 else 0
        import gc
        gc.collect()
        bps = 1.0 / self.pulse.period_s
        self.vib = Features(f_s, adc_bits=adc_bits, counts_per_unit=counts_per_unit,
                            window_s=WINDOW_S, decim=decim, max_samples_per_beat=max_samples,
                            z=_z_med(anomaly_z), beats_per_s=bps)
        self.anomaly_z = anomaly_z
        kbits = adc_bits + self.vib.frac_bits
        hist = int(HIST_S * kairos_hz)
        max_lag = int(LAG_MAX_S * kairos_hz)
        self.auto_lag = not lag
        lag0 = lag if lag else lag_for(FALLBACK_TAU, kairos_hz)
        gc.collect()
        ems = max_samples // decim + 2        # KAIROS samples a beat can close
        self.em = Emissary(rate_hz=kairos_hz, omega=omega, lag=lag0, bits=kbits,
                           max_samples_per_beat=ems, window_s=WINDOW_S,
                           threshold=coherence_threshold, hist_len=hist,
                           max_lag=max(max_lag, lag0), beats_per_s=bps,
                           seg_beats=max(1, min(4, 255 // ems)))
        self.decim = decim
        self.kairos_hz = kairos_hz
        self.omega = omega
        self.learner = None
        self.locked = False
        self.relearn_beats = max(1, int(RELEARN_S / self.pulse.period_s))
        self._learn_wait = 0
        if self.auto_lag:
            from device.lag import LagLearner
            self.learner = LagLearner(self.em, lmin=2, lmax=max_lag, lock=coherence_threshold)
        self.act = PID(act_gains[0], act_gains[1], act_gains[2], setpoint=setpoint,
                       sample_time=self.pulse.period_s, output_limits=(0.0, 1.0),
                       starting_output=act_start)
        self.act_manual_q16 = 0       # the output in manual mode (CONFIG act_mode/act_manual)
        if arbiter is None:
            from device.arbiter import Arbiter
            arbiter = Arbiter(period_s=self.pulse.period_s, a_max=1024)
        self.arb = arbiter
        self.health = SignalHealth(self.pulse.period_s, arbiter.alert_q16,
                                   arbiter.quarantine_q16)
        if miner is None:
            from shared.pow import Miner
            miner = Miner()
        self.miner = miner
        # the model may not QUARANTINE before the feature window holds a quarter of its span
        self._fill_min = f_s * WINDOW_S // 4
        self._filling = True
        arbiter.hold_quarantine(True)
        self.decision = 0
        self.duty = 0
        self.meas_q16 = 0
        self.ext = 0

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

    def counts_per_unit_q4(self):
        return int(round(self.vib.counts_per_unit * 16))

    # ---------------------------------------------------------------- per beat
    @micropython.native
    def beat(self, samples, n, overruns, interval_us, act):
        """Steps 3-7 of one beat in one call (a Python call costs ~30 us on the Pico, so the
        beat makes one): features and KAIROS, sensor/coherence health, cores and decision,
        the actuator PID when ``act`` (not latched in QUARANTINE), the genome. Returns the
        decision; the PWM duty is in .duty."""
        vm = self.vib.mem
        k = vibk.block(vm, samples, n)
        em = self.em
        km = em.mem
        if k:
            kairosk.add_block(km, em.dl, vm, KOUT, k)
        kairosk.end_beat(km, em.ring)
        hs = self.health.st
        ext = healthk.beat(hs, n, vm[STUCK], overruns, km[CSTATE], self.locked)
        self.ext = ext
        vibk.end_beat(vm, hs[healthk.EVENTS])
        if n:
            # the beat's mean sample, normalised to Q16, is the actuator loop's measurement
            m = vm[BEAT_SUM] // n
            self.meas_q16 = (m << 16) // self.full if m < self.full else 65536
        arb = self.arb
        ast = arb.st
        if self._filling and vm[WINDOW_N] >= self._fill_min:
            self._filling = False
            arb.hold_quarantine(False)
        pst = self.act.st
        meas = self.meas_q16
        d = arbk.step(ast, vm[LEVEL], vm[KURT], vm[CREST], vm[ANOMS] + arb.risk_anoms,
                      pst[PID_SP] - PID_B - meas, ext)
        self.decision = d
        if act:
            out = pidk.update(pst, meas)
            self.duty = 65535 if out > 65535 else (0 if out < 0 else out)
        # recalibrate: genomic PID on e = T_Lambda - measured interval (Q16 seconds, at least
        # -1 s). dt * 65536 // 1000000 in two parts (65536 / 1000000 = 4096 / 62500, dt =
        # 62500 q + r) so that no product leaves the small ints: a late beat allocates no long int
        dt = (self.period_override_us or self.pulse.period_us) - interval_us
        if dt < -1000000:
            dt = -1000000
        q = dt // 62500
        e = q * 4096 + (dt - q * 62500) * 4096 // 62500
        gp = arb.pid
        out = pidk.update_error(gp.st, e)
        eps = gp.eps
        arbk.recal(ast, arb.exp, out, 1 if -eps < e < eps else 0)
        return d

    def collapse(self):
        return self.em.mem[kairosk.COLLAPSED] != 0

    # ---------------------------------------------------------------- actuator modes (config)
    def set_act_mode(self, manual, duty):
        """CONFIG act_mode: 1 manual (the output is act_manual), 0 automatic, taking over
        bumplessly from the output now (duty 0..65535)."""
        a = self.act
        a.set_auto_mode(not manual, duty, self.meas_q16)
        if manual:
            a.output = self.act_manual_q16

    def set_manual_output(self, v):
        """CONFIG act_mode's output (fraction of full duty): the PID returns it in manual."""
        self.act_manual_q16 = int(round(v * 65536))
        if not self.act.auto:
            self.act.output = self.act_manual_q16

    def resume_output(self, duty):
        """QUARANTINE cleared: the PID continues from the output held (the safe duty) at this
        measurement, without a bump (device/pid.py bumpless)."""
        if self.act.auto:
            self.act.bumpless(duty, self.meas_q16)

    def period_us(self):
        return self.period_override_us or self.pulse.period_us

    # ---------------------------------------------------------------- lag learning (idle)
    def learn_step(self, max_lags, start=True):
        """One bounded slice of the lag search; True when the KAIROS lag changed (the caller
        sends HELLO: the stream restarts). ``start`` False: a search due to start waits (its
        start costs ~1.2 ms on a Pico: the caller says whether that fits)."""
        ll = self.learner
        if ll is None:
            return False
        h = self.health
        if h.relearn:
            h.relearn = False
            self.locked = False
            self._learn_wait = 0
        if not ll.busy:
            if self.locked:
                return False
            if self._learn_wait > 0:
                self._learn_wait -= 1
                return False
            if not start or not ll.start():
                return False
            return False
        if not ll.step(max_lags):
            return False
        if ll.locked:
            self.locked = True
            if ll.best_lag != self.em.lag:
                self.em.set_lag(ll.best_lag)
                h.reset_coherence()
                return True
            return False
        self._learn_wait = self.relearn_beats
        return False

    def coherence_q16(self):
        return self.em.coherence

    def threat_q16(self):
        t = self.arb.threat
        return 65535 if t > 65535 else t

    # (the TELEMETRY record's O weight, PID error and output and features: device/beat.py reads
    # their words straight)

    # ---------------------------------------------------------------- host: MODEL, CONFIG
    def set_model(self, bias, w_level, w_kurt, w_crest, w_anoms):
        self.arb.set_model(bias, w_level, w_kurt, w_crest, w_anoms)

    def set_anomaly_z(self, z):
        """CONFIG anomaly_z: an exceedance is |y| > z sigma (sigma from the running median)."""
        self.anomaly_z = z
        self.vib.set_z(_z_med(z))

    def set_lag(self, lag):
        """CONFIG lag_samples: 0 = learn it (auto), else a fixed lag at the KAIROS rate. The
        stream restarts (the caller sends HELLO)."""
        if self.learner is not None:
            self.learner.cancel()
        if lag == 0:
            if self.learner is None:
                from device.lag import LagLearner
                self.learner = LagLearner(self.em, lmin=2, lmax=self.em.max_lag,
                                          lock=self.em.threshold_q16 / 65536.0)
            self.auto_lag = True
            self.locked = False
            self._learn_wait = 0
            self.em.set_lag(lag_for(FALLBACK_TAU, self.kairos_hz))
        else:
            self.auto_lag = False
            self.learner = None
            self.locked = True
            self.em.set_lag(lag)
        self.health.reset_coherence()


def _z_med(z):
    # a z-score threshold as a multiple of the median |y|: sigma = median / 0.6745 (Gaussian)
    return max(2, int(round(z / 0.6745)))
