"""Board ``pico``: Raspberry Pi Pico (RP2040) on MicroPython.

Pins: sensor on ADC0 = GP26 (12-bit), PWM out on GP15 (20 kHz), LED on GP25, UART0 on GP0 (TX) /
GP1 (RX) for ``--link uart:0``.  Transport: USB CDC serial (binary stdin/stdout,
``micropython.kbd_intr(-1)``) by default, or UART.
Limits (LIMITS, the one definition; HELLO sends f_s, spb_max and period_min_us, and the host and
the device check every CONFIG against them, device/config_rules.py): f_s up to 24 kHz (default
12 kHz, a vibration sensor's rate; the DMA sampler needs 48 MHz / f_s whole, below 733 Hz
48 MHz / (f_s x 2^k): 500 Hz runs the ADC at 1 kHz and keeps every other sample), at most
``spb_max`` = 255 samples per beat, so a beat period of at most (255 - 1) / f_s (21 ms at 12 kHz),
periods from 500 us; watchdog max 8388 ms; 264 KB RAM (~190 KB heap): deploy .mpy files.
TELEMETRY goes out 5 beat records per frame by default (``batch_default``; ``--batch`` or CONFIG
batch_beats changes it): signing a frame (HMAC-SHA256 in viper) takes ~1.5 ms of the chip, a
third of a 4.2 ms beat, so one tag covers five beats (host sees every beat's record, 21 ms later).
Sensor scale: 128 counts per g (a +-16 g accelerometer front end on the 12-bit ADC), sent in
HELLO; the shipped threat model reads the vibration level in g.
Sampling (``sampler=``): "dma" (default) the ADC free-running at f_s into a ring by DMA, no CPU
per sample (device/hw/rp2_dma_sampler.py); "timer" a hard-IRQ timer reading the ADC (37 us per
sample on the chip: 1 kHz-class rates only, device/hw/rp2_sampler.py); "soft" a soft-IRQ timer
(for comparison).
The watchdog is started here, by ``build()``, before anything that can wait (Wi-Fi on a Pico W).
QUARANTINE persists in the watchdog scratch registers and the file ``/latch`` (device/latch.py).
gc.mem_alloc()/gc.mem_free() walk the heap on the chip (~9 ms each): the beat never measures its
own allocation here (``alloc_every`` 0); the RP2040 lane measures it from outside.
Nothing touches hardware until ``build()`` is called; ``machine`` can be injected (tests)."""
NAME = "pico"
PINS = {"adc": 26, "pwm": 15, "led": 25, "uart0_tx": 0, "uart0_rx": 1}
TRANSPORTS = ("serial", "uart", "none")
LIMITS = {"adc_bits": 12, "f_s_default": 12000, "f_s_max": 24000, "spb_max": 255,
          "period_min_us": 500, "pwm_bits": 16, "wdt_max_ms": 8388, "batch_default": 5,
          # the ADC paces itself: 48 MHz / f_s whole, 96..65536 clocks (device/limits.py)
          "adc_clock_hz": 48000000, "adc_div": (96, 65536)}
COUNTS_PER_UNIT = 128.0            # counts per g: a +-16 g front end on the 12-bit ADC
PWM_FREQ = 20000
STATE_DIR = "/"


class Hardware:
    pass


def build(clock, f_s=12000, safe_duty=0, sampler="dma", wdt_ms=8388, machine=None, pins=None,
          led_pin=None, state_dir=None, **_):
    from device.hw.outputs import PwmOut, Led, Watchdog
    if machine is None:
        import machine
    if not 1 <= f_s <= LIMITS["f_s_max"]:
        raise ValueError("pico f_s must be 1..%d Hz, got %r" % (LIMITS["f_s_max"], f_s))
    if sampler not in ("dma", "timer", "soft"):
        raise ValueError("pico sampler must be 'dma' (the ADC into a DMA ring), 'timer' (hard "
                         "IRQ) or 'soft' (soft IRQ, for comparison), got %r" % (sampler,))
    pins = pins or PINS
    hw = Hardware()
    hw.name = NAME
    hw.board_id = b"pico"
    hw.adc_bits = 12
    hw.counts_per_unit = COUNTS_PER_UNIT
    hw.alloc_every = 0                # gc.mem_alloc() walks the heap: ~9 ms on the chip
    hw.f_s = f_s
    hw.limits = LIMITS
    hw.clock = clock
    hw.machine = machine
    # outputs first, at their safe value, then the watchdog: nothing below may hang unwatched
    hw.pwm = PwmOut(machine.PWM(machine.Pin(pins["pwm"])), safe_duty, freq=PWM_FREQ)
    hw.led = Led(machine.Pin(led_pin if led_pin is not None else pins["led"], machine.Pin.OUT))
    hw.watchdog = Watchdog(machine.WDT, wdt_ms, machine)
    hw.has_wdt = True
    if sampler == "dma":
        from device.hw.rp2_dma_sampler import DmaSampler
        # the ring holds >= 40 ms of samples (a beat may start that late: a 23 ms collection
        # and more); its buffer is taken twice as large for alignment, so no larger than that
        bits = 6
        while (1 << bits) < f_s // 25 and bits < 12:
            bits += 1
        hw.sampler = DmaSampler(pins["adc"], f_s, ring_bits=bits, clock_hz=LIMITS["adc_clock_hz"],
                                div=LIMITS["adc_div"])
    else:
        from device.hw.rp2_sampler import TimerSampler
        adc = machine.ADC(machine.Pin(pins["adc"]))
        hw.sampler = TimerSampler(adc, f_s, machine.Timer(-1), hard=sampler == "timer")
    hw.dual_core = False
    hw.default_link = "serial"
    hw.state_dir = STATE_DIR if state_dir is None else state_dir
    return hw
