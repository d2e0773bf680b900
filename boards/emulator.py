"""Board ``emulator``: the unmodified firmware on this machine (MicroPython unix port or CPython).

Sensor: a synthetic rotating machine measured by an accelerometer on a 12-bit ADC (mid-scale
2048, COUNTS_PER_UNIT = 128 counts per g, i.e. a +-16 g front end), sampled at f_s
(default 12 kHz, like the Pico board):

    x = 2048 + plant + sum_i (amp/i) sin(i * 2 pi f0 t + phi_i) + noise + faults

the seed's multi-octave coherent signal (ET Eq 30, P(x) = sum_i (1/i) sin(i D_seed x)) as the
machine's running speed and its harmonics, Gaussian-like broadband noise (the sum of twelve
uniform numbers from a seeded xorshift: kurtosis 2.9) as the healthy bearing's vibration, and the output of a
first-order plant driven by the PWM duty, so the actuator loop closes. Samples are generated a
block at a time in viper (0.3 us a sample on the unix port); faults switch at block edges.

``--signal f0=HZ,octaves=N,noise=G,amp=G``: the running frequency (default 8..40 Hz from the
seed), harmonics 1..8 (3), broadband noise in g rms (0.05), fundamental amplitude in g (0.3).
A steady machine at these defaults collapses (KAIROS); ``amp=0`` is broadband noise only.

``--faults KIND@START[+DUR][*AMP],...`` (START, DUR in ms of sensor time; AMP per kind):

    noise@S+D*MG      extra broadband noise of MG milli-g rms
    impact@S+D*MG     an impacting machine: bearing-like impacts of MG milli-g (a 3 kHz ring
                      decaying in about 1 ms) at 3.585 x the running frequency (an outer-race
                      defect's rate)
    spike@S*MG        one spike of MG milli-g
    spikes@S+D*MG     a spike of MG milli-g every 25 samples
    stuck@S+D         the sensor repeats its last value
    dead@S+D          no samples at all (a disconnected sampler)
    drift@S+D*MG      an offset ramping to MG milli-g over DUR, then held (sensor drift)
    fdrift@S+D*PCT    the running frequency ramps by PCT percent over DUR, then holds
    incoherent@S+D    the machine loses its rhythm: the harmonics' phases jump every 20 ms
                      (same energy, no periodicity)
    disturb@S+D*CNT   a DC disturbance of -CNT counts on the actuator loop's measurement
                      (ramping in and out over 500 ms)
    load@S+D*US       the beat is overloaded: US microseconds of extra work per beat

``--sensor-file PATH``: samples from a file instead (raw little-endian uint16 counts at f_s;
``becomingone replay`` writes one from a recording); the board reports ``exhausted`` at its end.

Pins: none (virtual).  Transports: none, serial (stdin/stdout or a pty path), udp.  Limits
(LIMITS, the one definition; HELLO carries f_s, spb_max, period_min_us): ADC 12-bit (0..4095),
f_s 1..20000 Hz (default 12000), at most 255 samples per beat (a beat of at most (255-1)/f_s:
21 ms at 12 kHz), periods from 500 us, PWM duty 0..65535, no hardware watchdog (SoftWatchdog: a
crash ends the process with status 3, device/faults.py).  QUARANTINE persists in the file
``latch`` of ``--state-dir`` when one is given (device/latch.py); without it, only in RAM.
The fault and signal specs and ``build()`` are boards/emulator_build.py (boot-time only).
"""
import math
from array import array

from shared.compat import micropython, const  # noqa: F401
try:
    from shared.compat import ptr16, ptr32    # CPython stand-ins; viper has them built in
except ImportError:
    pass

from device.hw.sampler import copy16 as _copy16
from shared.kairos import COS_Q14_BIASED

NAME = "emulator"
PINS = {}
TRANSPORTS = ("none", "serial", "pty", "udp")
DEFAULT_FS = 12000
ADC_BITS = 12
COUNTS_PER_UNIT = 128.0            # counts per g: a +-16 g front end on a 12-bit ADC
SETPOINT = 0.55                    # the actuator loop's target: mid-scale + 204 counts of plant
LIMITS = {"adc_bits": 12, "f_s_default": DEFAULT_FS, "f_s_max": 20000, "spb_max": 255,
          "period_min_us": 500, "pwm_bits": 16, "wdt_max_ms": 8388}

_TABLE_BITS = const(10)
_PHASE_BITS = const(24)           # phase accumulator modulo 2^24
_SHIFT = const(14)                # _PHASE_BITS - _TABLE_BITS
MAX_FAULTS = const(8)
_SPIKE_EVERY = const(25)
_MID = const(2048)


class Plant:
    """First-order plant: y follows gain * duty / 65536 with time constant 2^shift samples
    (stepped once per generated block with the block's length)."""

    def __init__(self, gain=400, shift=10):
        self.gain = gain
        self.shift = shift
        self.duty = 0
        self.y8 = 0      # output in counts * 256

    def step(self, n=1):
        target8 = ((self.duty >> 4) * self.gain) >> 4   # gain * duty / 65536 * 256
        d = target8 - self.y8
        # n first-order steps of 2^-shift, approximated by n * d / 2^shift (n << 2^shift)
        self.y8 += (d * n) >> self.shift
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


# generator state words (array('i'), every word >= 0)
_RNG = const(0)       # xorshift32 state (kept in 31 bits)
_NOISE = const(1)     # noise amplitude: counts per 2^16 of the uniform sum's spread
_BASE = const(2)      # offset counts (mid-scale + plant + drift + disturbance) + 2^20
_OCT = const(3)
_STUCK = const(4)
_LAST = const(5)
_IMP_AMP = const(6)   # impact amplitude, counts
_IMP_STEP = const(7)  # impact phase step (2^24 = one impact)
_IMP_PH = const(8)
_RING_I = const(9)    # position in the ring-down table (>= _RING_LEN: silent)
_SPK_AMP = const(10)
_SPK_CNT = const(11)
_N = const(12)        # samples generated (mod 2^30)
_PH = const(16)       # phases, steps, amplitudes of the harmonics: 8 each
_ST = const(24)
_AM = const(32)
_NST = const(40)
_RING_LEN = const(24)


def _ring_table():
    # impact ring-down: a 3 kHz tone decaying by e over 0.3 ms (at 12 kHz), Q14 + 16384
    r = array("H", bytes(2 * _RING_LEN))
    for i in range(_RING_LEN):
        r[i] = int(round(16384 * math.exp(-i / 4.0) * math.cos(2 * math.pi * i / 4.0))) + 16384
    return r


# the harmonics use KAIROS's phasor table (1024 steps a turn, Q14 + 16384): one table in RAM
_SIN = COS_Q14_BIASED
_RINGTAB = _ring_table()


@micropython.viper
def _gen(st, sin, ring, out, off: int, n: int) -> int:
    s = ptr32(st)
    t = ptr16(sin)
    rg = ptr16(ring)
    o = ptr16(out)
    oct_ = int(s[_OCT])
    base = int(s[_BASE]) - (1 << 20)
    noise = int(s[_NOISE])
    rng = int(s[_RNG])
    stuck = int(s[_STUCK])
    last = int(s[_LAST])
    iamp = int(s[_IMP_AMP])
    istep = int(s[_IMP_STEP])
    iph = int(s[_IMP_PH])
    ri = int(s[_RING_I])
    samp = int(s[_SPK_AMP])
    scnt = int(s[_SPK_CNT])
    m31 = (int(0x7FFF) << 16) | int(0xFFFF)   # 2^31 - 1 (casts: a folded literal that large is not a small int)
    i = 0
    while i < n:
        if stuck:
            o[off + i] = last
            i += 1
            continue
        v = base
        k = 0
        while k < oct_:
            p = (int(s[_PH + k]) + int(s[_ST + k])) & 0xFFFFFF
            s[_PH + k] = p
            j = p >> _SHIFT
            a = int(t[j]) - 16384
            b = int(t[j + 1]) - 16384
            a += ((b - a) * (p & 0x3FFF)) >> _SHIFT
            v += (int(s[_AM + k]) * a) >> 14
            k += 1
        if noise:
            u = 0
            q = 0
            while q < 12:
                rng ^= (rng << 13) & m31
                rng ^= rng >> 17
                rng ^= (rng << 5) & m31
                u += rng & 0xFFFF
                q += 1
            # the sum of 12 uniforms on 0..65535: mean 393210, sd 65536 (kurtosis 2.9, close to
            # a Gaussian's 3); noise = counts rms in Q4
            v += (((u - 393210) >> 4) * noise) >> 16
        if iamp:
            iph += istep
            if iph >= 0x1000000:
                iph -= 0x1000000
                ri = 0
            if ri < _RING_LEN:
                v += (iamp * (int(rg[ri]) - 16384)) >> 14
                ri += 1
        if samp:
            if scnt == 0:
                v += samp
                scnt = _SPIKE_EVERY
            scnt -= 1
        if v < 0:
            v = 0
        elif v > 4095:
            v = 4095
        o[off + i] = v
        last = v
        i += 1
    s[_RNG] = rng
    s[_LAST] = last
    s[_IMP_PH] = iph
    s[_RING_I] = ri
    s[_SPK_CNT] = scnt
    s[_N] = (int(s[_N]) + n) & 0x3FFFFFFF
    return n


class SyntheticMachine:
    """12-bit samples of a synthetic machine (see the module docstring); ``fill(buf, off, n)``
    writes the next n samples at buf[off:] (returns n, or 0 while a dead-sensor fault is
    active). Fault parameters are integers prepared at construction; a block only recomputes
    them when it crosses a fault's start or end or sits in a ramp, and never with floats (a
    float allocates on MicroPython), so the emulated sensor allocates nothing per beat."""

    def __init__(self, seed=42, f_s=DEFAULT_FS, octaves=3, amp_g=0.3, noise_g=0.05,
                 plant=None, faults=(), f0_hz=None, counts_per_unit=COUNTS_PER_UNIT):
        if not 1 <= octaves <= 8:
            raise ValueError("octaves must be 1..8, got %r" % (octaves,))
        if not 250 <= f_s <= 20000:
            raise ValueError("emulator f_s must be 250..20000 Hz, got %r" % (f_s,))
        cpu = counts_per_unit
        self.st = array("i", bytes(4 * _NST))
        s = self.st
        s[_RNG] = ((seed * 2654435761) & 0x7FFFFFFF) or 1
        f0 = 8.0 + ((seed * 7919) % 3200) / 100.0        # 8.00 .. 39.99 Hz from the seed
        if f0_hz is not None:
            if not 0.5 <= f0_hz <= f_s / 8:
                raise ValueError("signal f0 must be 0.5..%g Hz (f_s/8), got %r" % (f_s / 8, f0_hz))
            f0 = f0_hz
        self.f0 = f0
        self.f_s = f_s
        self.octaves = octaves
        s[_OCT] = octaves
        amp_c = amp_g * cpu
        self.st0 = array("i", bytes(4 * octaves))      # harmonic phase steps at the base speed
        base = f0 * (1 << 24) / f_s
        for i in range(octaves):
            s[_PH + i] = (s[_RNG] * (i + 7) * 40503) & 0xFFFFFF
            s[_AM + i] = int(round(amp_c / (i + 1)))
            self.st0[i] = int(round(base * (i + 1))) & 0xFFFFFF
            s[_ST + i] = self.st0[i]
        self.noise0 = int(round(noise_g * cpu * 16))       # counts rms in Q4
        self.plant = plant
        self.n = 0
        fl = faults             # [(kind, start_ms, dur_ms, amp)]: boards/emulator_build.py
        # (kind, start, end, integer parameter) in samples; amplitudes in counts
        fs = []
        for k, a, d, amp in fl:
            st, en = a * f_s // 1000, (a + d) * f_s // 1000
            if k in (1,):      # extra noise: combined amplitude (root sum of squares)
                c = amp / 1000.0 * cpu
                v = int(round(((noise_g * cpu) ** 2 + c * c) ** 0.5 * 16))
            elif k in (3, 4, 5, 6):
                v = int(round(amp / 1000.0 * cpu))
            elif k == 7:       # frequency drift: harmonic 1's extra step at the full ramp
                v = amp
            else:
                v = amp
            fs.append((k, st, en, v))
        self.faults = fs
        self.extra_load_us = 0
        self.dead = False
        self._next = 0          # next sample index at which the parameters must be re-taken
        self._incoh_next = 0
        self._drift = 0
        self._apply(0)

    def _apply(self, n0):
        """Set the generator for the block starting at sample n0 (faults switch at blocks);
        integers only. Sets self._next, the first sample where this must run again."""
        s = self.st
        noise = self.noise0
        stuck = 0
        imp = 0
        spk = 0
        disturb = 0
        load = 0
        dead = False
        fd = 0                     # frequency drift in 1/1024 of a percent step
        incoh = False
        nxt = 0x3FFFFFFF
        ramp = False
        for kind, a, b, v in self.faults:
            if n0 < a:
                if a < nxt:
                    nxt = a
                continue
            on = n0 < b
            if on and b < nxt:
                nxt = b
            if kind == 4:          # drift: ramp then hold
                if on:
                    self._drift = v * ((n0 - a) // max(1, (b - a) >> 10)) >> 10
                    ramp = True
                else:
                    self._drift = v
            elif kind == 7:        # frequency drift: ramp then hold
                frac = 1024 if not on else (n0 - a) // max(1, (b - a) >> 10)
                if frac > 1024:
                    frac = 1024
                fd = v * frac      # percent * 1024
                if on:
                    ramp = True
            elif kind == 3:
                if n0 < a + 64:
                    spk = v
                    if a + 64 < nxt:
                        nxt = a + 64
            elif on:
                if kind == 1:
                    noise = v
                elif kind == 2:
                    stuck = 1
                elif kind == 5:
                    spk = v
                elif kind == 6:
                    imp = v
                elif kind == 8:
                    dead = True
                elif kind == 9:
                    incoh = True
                    ramp = True
                elif kind == 10:
                    # ramps in and out over 500 ms (a process disturbance, not a step)
                    rmp = self.f_s // 2
                    u = n0 - a
                    w = b - n0
                    if w < u:
                        u = w
                    disturb += v if u >= rmp else v * u // rmp
                    ramp = True
                elif kind == 11:
                    load = v
        st0 = self.st0
        for i in range(self.octaves):
            # step = st0 * (1 + fd / 102400): split so no product reaches 2^30
            s[_ST + i] = (st0[i] + (st0[i] >> 10) * fd // 100) & 0xFFFFFF
        if incoh and n0 >= self._incoh_next:
            # a random phase jump per harmonic every 20 ms
            self._incoh_next = n0 + self.f_s // 50
            for i in range(self.octaves):
                s[_PH + i] = (s[_PH + i] + self._rand24()) & 0xFFFFFF
        s[_NOISE] = noise
        s[_STUCK] = stuck
        s[_IMP_AMP] = imp
        # impacts at 3.58 x the running speed (an outer-race defect)
        s[_IMP_STEP] = (s[_ST] >> 8) * 917
        s[_SPK_AMP] = spk
        self.dead = dead
        self.extra_load_us = load
        self._disturb = disturb
        self._next = n0 + 1 if ramp else nxt

    def _rand24(self):
        s = self.st
        r = s[_RNG]
        r ^= (r << 13) & 0x7FFFFFFF
        r ^= r >> 17
        r ^= (r << 5) & 0x7FFFFFFF
        s[_RNG] = r
        return r & 0xFFFFFF

    def fill(self, buf, off, n):
        n0 = self.n
        if n0 >= self._next:
            self._apply(n0)
        plant = 0
        if self.plant is not None:
            plant = self.plant.step(n)
        self.st[_BASE] = _MID + plant + self._drift - self._disturb + (1 << 20)
        self.n = n0 + n
        if self.dead:
            return 0
        return _gen(self.st, _SIN, _RINGTAB, buf, off, n)


class FileSensor:
    """Samples from a file of little-endian uint16 counts (``becomingone replay`` writes it),
    read a chunk at a time into a preallocated buffer; ``exhausted`` once the file ends."""

    def __init__(self, path, chunk=512):
        self.f = open(path, "rb")
        self.exhausted = False
        self.n = 0
        self._buf = array("H", bytes(2 * chunk))
        self._have = 0          # samples in _buf
        self._at = 0            # next unread sample in _buf
        self._eof = False

    def fill(self, buf, off, n):
        got = 0
        while got < n:
            if self._at >= self._have:
                if self._eof:
                    self.exhausted = True
                    break
                r = self.f.readinto(self._buf)
                k = (r or 0) // 2
                if k < len(self._buf):
                    self._eof = True
                self._have = k
                self._at = 0
                if k == 0:
                    continue
            k = self._have - self._at
            if k > n - got:
                k = n - got
            _copy16(self._buf, self._at, buf, off + got, k)
            self._at += k
            got += k
        self.n += got
        return got


class Hardware:
    pass


def build(clock, **kw):
    """The board's hardware (boards/emulator_build.py: boot-time only, forgotten once the beat
    is built, like device/cli.py)."""
    from boards.emulator_build import build as b
    return b(clock, **kw)
