# pico and pico_w board definitions with the fake machine module (both runtimes).
import sys
import gc
import machine
from device.clock import VirtualClock

_MODS = ("boards.pico", "boards.pico_w", "device.hw.rp2_sampler", "device.hw.outputs",
         "device.hw.sampler", "device.hw.ads1115")


def _forget():
    """The MicroPython lane runs every test file in one 192K heap: drop what this file imported."""
    if sys.implementation.name != "micropython":
        return
    for m in _MODS:
        if m in sys.modules:
            del sys.modules[m]
    gc.collect()


def test_fake_machine_in_use():
    assert machine.FAKE


def _test_pico_build_and_drive_timer_sampler():
    from boards import pico
    clk = VirtualClock()
    hw = pico.build(clk, f_s=1000, safe_duty=123, machine=machine)
    assert hw.name == "pico" and hw.adc_bits == 12 and hw.has_wdt
    adc = hw.sampler.adc
    assert adc.channel == 0                      # GP26 = ADC0
    vals = [100, 4000, 2048]
    it = [0]

    def src():
        v = vals[it[0] % 3] << 4
        it[0] += 1
        return v
    adc.source = src
    hw.sampler.start(0)
    t = hw.sampler.timer
    assert t.freq_hz == 1000 and t.running
    t.fire(5)
    from array import array
    dst = array("H", [0] * 8)
    n = hw.sampler.drain(dst)
    assert n == 5 and list(dst[:5]) == [100, 4000, 2048, 100, 4000]
    assert hw.pwm.pwm.freq() == pico.PWM_FREQ and hw.pwm.pwm.duty_u16() == 123
    hw.pwm.write(40000)
    assert hw.pwm.pwm.duty_u16() == 40000
    hw.pwm.safe()
    assert hw.pwm.pwm.duty_u16() == 123
    hw.led.set(1)
    assert hw.led.pin.value() == 1
    hw.watchdog.feed()
    assert hw.watchdog.wdt.feeds == 1 and hw.watchdog.wdt.timeout == 8388


def _test_pico_limits_rejected():
    from boards import pico
    for kw in ({"f_s": 20000}, {"sampler": "dma"}, {"wdt_ms": 9000}):
        try:
            pico.build(VirtualClock(), machine=machine, **kw)
        except ValueError as e:
            assert str(e)
        else:
            assert False, kw


def _test_ring_overrun_drops_oldest():
    from device.hw.sampler import Ring
    from array import array
    r = Ring(4)
    for v in range(6):
        r.put(v)
    dst = array("H", [0] * 8)
    n = r.drain(dst)
    assert list(dst[:n]) == [3, 4, 5] and r.overruns == 3


class _FakeWlan:
    def __init__(self, mode):
        self.n = 0

    def active(self, on):
        self.on = on

    def connect(self, ssid, pw):
        self.ssid = ssid

    def isconnected(self):
        self.n += 1
        return self.n > 3


class _FakeNetwork:
    STA_IF = 0
    WLAN = _FakeWlan


def _test_pico_w_joins_wifi_with_deadline_and_uses_cyw43_led():
    from boards import pico_w
    clk = VirtualClock()
    hw = pico_w.build(clk, machine=machine, wifi="lab:secret", network=_FakeNetwork())
    assert hw.name == "pico_w" and hw.wlan.ssid == "lab"
    assert hw.led.pin.id == "LED"
    assert hw.default_link.startswith("udp://")

    class Never(_FakeWlan):
        def isconnected(self):
            return False

    class Net(_FakeNetwork):
        WLAN = Never
    try:
        pico_w.connect_wifi("x:y", Net(), VirtualClock(), timeout_ms=200)
    except OSError as e:
        assert "200 ms" in str(e)
    else:
        assert False
    try:
        pico_w.connect_wifi("nopassword", Net(), VirtualClock())
    except ValueError:
        pass
    else:
        assert False


def test_pico_build_and_drive_timer_sampler():
    try:
        _test_pico_build_and_drive_timer_sampler()
    finally:
        _forget()


def test_pico_limits_rejected():
    try:
        _test_pico_limits_rejected()
    finally:
        _forget()


def test_ring_overrun_drops_oldest():
    try:
        _test_ring_overrun_drops_oldest()
    finally:
        _forget()


def test_pico_w_joins_wifi_with_deadline_and_uses_cyw43_led():
    try:
        _test_pico_w_joins_wifi_with_deadline_and_uses_cyw43_led()
    finally:
        _forget()
