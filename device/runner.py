"""Builds the beat from options (device/cli.py); the closing report is device/report.py."""
import os

import gc

from device.clock import Clock, VirtualClock


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


def load_board(name):
    mod = __import__("boards." + name, None, None, ["build"])
    gc.collect()
    return mod


def prepare(opts):
    """Compile every module the beat needs (before the long-lived tables are allocated; see
    device/main.py for the heap reserve that keeps one large hole for them)."""
    gc.collect()
    import device.beat_maths  # noqa: F401
    import device.arbiter  # noqa: F401
    import shared.pow  # noqa: F401
    gc.collect()
    import device.beat  # noqa: F401
    import device.hostframes  # noqa: F401
    import device.hw.links  # noqa: F401
    import shared.frame_encoder  # noqa: F401
    board = load_board(opts.board)
    gc.collect()
    return board


def build(opts, clock=None, link=None, miner=None, arbiter=None, hw=None):
    """Build the beat (modules compiled by ``prepare`` if it ran; imported here otherwise)."""
    from device.beat_maths import Maths
    from device.beat import Beat, Settings
    from device.hostframes import HostFrames
    from device.hw.links import open_link
    from shared.frame_encoder import Encoder
    board = load_board(opts.board) if hw is None else None
    gc.collect()
    if clock is None:
        clock = VirtualClock() if opts.clock == "virtual" else Clock()
    if hw is not None:
        f_s = hw.f_s
        adc_bits = hw.adc_bits
        cpu = getattr(hw, "counts_per_unit", 128.0)
    else:
        f_s = opts.fs or board.DEFAULT_FS
        adc_bits = getattr(board, "ADC_BITS", 12)
        cpu = getattr(board, "COUNTS_PER_UNIT", 128.0)
    if arbiter is None and opts.model == "seed":
        from device.arbiter import Arbiter
        arbiter = Arbiter(model=(0.0, 0.0, 0.0, 0.0, 0.12))
    sp = getattr(board, "SETPOINT", 0.5) if hw is None else getattr(hw, "setpoint_frac", 0.5)
    maths = Maths(f_s=f_s, adc_bits=adc_bits, pulse_k=opts.pulse_k, pulse_p=opts.pulse_p,
                  lag=opts.lag, omega=opts.omega, pow_bits=opts.pow_bits, miner=miner,
                  arbiter=arbiter, counts_per_unit=cpu, setpoint=sp)
    gc.collect()
    if hw is None:
        kw = {}
        if opts.sensor_file:
            kw["sensor_file"] = opts.sensor_file
        hw = board.build(clock=clock, f_s=f_s, seed=opts.seed, faults=opts.faults,
                         wifi=opts.wifi, signal=opts.signal, **kw)
        if hw.adc_bits != adc_bits:
            raise ValueError("board %s has a %d-bit ADC; the beat was built for %d bits"
                             % (hw.name, hw.adc_bits, adc_bits))
    gc.collect()
    if link is None:
        link = open_link(opts.link or hw.default_link)
    auth = None
    if opts.key_file:
        from shared.auth import Auth
        auth = Auth(load_key(opts.key_file))
    boot_id = opts.boot_id or random_boot_id()
    enc = Encoder(opts.device_id, boot_id, auth, cobs=getattr(link, "cobs", False),
                  batch_max=5)
    s = Settings()
    s.telemetry_every = opts.telemetry_every
    s.batch_beats = opts.batch
    s.pow_bits = opts.pow_bits
    beat = Beat(hw, link, enc, maths, s)
    beat.host = HostFrames(beat, auth)
    return beat

