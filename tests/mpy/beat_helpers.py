# Helpers for the beat tests (both runtimes): a recording link, a beat on the emulator board
# with a virtual clock, host frames built with shared.protocol.encode.
import gc

from device.clock import VirtualClock
from device.cli import parse_args
from shared import protocol as P


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


_cache = {}


def _fresh_maths(m):
    """Bring a cached Maths bundle back to its boot state (the unix port's 192K heap fragments
    if every test allocates the Emissary window and arbiter tables anew)."""
    m.pulse.set_params(k=4.0, P=5.0)
    m.period_override_us = 0
    m.em.reset()
    m.em.set_threshold(0.95)
    m.act.set_setpoint(0.5)
    m.act.set_auto_mode(True)
    m.act.set_p_on_measurement(False)
    m.act.configure(2.0, 8.0, 0.0, m.pulse.period_s)
    m.act.set_starting_output(0.0)
    m.act.reset()
    m.act_manual_q16 = 0
    m.em.set_anomaly_z(3.0)
    a = m.arb
    a.set_model(0.12, 0.0)
    a.set_thresholds(0.85, 0.60)
    a.set_genome(0.25, 0.25, 0.15, 0.35)
    a.pid.configure(0.6, 0.1, 0.05, m.pulse.period_s)
    a.set_period(m.pulse.period_s)
    a.pid.reset()
    a.risk_anoms = 0
    a.t_threat = -1


def make_beat(args=(), start=0, cost_us=0, link=None, miner=None, boot_id=77, state_dir=None,
              sampler=None):
    from device import runner
    from device.beat import Beat, Settings
    from device.hostframes import HostFrames
    from shared.frame_encoder import Encoder
    import boards.emulator as E
    gc.collect()
    o = parse_args(["--clock", "virtual", "--boot-id", str(boot_id)] + list(args))
    clk = VirtualClock(start=start, cost_us=cost_us)
    link = link or FakeLink()
    if "maths" not in _cache:
        runner.prepare(o)          # compile every module before the tables are allocated
        gc.collect()
        b = runner.build(o, clock=clk, link=link)
        _cache["maths"] = b.m
        _cache["sensor"] = b.hw.sensor
        _cache["pow"] = b.m.miner
        b = None                   # the first beat's buffers go before the second is built
        gc.collect()
    m = _cache["maths"]
    _fresh_maths(m)
    m.miner = miner or _cache["pow"]
    hw = E.Hardware()
    hw.name = E.NAME
    hw.board_id = b"emulator"
    hw.adc_bits = 12
    hw.f_s = 1000
    hw.clock = clk
    hw.plant = E.Plant()
    sen = _cache["sensor"]
    sen.n = 0
    sen.plant = hw.plant
    sen.drift_q16 = 0
    hw.sensor = sen
    from device.hw.sampler import PullSampler
    from device.hw.outputs import NullLed, SoftWatchdog
    hw.sampler = sampler or PullSampler(sen, 1000)
    hw.limits = E.LIMITS
    hw.state_dir = state_dir
    hw.pwm = E.PlantPwm(hw.plant, 0)
    hw.led = NullLed()
    hw.watchdog = SoftWatchdog(clk)
    hw.default_link = "none"
    enc = Encoder(o.device_id, o.boot_id, None, cobs=False, batch_max=5)
    s = Settings()
    s.telemetry_every = o.telemetry_every
    s.batch_beats = o.batch
    s.pow_bits = o.pow_bits
    b = Beat(hw, link, enc, m, s)
    b.host = HostFrames(b, None)
    if state_dir is not None:
        from device.latch import Latch
        b.latch = Latch(state_dir)
        b.quarantined = b.latch.boot()
    return b, clk, link


def host_frame(b, msg_type, fields, seq=0):
    return P.encode(msg_type, fields, 0, b.enc.boot_id, seq)
