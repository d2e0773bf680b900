"""Command-line options of device/main.py (no argparse on MicroPython: a small parser).
Every bad value raises UsageError naming the flag and what is allowed."""
from shared.protocol_codes import POW_BITS_DEFAULT


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
    """The parsed flags (defaults as class attributes: no method, so nothing here keeps this
    module alive once device/main.py has dropped it after the boot)."""
    board = "emulator"
    beats = 0
    link = ""
    device_id = 1
    boot_id = 0
    key_file = ""
    seed = 42
    faults = ""
    fs = 0                  # 0: the board's default (boards/*.py LIMITS)
    telemetry_every = 1
    batch = 1
    pow_bits = POW_BITS_DEFAULT
    pulse_k = 4.0
    pulse_p = 5.0
    lag = 0                 # 0: learn one period of the machine (device/lag.py)
    omega = 0.0
    sensor_file = ""
    model = "shipped"
    clock = "real"
    wifi = ""
    signal = ""
    state_dir = ""          # "": the board's (pico /, pizero $STATE_DIRECTORY or .)
    act_start = 0.0
    quiet = False
    checked = False         # check_board ran


# attribute -> (type, lo, hi); the flag is "--" + the attribute with "-" for "_" (derived, so
# the flags are not interned strings: a board's qstr pool is heap); type "s" string, "i" int,
# "f" float
_FLAGS = {
    "board": ("s", None, None), "beats": ("i", 0, 0x3FFFFFFF), "link": ("s", None, None),
    "device_id": ("i", 1, 65535), "boot_id": ("i", 1, 65535), "key_file": ("s", None, None),
    "seed": ("i", 0, 0x3FFFFFFF), "faults": ("s", None, None), "fs": ("i", 0, 100000),
    "telemetry_every": ("i", 1, 255), "batch": ("i", 1, 5), "pow_bits": ("i", 0, 28),
    "pulse_k": ("f", None, None), "pulse_p": ("f", None, None), "lag": ("i", 0, 1000),
    "omega": ("f", None, None), "clock": ("s", None, None), "wifi": ("s", None, None),
    "signal": ("s", None, None), "sensor_file": ("s", None, None), "model": ("s", None, None),
    "state_dir": ("s", None, None), "act_start": ("f", None, None),
}


def _flag(attr):
    return "--" + attr.replace("_", "-")


def parse_args(argv):
    o = Options()
    o.board = default_board()
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("-h", "--help"):
            raise UsageError("usage: main.py " + " ".join(
                "[%s %s]" % (_flag(k), k.upper()) for k in sorted(_FLAGS)) + " [--quiet]")
        if a == "--quiet":
            o.quiet = True
            i += 1
            continue
        val = None
        if "=" in a and a.startswith("--"):
            a, val = a.split("=", 1)
        attr = a[2:].replace("-", "_") if a[:2] == "--" else ""
        if attr not in _FLAGS:
            raise UsageError("unknown option %r (allowed: %s, --quiet)"
                             % (a, ", ".join(_flag(k) for k in sorted(_FLAGS))))
        if val is None:
            if i + 1 >= len(argv):
                raise UsageError("option %s needs a value" % a)
            val = argv[i + 1]
            i += 2
        else:
            i += 1
        typ, lo, hi = _FLAGS[attr]
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
    if o.model not in ("shipped", "seed"):
        raise UsageError("--model must be shipped or seed, got %r" % (o.model,))
    if o.clock not in ("real", "virtual"):
        raise UsageError("--clock must be real or virtual, got %r" % (o.clock,))
    if not (o.pulse_k > 0 and o.pulse_p > 0 and o.pulse_k * o.pulse_p > 1.0):
        raise UsageError("--pulse-k and --pulse-p must be > 0 with k * P > 1 (T_Lambda is "
                         "undefined otherwise), got k=%r P=%r" % (o.pulse_k, o.pulse_p))
    if not 0.0 <= o.act_start <= 1.0:
        raise UsageError("--act-start must be in [0, 1] (fraction of full duty), got %r"
                         % (o.act_start,))
    return o


def board_limits(board):
    """The board's LIMITS (boards/NAME.py, the one definition)."""
    mod = __import__("boards." + board, None, None, ["LIMITS"])
    return mod.LIMITS


def check_board(o, limits=None):
    """device/cli.py Options against the board's limits: f_s (0 becomes the board's default)
    and the beat period T_Lambda(k, P) at that f_s.  Sets o.fs; raises cli.UsageError naming the
    flag and what is allowed.  Used at boot (device/runner.py) and by `becomingone flash` (this
    module is boot-only: device/main.py drops it once the beat is built)."""
    from device.limits import check_rate, Refused, message_of
    from device.pulse import t_lambda
    lim = board_limits(o.board) if limits is None else limits
    if not o.fs:
        o.fs = lim.get("f_s_default", 1000)
    period = int(round(t_lambda(o.pulse_k, o.pulse_p) * 1e6))
    try:
        check_rate(o.fs, period, lim, "pulse")
    except Refused as e:
        msg = message_of(e)
        if e.args[0] == "f_s":          # "f_s must be ..." -> "--fs must be ... (board X)"
            raise UsageError("--fs%s (board %s)" % (msg[3:], o.board))
        raise UsageError("--fs / --pulse-k / --pulse-p on board %s: %s" % (o.board, msg))
    o.checked = True
    return o
