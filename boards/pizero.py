"""Board ``pizero``: Raspberry Pi Zero (W / 2 W) on CPython with Adafruit Blinka.

A Pi has no ADC: the sensor is read through an ADS1115 on I2C (SCL/SDA = GPIO3/GPIO2, address
0x48, continuous mode at 475 or 860 samples/s, channel A0), mapped to the 12-bit sample scale.
PWM out via pwmio on GPIO18 (hardware PWM0, 1 kHz), LED on GPIO17 (digitalio).  Transport: UDP
(default) or a serial port path.  Sampling: a thread (_thread) paced at f_s <= the ADS rate.
Limits: f_s <= 860 Hz, no hardware watchdog in this board file (SoftWatchdog measures the feed
gaps; systemd's WatchdogSec can supervise the process).
``board``/``busio``/``pwmio``/``digitalio`` modules and the I2C bus can be injected (tests use
Blinka's OS-agnostic simulated board, BLINKA_OS_AGNOSTIC=1, and a register-level ADS1115 fake)."""
NAME = "pizero"
PINS = {"i2c_scl": "SCL", "i2c_sda": "SDA", "pwm": "D18", "led": "D17", "ads_address": 0x48}
TRANSPORTS = ("udp", "serial", "none")
LIMITS = {"adc_bits": 12, "f_s_max": 860, "ads_rates": (475, 860), "pwm_bits": 16}


class Hardware:
    pass


class _AdsAdc:
    """ADS1115 seen as a machine.ADC (read_u16 of a 12-bit value << 4) for ThreadSampler."""

    def __init__(self, ads):
        self.ads = ads

    def read_u16(self):
        return self.ads.read_u12() << 4


def build(clock, f_s=860, safe_duty=0, ads_rate=860, i2c=None, board=None, pwmio=None,
          digitalio=None, pwm_pin=None, led_pin=None, **_):
    from device.hw.ads1115 import ADS1115
    from device.hw.rp2_sampler import ThreadSampler
    from device.hw.outputs import PwmOut, Led, SoftWatchdog
    if ads_rate not in LIMITS["ads_rates"]:
        raise ValueError("pizero ADS1115 rate must be 475 or 860 samples/s, got %r" % (ads_rate,))
    if not 1 <= f_s <= ads_rate:
        raise ValueError("pizero f_s must be 1..%d Hz (the ADS1115 rate), got %r" % (ads_rate, f_s))
    if board is None:
        import board
    if pwmio is None:
        import pwmio
    if digitalio is None:
        import digitalio
    if i2c is None:
        import busio
        i2c = busio.I2C(board.SCL, board.SDA)
    hw = Hardware()
    hw.name = NAME
    hw.board_id = b"pizero"
    hw.adc_bits = 12
    hw.f_s = f_s
    hw.clock = clock
    hw.ads = ADS1115(i2c, PINS["ads_address"], rate=ads_rate)
    hw.sampler = ThreadSampler(_AdsAdc(hw.ads), f_s, clock)
    pwm = pwmio.PWMOut(pwm_pin if pwm_pin is not None else getattr(board, PINS["pwm"]),
                       frequency=1000, duty_cycle=safe_duty)
    hw.pwm = PwmOut(pwm, safe_duty)
    led = digitalio.DigitalInOut(led_pin if led_pin is not None else getattr(board, PINS["led"]))
    led.direction = digitalio.Direction.OUTPUT
    hw.led = Led(led)
    hw.watchdog = SoftWatchdog(clock)
    hw.default_link = "udp://127.0.0.1:18789"
    hw.dual_core = False
    return hw
