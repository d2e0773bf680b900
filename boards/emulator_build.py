"""Board ``emulator``, boot-time part: the fault and signal specs and ``build()``.  Loaded by
boards/emulator.py's ``build`` and forgotten once the beat is built (device/runner.py), so the
parsing code does not stay in the heap of a running device."""
from boards.emulator import (Hardware, Plant, PlantPwm, SyntheticMachine, FileSensor, NAME,
                             LIMITS, DEFAULT_FS, ADC_BITS, COUNTS_PER_UNIT, SETPOINT, MAX_FAULTS)

# fault kinds in code order (code = position + 1, boards/emulator.py SyntheticMachine); one
# string split at run time, so the words are not interned (a board's qstr pool is heap); every
# kind but spike needs +DUR
KINDS = "noise stuck spike drift spikes impact fdrift dead incoherent disturb load".split()


def parse_faults(spec):
    """'kind@start[+dur][*amp],...' -> list of (kind, start_ms, dur_ms, amp)."""
    out = []
    if not spec:
        return out
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        if "@" not in part:
            raise ValueError("fault %r: expected KIND@START[+DUR][*AMP] with KIND one of %s"
                             % (part, ", ".join(sorted(KINDS))))
        kind, rest = part.split("@", 1)
        if kind not in KINDS:
            raise ValueError("fault kind %r unknown (allowed: %s)"
                             % (kind, ", ".join(sorted(KINDS))))
        amp = 0
        try:
            if "*" in rest:
                rest, a = rest.split("*", 1)
                amp = int(a)
            dur = 0
            if "+" in rest:
                rest, d = rest.split("+", 1)
                dur = int(d)
            start = int(rest)
        except ValueError:
            raise ValueError("fault %r: START, DUR and AMP are whole numbers" % part)
        if start < 0 or dur < 0 or not 0 <= amp <= 100000:
            raise ValueError("fault %r: START, DUR >= 0 ms and 0 <= AMP <= 100000" % part)
        if kind != "spike" and dur == 0:
            raise ValueError("fault %r: %s needs +DUR (ms)" % (part, kind))
        out.append((KINDS.index(kind) + 1, start, dur, amp))
    if len(out) > MAX_FAULTS:
        raise ValueError("at most %d faults, got %d" % (MAX_FAULTS, len(out)))
    return out


def parse_signal(spec):
    """'f0=HZ,octaves=N,noise=G,amp=G' -> dict of SyntheticMachine keyword arguments."""
    out = {}
    if not spec:
        return out
    names = {"f0": ("f0_hz", float, 0.5, 500.0), "octaves": ("octaves", int, 1, 8),
             "noise": ("noise_g", float, 0.0, 4.0), "amp": ("amp_g", float, 0.0, 8.0)}
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        if "=" not in part:
            raise ValueError("signal item %r: expected NAME=VALUE with NAME one of %s"
                             % (part, ", ".join(sorted(names))))
        k, v = part.split("=", 1)
        if k not in names:
            raise ValueError("signal item %r unknown (allowed: %s)"
                             % (k, ", ".join(sorted(names))))
        key, typ, lo, hi = names[k]
        try:
            x = typ(v)
        except ValueError:
            raise ValueError("signal %s=%r: not a number" % (k, v))
        if not lo <= x <= hi:
            raise ValueError("signal %s=%r: allowed %r..%r" % (k, v, lo, hi))
        out[key] = x
    return out


def build(clock, f_s=DEFAULT_FS, seed=42, faults="", safe_duty=0, octaves=3, signal="",
          sensor_file="", state_dir=None, **_):
    from device.hw.sampler import PullSampler
    from device.hw.outputs import NullLed, SoftWatchdog
    hw = Hardware()
    hw.name = NAME
    hw.board_id = b"emulator"
    hw.adc_bits = ADC_BITS
    hw.counts_per_unit = COUNTS_PER_UNIT
    hw.setpoint_frac = SETPOINT
    hw.f_s = f_s
    hw.limits = LIMITS
    hw.state_dir = state_dir or None
    hw.clock = clock
    hw.plant = Plant()
    if sensor_file:
        hw.sensor = FileSensor(sensor_file)
    else:
        kw = {"octaves": octaves}
        kw.update(parse_signal(signal))
        fl = parse_faults(faults) if isinstance(faults, str) else list(faults)
        hw.sensor = SyntheticMachine(seed=seed, f_s=f_s, plant=hw.plant, faults=fl, **kw)
    hw.sampler = PullSampler(hw.sensor, f_s, load_clock=clock)
    hw.pwm = PlantPwm(hw.plant, safe_duty)
    hw.led = NullLed()
    hw.watchdog = SoftWatchdog(clock)
    hw.default_link = "none"
    hw.dual_core = False
    hw.exhausted = (lambda: hw.sensor.exhausted) if sensor_file else None
    return hw
