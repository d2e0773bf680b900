"""Board ``pizero``: Raspberry Pi Zero (W / 2 W) on CPython with Adafruit Blinka.

A Pi has no ADC: the sensor is read through an ADS1115 on I2C (SCL/SDA = GPIO3/GPIO2, address
0x48, continuous mode, channel A0), mapped to the 12-bit sample scale, **one read per
conversion**, on its ALERT/RDY pin (GPIO27) in conversion-ready mode (device/hw/ads1115.py,
device/hw/thread_sampler.py ReadySampler, device/hw/gpio_edge.py: libgpiod edge events).  So f_s
is the ADS1115's data rate: 8, 16, 32, 64, 128, 250, 475 or 860 samples/s (its oscillator is
good to +-10 %).  ``ready_pin=None`` (no wire to ALERT/RDY) falls back to a thread polling the
conversion register at f_s (duplicates or skips a conversion now and then).
PWM out via pwmio on GPIO18 (hardware PWM0, 1 kHz), LED on GPIO17 (digitalio).  Transport: UDP
(default) or a serial port path.
Limits (LIMITS, the one definition; HELLO carries f_s, spb_max, period_min_us): f_s one of the
ADS rates (default 860), at most 32 samples per beat (so a beat of at most 36 ms at 860/s),
periods from 1000 us (CPython is slow).  No hardware watchdog in this board file: under systemd
(``becomingone flash --board pizero`` builds the unit) the beat pings systemd's watchdog
(device/hw/sdnotify.py), otherwise a SoftWatchdog measures the feed gaps.  QUARANTINE persists
in the file ``latch`` of the state directory ($STATE_DIRECTORY under systemd, else the working
directory; device/latch.py).
``board``/``busio``/``pwmio``/``digitalio`` modules, the I2C bus and the ready pin can be
injected (tests use Blinka's OS-agnostic simulated board, BLINKA_OS_AGNOSTIC=1, a register-level
ADS1115 fake and a fake ready pin)."""
NAME = "pizero"
PINS = {"i2c_scl": "SCL", "i2c_sda": "SDA", "pwm": "D18", "led": "D17", "ads_address": 0x48,
        "ads_ready": 27}
TRANSPORTS = ("udp", "serial", "none")
ADS_RATES = (8, 16, 32, 64, 128, 250, 475, 860)
LIMITS = {"adc_bits": 12, "f_s_default": 860, "f_s_max": 860, "f_s_rates": ADS_RATES,
          "spb_max": 32, "period_min_us": 1000, "pwm_bits": 16}


class Hardware:
    pass


class _AdsAdc:
    """ADS1115 seen as a machine.ADC (read_u16 of a 12-bit value << 4) for ThreadSampler."""

    def __init__(self, ads):
        self.ads = ads

    def read_u16(self):
        return self.ads.read_u12() << 4


def state_dir_default():
    import os
    return os.environ.get("STATE_DIRECTORY", "").split(":")[0] or "."


def build(clock, f_s=860, safe_duty=0, i2c=None, board=None, pwmio=None, digitalio=None,
          pwm_pin=None, led_pin=None, ready_pin="gpio", state_dir=None, **_):
    from device.hw.ads1115 import ADS1115
    from device.hw.thread_sampler import ReadySampler, ThreadSampler
    from device.hw.outputs import PwmOut, Led, SoftWatchdog
    if f_s not in ADS_RATES:
        raise ValueError("pizero f_s must be one of the ADS1115 data rates %s samples/s, got %r"
                         % (", ".join(str(r) for r in ADS_RATES), f_s))
    if board is None:
        import board
    if pwmio is None:
        import pwmio
    if digitalio is None:
        import digitalio
    hw = Hardware()
    hw.name = NAME
    hw.board_id = b"pizero"
    hw.adc_bits = 12
    hw.f_s = f_s
    hw.limits = LIMITS
    hw.clock = clock
    pwm = pwmio.PWMOut(pwm_pin if pwm_pin is not None else getattr(board, PINS["pwm"]),
                       frequency=1000, duty_cycle=safe_duty)
    hw.pwm = PwmOut(pwm, safe_duty)
    led = digitalio.DigitalInOut(led_pin if led_pin is not None else getattr(board, PINS["led"]))
    led.direction = digitalio.Direction.OUTPUT
    hw.led = Led(led)
    if i2c is None:
        import busio
        i2c = busio.I2C(board.SCL, board.SDA)
    hw.sampler_kind = "ready-pin"
    if ready_pin == "gpio":
        from device.hw.gpio_edge import GpioEdge
        try:
            ready_pin = GpioEdge(PINS["ads_ready"])
        except OSError as e:     # no libgpiod: run polled rather than not at all, and say so
            import sys
            sys.stderr.write("becomingone: ADS1115 ready pin unavailable (%s): polling the "
                             "conversion register at f_s instead\n" % (e,))
            ready_pin = None
    if ready_pin is None:
        hw.sampler_kind = "polled"
    hw.ads = ADS1115(i2c, PINS["ads_address"], rate=f_s, ready=ready_pin is not None)
    if ready_pin is not None:
        hw.sampler = ReadySampler(hw.ads, ready_pin, f_s)
    else:
        hw.sampler = ThreadSampler(_AdsAdc(hw.ads), f_s, clock)
    hw.watchdog = SoftWatchdog(clock)
    hw.default_link = "udp://127.0.0.1:18789"
    hw.dual_core = False
    hw.state_dir = state_dir_default() if state_dir is None else state_dir
    return hw
