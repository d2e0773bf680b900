"""Board ``pico``: Raspberry Pi Pico (RP2040) on MicroPython.

Pins: sensor on ADC0 = GP26 (12-bit, read_u16() >> 4), PWM out on GP15 (20 kHz), LED on GP25,
UART0 on GP0 (TX) / GP1 (RX) for ``--link uart:0``.  Transport: USB CDC serial (binary
stdin/stdout, ``micropython.kbd_intr(-1)``) by default, or UART.  Limits: f_s up to 10 kHz with
the Timer sampler (soft IRQ), watchdog max 8388 ms, 264 KB RAM (~190 KB heap): deploy .mpy files.
Sampling: a machine.Timer callback at f_s fills the ring (default), or ``sampler="thread"``: a
loop on the second core (_thread) paced by ticks_us/sleep_us, which keeps sampling even while the
beat is busy (the ring is single-producer/single-consumer; see device/hw/sampler.py).
Nothing touches hardware until ``build()`` is called; ``machine`` can be injected (tests)."""
NAME = "pico"
PINS = {"adc": 26, "pwm": 15, "led": 25, "uart0_tx": 0, "uart0_rx": 1}
TRANSPORTS = ("serial", "uart", "none")
LIMITS = {"adc_bits": 12, "f_s_max": 10000, "pwm_bits": 16, "wdt_max_ms": 8388}
PWM_FREQ = 20000


class Hardware:
    pass


def build(clock, f_s=1000, safe_duty=0, sampler="timer", wdt_ms=8388, machine=None, pins=None,
          led_pin=None, **_):
    from device.hw.rp2_sampler import TimerSampler, ThreadSampler
    from device.hw.outputs import PwmOut, Led, Watchdog
    if machine is None:
        import machine
    if not 1 <= f_s <= LIMITS["f_s_max"]:
        raise ValueError("pico f_s must be 1..%d Hz, got %r" % (LIMITS["f_s_max"], f_s))
    if sampler not in ("timer", "thread"):
        raise ValueError("pico sampler must be 'timer' or 'thread', got %r" % (sampler,))
    pins = pins or PINS
    hw = Hardware()
    hw.name = NAME
    hw.board_id = b"pico"
    hw.adc_bits = 12
    hw.f_s = f_s
    hw.clock = clock
    adc = machine.ADC(machine.Pin(pins["adc"]))
    if sampler == "thread":
        hw.sampler = ThreadSampler(adc, f_s, clock)
        hw.dual_core = True
    else:
        hw.sampler = TimerSampler(adc, f_s, machine.Timer(-1))
        hw.dual_core = False
    hw.pwm = PwmOut(machine.PWM(machine.Pin(pins["pwm"])), safe_duty, freq=PWM_FREQ)
    hw.led = Led(machine.Pin(led_pin if led_pin is not None else pins["led"], machine.Pin.OUT))
    hw.watchdog = Watchdog(machine.WDT, wdt_ms)
    hw.has_wdt = True
    hw.default_link = "serial"
    hw.machine = machine
    return hw
