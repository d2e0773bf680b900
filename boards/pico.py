"""Board ``pico``: Raspberry Pi Pico (RP2040) on MicroPython.

Pins: sensor on ADC0 = GP26 (12-bit, read_u16() >> 4), PWM out on GP15 (20 kHz), LED on GP25,
UART0 on GP0 (TX) / GP1 (RX) for ``--link uart:0``.  Transport: USB CDC serial (binary
stdin/stdout, ``micropython.kbd_intr(-1)``) by default, or UART.
Limits (LIMITS, the one definition; HELLO sends f_s, spb_max and period_min_us, and the host and
the device check every CONFIG against them, device/config_rules.py): f_s 1..10000 Hz (default
1000), at most ``spb_max`` = 32 samples per beat, so a beat period of at most
(32 - 1) / f_s (31 ms at 1 kHz; at 10 kHz 3.1 ms: the default 4.21 ms beat is refused there),
periods from 500 us; watchdog max 8388 ms; 264 KB RAM (~190 KB heap): deploy .mpy files.
Sampling: ``machine.Timer(hard=True)`` at f_s reads the ADC in the timer's hard interrupt on
core 0 (device/hw/rp2_sampler.py says why not a soft timer, the second core or DMA).
The watchdog is started here, by ``build()``, before anything that can wait (Wi-Fi on a Pico W).
QUARANTINE persists in the watchdog scratch registers and the file ``/latch`` (device/latch.py).
Nothing touches hardware until ``build()`` is called; ``machine`` can be injected (tests)."""
NAME = "pico"
PINS = {"adc": 26, "pwm": 15, "led": 25, "uart0_tx": 0, "uart0_rx": 1}
TRANSPORTS = ("serial", "uart", "none")
LIMITS = {"adc_bits": 12, "f_s_default": 1000, "f_s_max": 10000, "spb_max": 32,
          "period_min_us": 500, "pwm_bits": 16, "wdt_max_ms": 8388}
PWM_FREQ = 20000
STATE_DIR = "/"


class Hardware:
    pass


def build(clock, f_s=1000, safe_duty=0, sampler="timer", wdt_ms=8388, machine=None, pins=None,
          led_pin=None, state_dir=None, **_):
    from device.hw.rp2_sampler import TimerSampler
    from device.hw.outputs import PwmOut, Led, Watchdog
    if machine is None:
        import machine
    if not 1 <= f_s <= LIMITS["f_s_max"]:
        raise ValueError("pico f_s must be 1..%d Hz, got %r" % (LIMITS["f_s_max"], f_s))
    if sampler not in ("timer", "soft"):
        raise ValueError("pico sampler must be 'timer' (hard IRQ) or 'soft' (soft IRQ, for "
                         "comparison), got %r" % (sampler,))
    pins = pins or PINS
    hw = Hardware()
    hw.name = NAME
    hw.board_id = b"pico"
    hw.adc_bits = 12
    hw.f_s = f_s
    hw.limits = LIMITS
    hw.clock = clock
    hw.machine = machine
    # outputs first, at their safe value, then the watchdog: nothing below may hang unwatched
    hw.pwm = PwmOut(machine.PWM(machine.Pin(pins["pwm"])), safe_duty, freq=PWM_FREQ)
    hw.led = Led(machine.Pin(led_pin if led_pin is not None else pins["led"], machine.Pin.OUT))
    hw.watchdog = Watchdog(machine.WDT, wdt_ms, machine)
    hw.has_wdt = True
    adc = machine.ADC(machine.Pin(pins["adc"]))
    hw.sampler = TimerSampler(adc, f_s, machine.Timer(-1), hard=sampler == "timer")
    hw.dual_core = False
    hw.default_link = "serial"
    hw.state_dir = STATE_DIR if state_dir is None else state_dir
    return hw
