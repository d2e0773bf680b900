"""pizero board on CPython with Adafruit Blinka's OS-agnostic simulated board
(BLINKA_OS_AGNOSTIC=1): pwmio/digitalio from Blinka, the ADS1115 behind a register-level fake
busio-style I2C bus (the simulated board's I2C cannot read registers)."""
import os
import time

import pytest

os.environ.setdefault("BLINKA_OS_AGNOSTIC", "1")
board = pytest.importorskip("board")
pwmio = pytest.importorskip("pwmio")
digitalio = pytest.importorskip("digitalio")

from device.clock import Clock  # noqa: E402
from device.hw.ads1115 import ADS1115  # noqa: E402


class FakeAds1115Bus:
    """busio.I2C-like: try_lock/unlock/writeto/writeto_then_readfrom; a 16-bit signed
    conversion register that a test sets, the config and threshold registers recorded."""

    def __init__(self, value=0):
        self.value = value
        self.config = None
        self.lo = self.hi = None
        self.locked = False
        self.reads = 0

    def try_lock(self):
        if self.locked:
            return False
        self.locked = True
        return True

    def unlock(self):
        self.locked = False

    def writeto(self, addr, buf):
        assert addr == 0x48
        v = (buf[1] << 8) | buf[2] if len(buf) == 3 else None
        if buf[0] == 1:
            self.config = v
        elif buf[0] == 2:
            self.lo = v
        elif buf[0] == 3:
            self.hi = v

    def writeto_then_readfrom(self, addr, out, into):
        assert addr == 0x48 and out[0] == 0
        v = self.value & 0xFFFF
        into[0] = v >> 8
        into[1] = v & 0xFF
        self.reads += 1


def test_ads1115_config_and_scaling():
    bus = FakeAds1115Bus()
    ads = ADS1115(bus, rate=860)
    # continuous mode (bit 8 = 0), AIN0 single-ended (MUX 100), DR 860 (111), comparator off
    assert bus.config == (4 << 12) | (1 << 9) | (7 << 5) | 3
    bus.value = 0
    assert ads.read_u12() == 2048
    bus.value = 32767
    assert ads.read_u12() == 4095
    bus.value = -32768
    assert ads.read_u12() == 0
    with pytest.raises(ValueError, match="475|860"):
        ADS1115(bus, rate=1000)


def test_ads1115_bounded_lock_wait():
    bus = FakeAds1115Bus()
    ads = ADS1115(bus)
    bus.locked = True
    with pytest.raises(OSError, match="busy"):
        ads.read()


class FakeReadyPin:
    """The ADS1115 ALERT/RDY pin in conversion-ready mode: a pulse every 1/rate s (a thread
    stands in for the ADC's oscillator); wait() returns the pulses since the last call, as the
    kernel's queued GPIO edge events do (device/hw/gpio_edge.py)."""

    def __init__(self, rate, bus=None):
        import threading
        self.rate = rate
        self.bus = bus
        self.pending = 0
        self.total = 0
        self.cv = threading.Condition()
        self.running = True
        self.t = threading.Thread(target=self._adc, daemon=True)
        self.t.start()

    def _adc(self):
        t0 = time.monotonic()
        n = 0
        while self.running:
            n += 1
            d = t0 + n / self.rate - time.monotonic()
            if d > 0:
                time.sleep(d)
            with self.cv:
                if self.bus is not None:
                    self.bus.value = n << 4     # each conversion a new value (u12: n)
                self.pending += 1
                self.total += 1
                self.cv.notify()

    def wait(self, timeout_s):
        with self.cv:
            if not self.pending:
                self.cv.wait(timeout_s)
            n = self.pending
            self.pending = 0
            return n

    def stop(self):
        self.running = False


def test_ads1115_ready_pin_mode_registers():
    bus = FakeAds1115Bus()
    ADS1115(bus, rate=860, ready=True)
    # comparator enabled (COMP_QUE 00), Lo_thresh MSB 0, Hi_thresh MSB 1: ALERT/RDY pulses at
    # the end of every conversion (datasheet 9.3.8)
    assert bus.config == (4 << 12) | (1 << 9) | (7 << 5) | 0
    assert bus.lo == 0x0000 and bus.hi == 0x8000


def _board(f_s, bus, ready, **kw):
    from boards import pizero
    return pizero.build(Clock(), f_s=f_s, i2c=bus, board=board, pwmio=pwmio,
                        digitalio=digitalio, pwm_pin=board.Ax_OUTPUT, led_pin=board.Dx_OUTPUT,
                        ready_pin=ready, **kw)


def test_pizero_board_reads_every_conversion_on_the_ready_pin(tmp_path):
    from array import array
    from boards import pizero
    bus = FakeAds1115Bus(value=16000)
    pin = FakeReadyPin(475, bus)
    try:
        hw = _board(475, bus, pin, state_dir=str(tmp_path))
        assert hw.name == "pizero" and hw.f_s == 475 and hw.sampler_kind == "ready-pin"
        assert hw.limits is pizero.LIMITS and hw.state_dir == str(tmp_path)
        assert bus.hi == 0x8000                       # ALERT/RDY in conversion-ready mode
        hw.pwm.write(30000)
        assert hw.pwm.pwm.duty_cycle == 30000
        hw.pwm.safe()
        assert hw.pwm.pwm.duty_cycle == 0
        hw.led.set(1)
        assert hw.led.pin.value is True
        dst = array("H", [0] * 256)
        hw.sampler.start(0)
        got = []
        for _ in range(10):
            time.sleep(0.02)
            got.extend(dst[:hw.sampler.drain(dst)])
        hw.sampler.stop()
        time.sleep(0.02)
        got.extend(dst[:hw.sampler.drain(dst)])
        # one read per conversion: every value once, in order, none twice
        vals = [v - 2048 for v in got]
        assert len(got) >= 40, len(got)
        assert all(b > a for a, b in zip(vals, vals[1:])), vals[:20]
        assert hw.sampler.reads + hw.sampler.lost() <= pin.total
    finally:
        pin.stop()


def test_pizero_ready_pin_silence_is_counted_not_a_hang():
    from array import array

    class DeadPin:
        def wait(self, timeout_s):
            time.sleep(timeout_s)
            return 0
    bus = FakeAds1115Bus(value=100)
    hw = _board(860, bus, DeadPin())
    hw.sampler.start(0)
    time.sleep(0.1)
    hw.sampler.stop()
    time.sleep(0.02)
    assert hw.sampler.drain(array("H", [0] * 8)) == 0
    assert hw.sampler.lost() >= 10                     # each missing pulse counted


def test_pizero_defaults_start_and_flash_bundle_config_is_valid(tmp_path):
    """The landed Pi Zero could not start at its defaults (f_s 1000 > 860): the board's default
    rate now comes from its LIMITS, and the flash plan's boardcfg.json passes the same checks."""
    from device.cli import parse_args, check_board
    o = check_board(parse_args(["--board", "pizero"]))
    assert o.fs == 860
    bus = FakeAds1115Bus(value=0)
    pin = FakeReadyPin(860)
    try:
        hw = _board(o.fs, bus, pin)
        assert hw.f_s == 860
    finally:
        pin.stop()
    with pytest.raises(ValueError, match="ADS1115 data rates"):
        _board(900, bus, None)
    from becomingone.deploy.plan import check_device_flags
    cfg = {"board": "pizero", "device_id": 7, "link": "udp://10.0.0.2:18790",
           "key_file": "device.key"}
    assert check_device_flags(cfg) == 860


def test_pizero_without_ready_pin_polls_and_says_so():
    from array import array
    bus = FakeAds1115Bus(value=16000)
    hw = _board(475, bus, None)
    assert hw.sampler_kind == "polled" and bus.config & 3 == 3     # comparator off
    dst = array("H", [0] * 256)
    hw.sampler.start(0)
    try:
        time.sleep(0.1)
    finally:
        hw.sampler.stop()
    time.sleep(0.01)
    n = hw.sampler.drain(dst)
    assert 20 <= n <= 80, n                     # ~47 samples in 0.1 s at 475 Hz
    assert all(v == (16000 >> 4) + 2048 for v in dst[:n])


def test_gpio_edge_on_libgpiod_v2_api():
    """device/hw/gpio_edge.py against a stand-in for libgpiod's v2 Python API."""
    import types
    from device.hw.gpio_edge import GpioEdge
    calls = {}

    class Req:
        def __init__(self):
            self.queue = 0

        def wait_edge_events(self, timeout):
            calls["timeout"] = timeout.total_seconds()
            return self.queue > 0

        def read_edge_events(self):
            n, self.queue = self.queue, 0
            return [object()] * n

        def release(self):
            calls["released"] = True

    req = Req()
    gpiod = types.SimpleNamespace(
        request_lines=lambda chip, consumer, config: calls.update(chip=chip, config=config) or req,
        LineSettings=lambda edge_detection: ("settings", edge_detection),
        line=types.SimpleNamespace(Edge=types.SimpleNamespace(FALLING="F", RISING="R")))
    e = GpioEdge(27, gpiod=gpiod)
    assert calls["chip"] == "/dev/gpiochip0" and calls["config"] == {27: ("settings", "F")}
    assert e.wait(0.005) == 0 and abs(calls["timeout"] - 0.005) < 1e-9
    req.queue = 3
    assert e.wait(0.005) == 3
    e.close()
    assert calls["released"]
