"""Board ``emulator``, boot-time part: the fault and signal specs and ``build()``.  Loaded by
boards/emulator.py's ``build`` and forgotten once the beat is built (device/main.py), so the
parsing code does not stay in the heap of a running device."""
from boards.emulator import (Hardware, Plant, PlantPwm, SyntheticSensor, NAME, LIMITS,
                             _MAX_FAULTS)

_KINDS = {"noise": 1, "stuck": 2, "spike": 3, "drift": 4, "spikes": 5}


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
                             % (part, ", ".join(sorted(_KINDS))))
        kind, rest = part.split("@", 1)
        if kind not in _KINDS:
            raise ValueError("fault kind %r unknown (allowed: %s)" % (kind, ", ".join(sorted(_KINDS))))
        amp = 0
        if "*" in rest:
            rest, a = rest.split("*", 1)
            amp = int(a)
        dur = 0
        if "+" in rest:
            rest, d = rest.split("+", 1)
            dur = int(d)
        start = int(rest)
        if start < 0 or dur < 0 or not 0 <= amp <= 4095:
            raise ValueError("fault %r: START, DUR >= 0 ms and 0 <= AMP <= 4095 counts" % part)
        if kind in ("noise", "stuck", "drift", "spikes") and dur == 0:
            raise ValueError("fault %r: %s needs +DUR (ms)" % (part, kind))
        out.append((_KINDS[kind], start, dur, amp))
    if len(out) > _MAX_FAULTS:
        raise ValueError("at most %d faults, got %d" % (_MAX_FAULTS, len(out)))
    return out


def parse_signal(spec):
    """'f0=HZ,octaves=N,noise=N,amp=N' -> dict of SyntheticSensor keyword arguments."""
    out = {}
    if not spec:
        return out
    names = {"f0": ("f0_hz", float, 0.01, 5000.0), "octaves": ("octaves", int, 1, 8),
             "noise": ("noise", int, 0, 2047), "amp": ("amp", int, 0, 2047)}
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        if "=" not in part:
            raise ValueError("signal item %r: expected NAME=VALUE with NAME one of %s"
                             % (part, ", ".join(sorted(names))))
        k, v = part.split("=", 1)
        if k not in names:
            raise ValueError("signal item %r unknown (allowed: %s)" % (k, ", ".join(sorted(names))))
        key, typ, lo, hi = names[k]
        try:
            x = typ(v)
        except ValueError:
            raise ValueError("signal %s=%r: not a number" % (k, v))
        if not lo <= x <= hi:
            raise ValueError("signal %s=%r: allowed %r..%r" % (k, v, lo, hi))
        out[key] = x
    return out


def build(clock, f_s=1000, seed=42, faults="", safe_duty=0, octaves=3, signal="", state_dir=None,
          **_):
    from device.hw.sampler import PullSampler
    from device.hw.outputs import NullLed, SoftWatchdog
    hw = Hardware()
    hw.name = NAME
    hw.board_id = b"emulator"
    hw.adc_bits = 12
    hw.f_s = f_s
    hw.limits = LIMITS
    hw.state_dir = state_dir or None
    hw.clock = clock
    hw.plant = Plant()
    kw = {"octaves": octaves}
    kw.update(parse_signal(signal))
    fl = parse_faults(faults) if isinstance(faults, str) else list(faults)
    hw.sensor = SyntheticSensor(seed=seed, f_s=f_s, plant=hw.plant, faults=fl, **kw)
    hw.sampler = PullSampler(hw.sensor, f_s)
    hw.pwm = PlantPwm(hw.plant, safe_duty)
    hw.led = NullLed()
    hw.watchdog = SoftWatchdog(clock)
    hw.default_link = "none"
    hw.dual_core = False
    hw.setpoint = 1800     # counts: the actuator loop's default target mean
    return hw
