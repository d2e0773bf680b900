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
    conversion register that a test sets, the config register recorded."""

    def __init__(self, value=0):
        self.value = value
        self.config = None
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
        if buf[0] == 1:
            self.config = (buf[1] << 8) | buf[2]

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


def test_pizero_board_samples_drives_pwm_and_led():
    from boards import pizero
    bus = FakeAds1115Bus(value=16000)
    hw = pizero.build(Clock(), f_s=475, ads_rate=475, i2c=bus, board=board, pwmio=pwmio,
                      digitalio=digitalio, pwm_pin=board.Ax_OUTPUT, led_pin=board.Dx_OUTPUT)
    assert hw.name == "pizero" and hw.f_s == 475
    hw.pwm.write(30000)
    assert hw.pwm.pwm.duty_cycle == 30000
    hw.pwm.safe()
    assert hw.pwm.pwm.duty_cycle == 0
    hw.led.set(1)
    assert hw.led.pin.value is True
    from array import array
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
    with pytest.raises(ValueError, match="f_s"):
        pizero.build(Clock(), f_s=900, i2c=bus, board=board, pwmio=pwmio, digitalio=digitalio,
                     pwm_pin=board.Ax_OUTPUT, led_pin=board.Dx_OUTPUT)
