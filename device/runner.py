"""Builds the beat from options (device/cli.py).  Boot-time only: device/main.py drops this
module (and device/cli.py) once the beat is built, so their code does not sit in the heap of a
running device; the closing report is device/report.py, loaded at exit."""
import os

import gc

from device.clock import Clock, VirtualClock
from shared.compat import const

# A hole low in the heap for the VM's frames. MicroPython takes a bytecode function's frame from
# the heap when it holds more than 11 words (most of the idle path: idle(), encoding, signing,
# mining), first fit from the lowest free block; after boot the low heap is a lace of small
# holes, and that search walked ~48 KB of the allocation table on every such call (0.4-0.6 ms
# on a Pico, measured; 11 us once a hole fits). prepare() takes this block before the modules
# load, build() lets it go: freed by the next collection, it is the first free run the
# search meets, and the frames of the beat fit in it.
_ARENA = const(2048)
_arena = None


def random_boot_id():
    b = os.urandom(2)
    v = b[0] | (b[1] << 8)
    return v if v else 1


def load_key(path):
    """A 32-byte key file: raw bytes, or 64 hex characters (whitespace ignored)."""
    import binascii
    with open(path, "rb") as f:
        data = f.read()
    if len(data) == 32:
        return data
    txt = bytes(b for b in data if b not in b" \t\r\n")
    if len(txt) == 64:
        try:
            return binascii.unhexlify(txt)
        except ValueError:
            pass
    raise ValueError("--key-file %s: expected 32 raw bytes or 64 hex characters, got %d bytes"
                     % (path, len(data)))


def unload(name):
    """Forget a module used once (its code and tables go back to the heap once nothing refers
    to them)."""
    import sys
    sys.modules.pop(name, None)
    i = name.rfind(".")
    pkg = sys.modules.get(name[:i])
    if pkg is not None:
        try:
            delattr(pkg, name[i + 1:])
        except (AttributeError, TypeError, KeyError):
            pass


def load_board(name):
    mod = __import__("boards." + name, None, None, ["build"])
    gc.collect()
    return mod


def prepare(opts):
    """Compile every module the beat needs (before the long-lived tables are allocated; see
    device/main.py for the heap reserve that keeps one large hole for them)."""
    global _arena
    gc.collect()
    _arena = bytearray(_ARENA)
    import shared.wire_check  # noqa: F401  (the wire's layouts, codes and checks)
    gc.collect()
    import device.beat_maths  # noqa: F401
    gc.collect()
    import device.arbiter  # noqa: F401
    import shared.pow  # noqa: F401
    gc.collect()
    import device.beat  # noqa: F401
    gc.collect()
    import device.hostframes  # noqa: F401
    import device.hw.links  # noqa: F401
    gc.collect()
    import shared.frame_encoder  # noqa: F401
    gc.collect()
    lk = opts.link
    if lk in ("serial", "stdio") or lk.startswith("uart:") or lk.startswith("/") or \
            (not lk and opts.board == "pico"):
        import device.hw.stream_links  # noqa: F401
        from device.hw.txbuf import reserve
        reserve(1024)                 # the transmit buffer, before the tables fragment the heap
        gc.collect()
    elif lk.startswith("udp://") or (not lk and opts.board in ("pico_w", "pizero")):
        import device.hw.udp_link  # noqa: F401
        gc.collect()
    if opts.state_dir or opts.board != "emulator":   # QUARANTINE kept across resets
        import device.latch  # noqa: F401
        gc.collect()
    # device/limits.py (the boot check), device/config_plan.py + config_rules.py (a CONFIG), device/faults.py (a crash)
    # are loaded when needed: on a board they are .mpy files, which need no compiler heap
    board = load_board(opts.board)
    gc.collect()
    return board


def build(opts, clock=None, link=None, miner=None, arbiter=None, hw=None):
    """Build the beat (modules compiled by ``prepare`` if it ran; imported here otherwise)."""
    global _arena
    from device.beat_maths import Maths
    from device.beat import Beat, Settings
    from device.hostframes import HostFrames
    from device.hw.links import open_link
    from shared.frame_encoder import Encoder
    board = load_board(opts.board) if hw is None else None
    gc.collect()
    if clock is None:
        clock = VirtualClock() if opts.clock == "virtual" else Clock()
    limits = getattr(hw, "limits", None) if hw is not None else board.LIMITS
    if hw is not None and not opts.fs:
        opts.fs = hw.f_s
    if limits is not None and not opts.checked:   # device/main.py checks before it gets here
        from device.cli import check_board, UsageError
        try:
            check_board(opts, limits)       # f_s and the beat period within the board's limits
        except UsageError as e:
            raise ValueError(str(e))
    unload("device.limits")                 # boot only; a CONFIG loads it again
    if hw is None:                          # the hardware first (a Pico's watchdog starts here)
        kw = {}
        if opts.sensor_file:
            kw["sensor_file"] = opts.sensor_file
        hw = board.build(clock=clock, f_s=opts.fs, seed=opts.seed,
                         faults=opts.faults, wifi=opts.wifi,
                         signal=opts.signal,
                         state_dir=opts.state_dir or None, **kw)
        unload("boards.%s_build" % opts.board)    # a board's boot-time part, if it has one
    gc.collect()
    if arbiter is None and opts.model == "seed":
        from device.arbiter import Arbiter
        arbiter = Arbiter(model=(0.0, 0.0, 0.0, 0.0, 0.12))
    spb = limits.get("spb_max") if limits is not None else None
    # the sensor's scale (counts per physical unit: the model's level is in those units) and the
    # actuator's setpoint come with the hardware
    maths = Maths(f_s=hw.f_s, adc_bits=hw.adc_bits, pulse_k=opts.pulse_k, pulse_p=opts.pulse_p,
                  lag=opts.lag, omega=opts.omega, pow_bits=opts.pow_bits, miner=miner,
                  arbiter=arbiter, max_samples=spb, act_start=opts.act_start,
                  counts_per_unit=getattr(hw, "counts_per_unit", 128.0),
                  setpoint=getattr(hw, "setpoint_frac", 0.5))
    gc.collect()
    if link is None:
        link = open_link(opts.link or hw.default_link)
    auth = None
    hs = None
    if opts.key_file:
        from shared.auth import Auth
        from device.session import Handshake
        key = load_key(opts.key_file)
        auth = Auth(key)          # until the first session key (the host refuses these frames)
        hs = Handshake(key, auth)
    boot_id = opts.boot_id or random_boot_id()
    enc = Encoder(opts.device_id, boot_id, auth, cobs=getattr(link, "cobs", False),
                  batch_max=5)
    s = Settings()
    s.telemetry_every = opts.telemetry_every
    s.batch_beats = opts.batch or 1
    s.pow_bits = opts.pow_bits
    s.alloc_every = getattr(hw, "alloc_every", 1)
    gc.collect()                  # the beat's own tables next, in as few holes as possible
    beat = Beat(hw, link, enc, maths, s)
    beat.host = HostFrames(beat, auth)
    beat.host.hs = hs
    # QUARANTINE across resets, and the reset cause (HELLO, BOOT witness): where the board has
    # somewhere to keep it (a state folder, rp2 scratch registers); else RAM only
    sd = getattr(hw, "state_dir", None)
    mach = getattr(hw, "machine", None)
    if sd or (mach is not None and hasattr(mach, "mem32")):
        from device.latch import Latch
        latch = Latch(sd, mach)
        beat.latch = latch
        beat.quarantined = latch.boot()
        if getattr(hw, "has_wdt", False):
            latch.arm()
    if getattr(os, "getenv", lambda k: None)("NOTIFY_SOCKET"):   # CPython under systemd
        from device.hw.sdnotify import attach
        attach(beat)
    _arena = None                 # the frames' hole (above): free at the next collection
    return beat
