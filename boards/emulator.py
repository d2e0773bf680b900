"""Board ``emulator``: the unmodified firmware on this machine (MicroPython unix port or CPython).

Sensor: a deterministic synthetic vibration signal built from seeded multi-octave coherent noise
as in ET Eq 30, P(x) = sum_i (1/i) * sin(i * D_seed * x), evaluated per sample in integer
arithmetic from a 256-entry Q14 sine table (nothing allocated per sample), plus a small seeded
xorshift16 noise and the output of a first-order plant driven by the PWM duty, so the actuator
PID loop closes.  Faults are injected on demand (``--faults``):

    noise@START+DUR*AMP   extra white noise of amplitude AMP counts
    stuck@START+DUR       the sensor repeats its last value (d = 0: no energy, no coherence)
    spike@START*AMP       one sample offset by AMP counts
    spikes@START+DUR*AMP  a spike of AMP counts every 25 samples for DUR (an impacting machine)
    drift@START+DUR*AMP   an offset ramping to AMP counts over DUR, then held

The signal itself can be shaped with ``--signal f0=HZ,octaves=N,noise=N,amp=N`` (fundamental
in Hz instead of the seed's, number of octaves 1..8, white-noise and sine amplitudes in counts):
``--signal f0=5,octaves=1,noise=0`` is a clean, coherent vibration.

START and DUR in milliseconds of sensor time (sample index / f_s), e.g.
``--faults noise@3000+2000*900,spike@1000*1500``.

Pins: none (virtual).  Transports: none, serial (stdin/stdout or a pty path), udp.  Limits
(LIMITS, the one definition; HELLO carries f_s, spb_max, period_min_us): ADC 12-bit (0..4095),
f_s 1..20000 Hz (default 1000), at most 32 samples per beat (a beat of at most (32-1)/f_s),
periods from 500 us, PWM duty 0..65535, no hardware watchdog (SoftWatchdog: a crash ends the
process with status 3, device/faults.py).  QUARANTINE persists in the file ``latch`` of
``--state-dir`` when one is given (device/latch.py); without it, only in RAM.
"""
import math
from array import array


NAME = "emulator"
PINS = {}
TRANSPORTS = ("none", "serial", "pty", "udp")
LIMITS = {"adc_bits": 12, "f_s_default": 1000, "f_s_max": 20000, "spb_max": 32,
          "period_min_us": 500, "pwm_bits": 16, "wdt_max_ms": 8388}

_TABLE_BITS = 8
_PHASE_BITS = 20                      # phase accumulator modulo 2^20
_PHASE_MASK = (1 << _PHASE_BITS) - 1
_SHIFT = _PHASE_BITS - _TABLE_BITS
_TMASK = (1 << _TABLE_BITS) - 1
_FMASK = (1 << _SHIFT) - 1
_SPIKE_EVERY = 25   # samples between spikes of a "spikes" fault
_MAX_FAULTS = 8


class Plant:
    """First-order plant: y follows gain * duty / 65536 with time constant 2^shift samples."""

    def __init__(self, gain=1600, shift=6):
        self.gain = gain
        self.shift = shift
        self.duty = 0
        self.y8 = 0      # output in counts * 256

    def step(self):
        target8 = ((self.duty >> 4) * self.gain) >> 4   # gain * duty / 65536 * 256
        self.y8 += (target8 - self.y8) >> self.shift
        return self.y8 >> 8


class PlantPwm:
    """The emulator's PWM output: its duty drives the plant."""

    def __init__(self, plant, safe_duty=0):
        self.plant = plant
        self.safe_duty = safe_duty
        self.duty = safe_duty
        plant.duty = safe_duty

    def write(self, duty):
        d = 0 if duty < 0 else (65535 if duty > 65535 else duty)
        self.duty = d
        self.plant.duty = d

    def safe(self):
        self.write(self.safe_duty)


class SyntheticSensor:
    """12-bit samples: offset + plant + sum_i (amp/i) sin(i * 2*pi*f0 * t + phi_i) + noise."""

    def __init__(self, seed=42, f_s=1000, octaves=3, amp=400, offset=1000, noise=24,
                 plant=None, faults=(), f0_hz=None):
        if not 1 <= octaves <= 8:
            raise ValueError("octaves must be 1..8, got %r" % (octaves,))
        if not 1 <= f_s <= 20000:
            raise ValueError("emulator f_s must be 1..20000 Hz, got %r" % (f_s,))
        n = 1 << _TABLE_BITS
        self.table = array("h")
        for i in range(n):
            self.table.append(int(round(16384 * math.sin(2 * math.pi * i / n))))
        # D_seed: the fundamental, 8..40 Hz from the seed (deterministic)
        self.rng = (seed * 2654435761 % 65521) + 1          # xorshift16 state, non-zero
        f0_centi = 800 + (seed * 7919) % 3200              # 8.00 .. 39.99 Hz
        if f0_hz is not None:
            if not 0.01 <= f0_hz <= f_s / 4:
                raise ValueError("signal f0 must be 0.01..%g Hz (f_s/4), got %r" % (f_s / 4, f0_hz))
            f0_centi = int(round(f0_hz * 100))
        self.f0_centi = f0_centi
        base = (f0_centi << _PHASE_BITS) // (100 * f_s)
        self.octaves = octaves
        self.step = [base * (i + 1) for i in range(octaves)]
        self.amp = [amp // (i + 1) for i in range(octaves)]      # 1/i per ET Eq 30
        self.phase = [self._rand() * 16 & _PHASE_MASK for i in range(octaves)]
        self.offset = offset
        self.noise = noise
        self.plant = plant
        self.f_s = f_s
        self.n = 0
        self.last = offset
        fl = parse_faults(faults) if isinstance(faults, str) else list(faults)
        self.nf = len(fl)
        self.f_kind = bytearray(_MAX_FAULTS)
        self.f_start = [0] * _MAX_FAULTS
        self.f_end = [0] * _MAX_FAULTS
        self.f_amp = [0] * _MAX_FAULTS
        self.f_ramp_q16 = [0] * _MAX_FAULTS
        for i in range(self.nf):
            k, start, dur, a = fl[i]
            self.f_kind[i] = k
            self.f_start[i] = start * f_s // 1000
            self.f_end[i] = (start + dur) * f_s // 1000
            self.f_amp[i] = a
            ns = self.f_end[i] - self.f_start[i]
            self.f_ramp_q16[i] = (a << 16) // ns if ns > 0 else 0
        self.drift_q16 = 0

    def _rand(self):
        s = self.rng
        s ^= (s << 7) & 0xFFFF
        s ^= s >> 9
        s ^= (s << 8) & 0xFFFF
        self.rng = s
        return s

    def sample(self):
        n = self.n
        self.n = (n + 1) & 0x3FFFFFFF
        v = self.offset
        tbl = self.table
        for i in range(self.octaves):
            p = (self.phase[i] + self.step[i]) & _PHASE_MASK
            self.phase[i] = p
            # linear interpolation between table entries: without it the phase rounding adds
            # ~10 % jitter to the sample-to-sample difference (what KAIROS correlates)
            j = p >> _SHIFT
            t0 = tbl[j]
            t0 += ((tbl[(j + 1) & _TMASK] - t0) * (p & _FMASK)) >> _SHIFT
            v += (self.amp[i] * t0) >> 14
        v += ((self._rand() - 32768) * self.noise) >> 15
        if self.plant is not None:
            v += self.plant.step()
        for i in range(self.nf):
            k = self.f_kind[i]
            if k == 4:            # drift: ramp, then hold
                if self.f_start[i] <= n < self.f_end[i]:
                    self.drift_q16 += self.f_ramp_q16[i]
                if n >= self.f_start[i]:
                    v += self.drift_q16 >> 16
            elif k == 5:
                if self.f_start[i] <= n < self.f_end[i] and (n - self.f_start[i]) % _SPIKE_EVERY == 0:
                    v += self.f_amp[i]
            elif k == 3:
                if n == self.f_start[i]:
                    v += self.f_amp[i]
            elif self.f_start[i] <= n < self.f_end[i]:
                if k == 1:
                    v += ((self._rand() - 32768) * self.f_amp[i]) >> 15
                elif k == 2:
                    return self.last
        v = 0 if v < 0 else (4095 if v > 4095 else v)
        self.last = v
        return v


class Hardware:
    pass


def build(clock, **kw):
    """The board's hardware (boards/emulator_build.py: boot-time only, forgotten once the beat
    is built, like device/cli.py)."""
    from boards.emulator_build import build as b
    return b(clock, **kw)


def parse_faults(spec):
    from boards.emulator_build import parse_faults as p
    return p(spec)
