"""Board ``pico_w``: Raspberry Pi Pico W (RP2040 + CYW43439 Wi-Fi) on MicroPython.

As ``pico`` (ADC GP26, PWM GP15, UART0 GP0/GP1), but the LED is the CYW43's GPIO ("LED") and the
default transport is UDP over Wi-Fi (``--link udp://HOST:PORT``, ``--wifi SSID:PASSWORD``).
Joining Wi-Fi waits at most ``wifi_timeout_ms`` (20 s), feeding nothing else meanwhile (the
watchdog is started after the join).  Limits: as pico; UDP frames <= 254 bytes."""
from boards import pico

NAME = "pico_w"
PINS = dict(pico.PINS)
PINS["led"] = "LED"
TRANSPORTS = ("udp", "serial", "uart", "none")
LIMITS = dict(pico.LIMITS)


def connect_wifi(wifi, network=None, clock=None, timeout_ms=20000):
    """Join ``SSID:PASSWORD``; returns the WLAN.  Raises OSError after ``timeout_ms``."""
    if ":" not in wifi:
        raise ValueError("--wifi needs SSID:PASSWORD, got %r" % (wifi,))
    ssid, pw = wifi.split(":", 1)
    if network is None:
        import network
    from device.clock import Clock, tdiff
    clock = clock or Clock()
    wlan = network.WLAN(network.STA_IF)
    wlan.active(True)
    wlan.connect(ssid, pw)
    t0 = clock.ticks()
    while not wlan.isconnected():
        if tdiff(clock.ticks(), t0) > timeout_ms * 1000:
            raise OSError("Wi-Fi %r not joined within %d ms" % (ssid, timeout_ms))
        clock.sleep_us(50000)
    return wlan


def build(clock, f_s=1000, safe_duty=0, sampler="timer", wdt_ms=8388, machine=None,
          wifi="", network=None, **kw):
    wlan = connect_wifi(wifi, network, clock) if wifi else None
    hw = pico.build(clock, f_s=f_s, safe_duty=safe_duty, sampler=sampler, wdt_ms=wdt_ms,
                    machine=machine, pins=PINS)
    hw.name = NAME
    hw.board_id = b"pico_w"
    hw.default_link = "udp://192.168.4.1:18789"
    hw.wlan = wlan
    return hw
