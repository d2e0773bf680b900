# Helpers for the beat tests (both runtimes): a recording link, a beat on the emulator board
# with a virtual clock, host frames built with shared.protocol.encode.
import gc

from device.clock import VirtualClock


class _Protocol:
    """shared.protocol, imported at its first use: the scenarios build the beat first, so the
    firmware's tables get the heap before the host-side decoder the tests read frames with
    (the device itself never loads shared/protocol.py)."""

    def __getattr__(self, name):
        from shared import protocol
        return getattr(protocol, name)


P = _Protocol()


class FakeLink:
    """Records every frame sent; ``inbox`` holds frames the 'host' sends."""
    name = "fake"
    cobs = False

    def __init__(self):
        self.sent = []
        self.inbox = []
        self.tx_frames = self.tx_bytes = self.rx_frames = self.rx_bytes = 0
        self.send_errors = self.rx_dropped = 0
        self.keep = True
        self.keep_telemetry = False
        self.last_telemetry = None

    def send(self, data):
        self.tx_frames += 1
        # TELEMETRY is kept only when asked (keep_telemetry): 192K heap
        if not self.keep:
            return
        if self.keep_telemetry or data[1] != P.TELEMETRY:
            self.sent.append(bytes(data))
        else:
            self.last_telemetry = bytes(data)

    def recv(self):
        if not self.inbox:
            return None
        self.rx_frames += 1
        return self.inbox.pop(0)

    def close(self):
        pass

    def frames(self, msg_type=None):
        out = []
        for d in self.sent:
            if msg_type is None or d[1] == msg_type:    # byte 1 = type: decode only those
                out.append(P.decode(d))
        return out

    def clear(self):
        self.sent = []


class SlowMiner:
    """The real shared.pow Miner, charging ``us_per_hash`` of virtual time per hash tried."""

    def __init__(self, clock, us_per_hash):
        from shared.pow import Miner
        self.m = Miner()
        self.clock = clock
        self.us = us_per_hash

    def start(self, record, bits):
        self.m.start(record, bits)

    def step(self, n):
        before = self.m.hashes
        r = self.m.step(n)
        self.clock.advance((self.m.hashes - before) * self.us)
        return r

    @property
    def exhausted(self):
        return self.m.exhausted

    @property
    def nonce_lo16(self):
        return self.m.nonce_lo16

    @property
    def nonce_hi16(self):
        return self.m.nonce_hi16


_prepared = []


def make_beat(args=(), start=0, cost_us=0, link=None, miner=None, boot_id=77, state_dir=None,
              sampler=None):
    """A beat built by device/runner.py as main.py builds it (emulator board, virtual clock),
    with a recording link; state_dir keeps its QUARANTINE latch, sampler replaces the board's.
    Drop the previous beat (and gc.collect()) before building another: a 192K heap holds one."""
    from device import runner
    import boards.emulator as E
    gc.collect()
    from device.cli import parse_args
    # the emulator board named: an rp2 chip (lane 4) defaults to pico (device/cli.py)
    a = ["--board", "emulator", "--clock", "virtual", "--boot-id", str(boot_id)] + list(args)
    if state_dir is not None:
        a += ["--state-dir", state_dir]
    o = parse_args(a)
    clk = VirtualClock(start=start, cost_us=cost_us)
    link = link or FakeLink()
    if not _prepared:
        runner.prepare(o)          # compile every module before the tables are allocated
        _prepared.append(1)
        gc.collect()
    hw = None
    if sampler is not None:
        o.fs = o.fs or E.DEFAULT_FS
        hw = E.build(clk, f_s=o.fs, seed=o.seed, state_dir=state_dir)
        hw.sampler = sampler
    b = runner.build(o, clock=clk, link=link, miner=miner, hw=hw)
    # boot-only code leaves the heap as device/main.py does (imported again by the next build)
    runner = None
    for name in ("device.runner", "device.cli", "device.limits"):
        _unload(name)
    gc.collect()
    return b, clk, link


def _unload(name):
    import sys
    sys.modules.pop(name, None)
    pkg = sys.modules.get(name.rsplit(".", 1)[0])
    if pkg is not None and hasattr(pkg, name.rsplit(".", 1)[1]):
        delattr(pkg, name.rsplit(".", 1)[1])


def threaten(b):
    """Drive the threat to ~1 (QUARANTINE at the next beat): the seed's anomaly-count model with
    200 extra anomalies. The feature window is first run a quarter full (the beat holds the
    model below QUARANTINE until then: a few beats of samples are no grounds to stop a machine).
    b.m.arb.risk_anoms = 0 takes the threat away again."""
    if b.beat < 70:
        b.run(70 - b.beat)
    b.m.set_model(0.0, 0.0, 0.0, 0.0, 0.12)
    b.m.arb.risk_anoms = 200


def host_frame(b, msg_type, fields, seq=0):
    return P.encode(msg_type, fields, 0, b.enc.boot_id, seq)
