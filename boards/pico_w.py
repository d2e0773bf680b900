"""Board ``pico_w``: Raspberry Pi Pico W (RP2040 + CYW43439 Wi-Fi) on MicroPython.

As ``pico`` (ADC GP26, PWM GP15, UART0 GP0/GP1, the same LIMITS), but the LED is the CYW43's GPIO
("LED") and the default transport is UDP over Wi-Fi (``--link udp://HOST:PORT``,
``--wifi SSID:PASSWORD``).

Wi-Fi never stops the board: the watchdog is started (by ``pico.build``) before the join, the
join at boot waits at most ``wifi_timeout_ms`` (20 s) feeding the watchdog, and whether it
succeeded or not the beat then runs (sampling, local decisions, PWM, QUARANTINE); a ``WifiKeeper``
in the beat's idle time checks the link about once a second and starts a new join when the access
point is gone (at boot or later), with a backoff of 2 s doubling to 60 s.  Frames sent while the
link is down are counted (``send_errors``); witness records wait in their queue.  UDP frames
<= 254 bytes."""
from boards import pico

NAME = "pico_w"
PINS = dict(pico.PINS)
PINS["led"] = "LED"
TRANSPORTS = ("udp", "serial", "uart", "none")
LIMITS = pico.LIMITS
STATE_DIR = pico.STATE_DIR


def _split(wifi):
    if ":" not in wifi:
        raise ValueError("--wifi needs SSID:PASSWORD, got %r" % (wifi,))
    return wifi.split(":", 1)


def connect_wifi(wifi, network=None, clock=None, timeout_ms=20000, feed=None):
    """Join ``SSID:PASSWORD``; returns the WLAN.  Raises OSError after ``timeout_ms``.
    ``feed`` (the watchdog's) is called while waiting."""
    ssid, pw = _split(wifi)
    if network is None:
        import network
    from device.clock import Clock, tdiff
    clock = clock or Clock()
    wlan = network.WLAN(network.STA_IF)
    wlan.active(True)
    wlan.connect(ssid, pw)
    t0 = clock.ticks()
    while not wlan.isconnected():
        if feed is not None:
            feed()
        if tdiff(clock.ticks(), t0) > timeout_ms * 1000:
            raise OSError("Wi-Fi %r not joined within %d ms" % (ssid, timeout_ms))
        clock.sleep_us(50000)
    return wlan


class WifiKeeper:
    """Keeps the station joined, from the beat's idle time (``service(now_ms)``, cheap: one
    ``isconnected()`` a second).  A lost link starts a new ``connect()`` (non-blocking on the
    CYW43), retried after 2 s, doubling to 60 s while it fails."""

    def __init__(self, wlan, ssid, password):
        self.wlan = wlan
        self.ssid = ssid
        self.pw = password
        self.up = False
        self.joins = 0          # connect() calls after the first
        self.drops = 0          # times the link went down
        self._next = 0
        self._backoff = 2000
        self._check = 0

    def service(self, now_ms):
        from device.clock import tdiff
        if tdiff(now_ms, self._check) < 0:
            return
        self._check = (now_ms + 1000) & 0x3FFFFFFF
        try:
            ok = self.wlan.isconnected()
        except OSError:
            ok = False
        if ok:
            if not self.up:
                self.up = True
                self._backoff = 2000
            return
        if self.up:
            self.up = False
            self.drops += 1
            self._next = now_ms
        if tdiff(now_ms, self._next) >= 0:
            try:
                self.wlan.connect(self.ssid, self.pw)
            except OSError:
                pass
            self.joins += 1
            self._next = (now_ms + self._backoff) & 0x3FFFFFFF
            self._backoff = min(60000, self._backoff * 2)


def build(clock, f_s=12000, safe_duty=0, sampler="dma", wdt_ms=8388, machine=None,
          wifi="", network=None, wifi_timeout_ms=20000, **kw):
    hw = pico.build(clock, f_s=f_s, safe_duty=safe_duty, sampler=sampler, wdt_ms=wdt_ms,
                    machine=machine, pins=PINS, **kw)        # the watchdog runs from here on
    hw.name = NAME
    hw.board_id = b"pico_w"
    hw.default_link = "udp://192.168.4.1:18789"
    hw.wlan = None
    hw.wifi = None
    if wifi:
        ssid, pw = _split(wifi)
        try:
            hw.wlan = connect_wifi(wifi, network, clock, wifi_timeout_ms, hw.watchdog.feed)
        except OSError:
            # not joined yet: the beat runs anyway, the keeper retries in idle time
            if network is None:
                import network
            hw.wlan = network.WLAN(network.STA_IF)
        hw.wifi = WifiKeeper(hw.wlan, ssid, pw)
    return hw
