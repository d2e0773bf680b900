"""Actuator and indicator outputs: PWM (machine.PWM or CircuitPython pwmio), LED, watchdog.

Each class is handed an already constructed peripheral object; nothing is touched at import."""
from device.clock import tdiff


class PwmOut:
    """Duty cycle in 0..65535 on a ``machine.PWM`` (``duty_u16``) or a ``pwmio.PWMOut``
    (``duty_cycle``), with the safe value used by QUARANTINE."""

    def __init__(self, pwm, safe_duty=0, freq=None):
        if not 0 <= safe_duty <= 65535:
            raise ValueError("safe duty must be 0..65535, got %r" % (safe_duty,))
        self.pwm = pwm
        self.safe_duty = safe_duty
        self.duty = -1
        self._u16 = hasattr(pwm, "duty_u16")
        if freq is not None and hasattr(pwm, "freq"):
            pwm.freq(freq)
        self.write(safe_duty)

    def write(self, duty):
        if duty < 0:
            duty = 0
        elif duty > 65535:
            duty = 65535
        if duty != self.duty:
            self.duty = duty
            if self._u16:
                self.pwm.duty_u16(duty)
            else:
                self.pwm.duty_cycle = duty

    def safe(self):
        self.write(self.safe_duty)


class NullPwm:
    def __init__(self, safe_duty=0):
        self.safe_duty = safe_duty
        self.duty = safe_duty

    def write(self, duty):
        self.duty = 0 if duty < 0 else (65535 if duty > 65535 else duty)

    def safe(self):
        self.duty = self.safe_duty


class Led:
    """An LED on a ``machine.Pin`` (``value()``) or a ``digitalio.DigitalInOut`` (``.value``)."""

    def __init__(self, pin):
        self.pin = pin
        self.state = -1
        self._call = hasattr(pin, "on") or callable(getattr(pin, "value", None))
        self.set(0)

    def set(self, on):
        v = 1 if on else 0
        if v != self.state:
            self.state = v
            if self._call:
                self.pin.value(v)
            else:
                self.pin.value = bool(v)


class NullLed:
    def __init__(self):
        self.state = 0

    def set(self, on):
        self.state = 1 if on else 0


WDT_MAX_MS = 8388   # rp2 hardware limit


class Watchdog:
    """``machine.WDT`` fed by the beat loop.  Once started it cannot be stopped (hardware).
    ``reset_now()``: re-arm it with a 1 ms timeout and stop feeding, so the board resets through
    the watchdog (device/faults.py); ``machine.reset()`` if that has not happened in 100 ms."""

    def __init__(self, wdt_class, timeout_ms=WDT_MAX_MS, machine=None):
        if not 1 <= timeout_ms <= WDT_MAX_MS:
            raise ValueError("watchdog timeout must be 1..%d ms (rp2 limit), got %r"
                             % (WDT_MAX_MS, timeout_ms))
        self.timeout_ms = timeout_ms
        self.wdt_class = wdt_class
        self.machine = machine
        self.wdt = wdt_class(timeout=timeout_ms)
        self.feeds = 0

    def feed(self):
        self.wdt.feed()
        self.feeds += 1
        if self.feeds >= 0x3FFFFFFF:
            self.feeds = 0

    def reset_now(self):
        try:
            self.wdt = self.wdt_class(timeout=1)
        except Exception:
            pass
        import time
        if hasattr(time, "ticks_ms"):
            t0 = time.ticks_ms()
            while time.ticks_diff(time.ticks_ms(), t0) < 100:
                pass
        if self.machine is not None:
            self.machine.reset()


class SoftWatchdog:
    """Emulator/CPython stand-in: counts feeds and records the longest gap between feeds
    (in ticks) so a test can see that the loop would have kept a hardware watchdog happy."""

    def __init__(self, clock, timeout_ms=WDT_MAX_MS):
        if not 1 <= timeout_ms <= WDT_MAX_MS:
            raise ValueError("watchdog timeout must be 1..%d ms, got %r" % (WDT_MAX_MS, timeout_ms))
        self.timeout_ms = timeout_ms
        self.clock = clock
        self.feeds = 0
        self.last = clock.ticks()
        self.max_gap_us = 0
        self.expired = 0

    def feed(self):
        now = self.clock.ticks()
        gap = tdiff(now, self.last)
        self.last = now
        if gap > self.max_gap_us:
            self.max_gap_us = gap
        if gap > self.timeout_ms * 1000:
            self.expired += 1
        self.feeds += 1
        if self.feeds >= 0x3FFFFFFF:
            self.feeds = 0
