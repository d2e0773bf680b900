"""Command-line options of device/main.py (no argparse on MicroPython: a small parser).
Every bad value raises UsageError naming the flag and what is allowed."""


class UsageError(Exception):
    pass


BOARDS = ("emulator", "pico", "pico_w", "pizero")


def default_board():
    """pico / pico_w on an rp2 (a Pico runs main.py without arguments), else emulator."""
    import sys
    if sys.platform == "rp2":
        try:
            import network  # noqa: F401  (only the Pico W firmware has it)
            return "pico_w"
        except ImportError:
            return "pico"
    return "emulator"


class Options:
    def __init__(self):
        self.board = default_board()
        self.beats = 0
        self.link = ""
        self.device_id = 1
        self.boot_id = 0
        self.key_file = ""
        self.seed = 42
        self.faults = ""
        self.fs = 0                 # 0: the board's default (boards/*.py LIMITS)
        self.telemetry_every = 1
        self.batch = 1
        self.pow_bits = 16
        self.pulse_k = 4.0
        self.pulse_p = 5.0
        self.lag = 10
        self.omega = 2.0
        self.clock = "real"
        self.wifi = ""
        self.signal = ""
        self.state_dir = ""         # "": the board's (pico /, pizero $STATE_DIRECTORY or .)
        self.act_start = 0.0
        self.quiet = False


# flag -> (attribute, type, lo, hi) ; type "s" string, "i" int, "f" float
_FLAGS = {
    "--board": ("board", "s", None, None),
    "--beats": ("beats", "i", 0, 0x3FFFFFFF),
    "--link": ("link", "s", None, None),
    "--device-id": ("device_id", "i", 1, 65535),
    "--boot-id": ("boot_id", "i", 1, 65535),
    "--key-file": ("key_file", "s", None, None),
    "--seed": ("seed", "i", 0, 0x3FFFFFFF),
    "--faults": ("faults", "s", None, None),
    "--fs": ("fs", "i", 0, 100000),
    "--telemetry-every": ("telemetry_every", "i", 1, 255),
    "--batch": ("batch", "i", 1, 5),
    "--pow-bits": ("pow_bits", "i", 0, 28),
    "--pulse-k": ("pulse_k", "f", None, None),
    "--pulse-p": ("pulse_p", "f", None, None),
    "--lag": ("lag", "i", 1, 1000),
    "--omega": ("omega", "f", None, None),
    "--clock": ("clock", "s", None, None),
    "--wifi": ("wifi", "s", None, None),
    "--signal": ("signal", "s", None, None),
    "--state-dir": ("state_dir", "s", None, None),
    "--act-start": ("act_start", "f", None, None),
}


def parse_args(argv):
    o = Options()
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("-h", "--help"):
            raise UsageError("usage: main.py " + " ".join(
                "[%s %s]" % (k, _FLAGS[k][0].upper()) for k in sorted(_FLAGS)) + " [--quiet]")
        if a == "--quiet":
            o.quiet = True
            i += 1
            continue
        val = None
        if "=" in a and a.startswith("--"):
            a, val = a.split("=", 1)
        if a not in _FLAGS:
            raise UsageError("unknown option %r (allowed: %s, --quiet)"
                             % (a, ", ".join(sorted(_FLAGS))))
        if val is None:
            if i + 1 >= len(argv):
                raise UsageError("option %s needs a value" % a)
            val = argv[i + 1]
            i += 2
        else:
            i += 1
        attr, typ, lo, hi = _FLAGS[a]
        if typ == "i":
            try:
                v = int(val)
            except ValueError:
                raise UsageError("%s needs an integer, got %r" % (a, val))
            if v < lo or v > hi:
                raise UsageError("%s must be %d..%d, got %d" % (a, lo, hi, v))
        elif typ == "f":
            try:
                v = float(val)
            except ValueError:
                raise UsageError("%s needs a number, got %r" % (a, val))
        else:
            v = val
        setattr(o, attr, v)
    if o.board not in BOARDS:
        raise UsageError("--board %r unknown (allowed: %s)" % (o.board, ", ".join(BOARDS)))
    if o.clock not in ("real", "virtual"):
        raise UsageError("--clock must be real or virtual, got %r" % (o.clock,))
    if not (o.pulse_k > 0 and o.pulse_p > 0 and o.pulse_k * o.pulse_p > 1.0):
        raise UsageError("--pulse-k and --pulse-p must be > 0 with k * P > 1 (T_Lambda is "
                         "undefined otherwise), got k=%r P=%r" % (o.pulse_k, o.pulse_p))
    if not 0.0 <= o.act_start <= 1.0:
        raise UsageError("--act-start must be in [0, 1] (fraction of full duty), got %r"
                         % (o.act_start,))
    return o


def check_board(o, limits=None):
    """The flags against the board's limits (device/limits.py check_board)."""
    from device.limits import check_board as cb
    return cb(o, limits)
