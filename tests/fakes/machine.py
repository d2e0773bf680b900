# Fake `machine` module for tests (CPython and the MicroPython unix port).
# Placed first on sys.path so it shadows the unix port's built-in `machine`.
# It models the rp2 port's API closely enough for the device hardware layer: argument checks
# follow the rp2 port (e.g. WDT timeout <= 8388 ms, PWM duty_u16 <= 65535, ADC channels 0..4)
# and every object records what was done to it so tests can assert on it.
FAKE = True

_freq = 125000000
_resets = []


class FakeReset(Exception):
    """Raised by machine.reset() so a test can observe a reset."""


def unique_id():
    return b"\xe6\x61\x41\x04\x03\x52\x2a\x2b"


def freq(hz=None):
    global _freq
    if hz is None:
        return _freq
    if not 48000000 <= hz <= 250000000:
        raise ValueError("freq out of range")
    _freq = hz


def reset():
    _resets.append(1)
    raise FakeReset("machine.reset()")


def soft_reset():
    reset()


_reset_cause = [1]


def reset_cause():
    return _reset_cause[0]   # PWRON_RESET unless a test sets WDT_RESET


PWRON_RESET = 1
WDT_RESET = 3


class _Mem32:
    """machine.mem32 for the registers the firmware touches (the watchdog scratch registers):
    a dict of address -> u32; unknown addresses read 0."""

    def __init__(self):
        self.regs = {}

    def __getitem__(self, addr):
        return self.regs.get(addr, 0)

    def __setitem__(self, addr, v):
        self.regs[addr] = v & 0xFFFFFFFF


mem32 = _Mem32()


def _power_cycle():
    """Test hook: what a power loss does to the always-on registers."""
    mem32.regs.clear()
    _reset_cause[0] = PWRON_RESET


def _pin_id(p):
    return p.id if isinstance(p, Pin) else p


class Pin:
    IN = 0
    OUT = 1
    OPEN_DRAIN = 2
    ALT = 3
    PULL_UP = 1
    PULL_DOWN = 2
    IRQ_FALLING = 4
    IRQ_RISING = 8

    _pins = {}

    def __init__(self, id, mode=-1, pull=-1, value=None):
        if isinstance(id, str):
            if id not in ("LED", "WL_GPIO0") and not id.startswith("GP"):
                raise ValueError("unknown named pin %r" % (id,))
        elif not 0 <= id <= 29:
            raise ValueError("invalid pin %r" % (id,))
        self.id = id
        self.mode = mode
        self.pull = pull
        self._v = 0 if value is None else (1 if value else 0)
        self.writes = 0
        Pin._pins[id] = self

    def init(self, mode=-1, pull=-1, value=None):
        self.mode = mode
        if value is not None:
            self._v = 1 if value else 0

    def value(self, v=None):
        if v is None:
            return self._v
        self._v = 1 if v else 0
        self.writes += 1

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)

    def toggle(self):
        self.value(1 - self._v)

    def __call__(self, v=None):
        return self.value(v)

    def irq(self, handler=None, trigger=0):
        self.handler = handler


class ADC:
    CORE_TEMP = 4

    def __init__(self, pin):
        pid = _pin_id(pin)
        if isinstance(pid, int) and pid in (26, 27, 28, 29):
            ch = pid - 26
        elif isinstance(pid, int) and 0 <= pid <= 4:
            ch = pid
        else:
            raise ValueError("Pin doesn't have ADC capabilities")
        self.channel = ch
        self.reads = 0
        self.source = None       # callable () -> 16-bit value, set by tests
        self.value = 32768

    def read_u16(self):
        self.reads += 1
        if self.source is not None:
            v = self.source()
        else:
            v = self.value
        return v & 0xFFF0   # the RP2040 ADC is 12-bit, left-justified in 16


class PWM:
    def __init__(self, pin, freq=None, duty_u16=None):
        self.pin = pin
        self._freq = 0
        self._duty = 0
        self.duty_writes = 0
        self.deinited = False
        if freq is not None:
            self.freq(freq)
        if duty_u16 is not None:
            self.duty_u16(duty_u16)

    def freq(self, f=None):
        if f is None:
            return self._freq
        if not 8 <= f <= 62500000:
            raise ValueError("freq out of range")
        self._freq = f

    def duty_u16(self, d=None):
        if d is None:
            return self._duty
        if not 0 <= d <= 65535:
            raise ValueError("duty_u16 must be 0..65535")
        self._duty = d
        self.duty_writes += 1

    def deinit(self):
        self.deinited = True


class WDT:
    MAX_TIMEOUT_MS = 8388

    created = []

    def __init__(self, id=0, timeout=5000):
        if not 1 <= timeout <= WDT.MAX_TIMEOUT_MS:
            raise ValueError("timeout must be <= 8388 ms on rp2")
        self.timeout = timeout
        self.feeds = 0
        WDT.created.append(timeout)

    def feed(self):
        self.feeds += 1


class Timer:
    ONE_SHOT = 0
    PERIODIC = 1

    def __init__(self, id=-1, mode=PERIODIC, freq=-1, period=-1, callback=None, hard=False):
        if id != -1:
            raise ValueError("Timer doesn't exist")   # rp2: only the soft-timer id -1
        self.callback = None
        self.freq_hz = 0
        self.running = False
        self.hard = False
        if callback is not None:
            self.init(mode=mode, freq=freq, period=period, callback=callback, hard=hard)

    def init(self, mode=PERIODIC, freq=-1, period=-1, callback=None, hard=False):
        if freq <= 0 and period <= 0:
            raise ValueError("Timer needs freq or period")
        self.mode = mode
        self.freq_hz = freq if freq > 0 else 1000 // period
        self.callback = callback
        self.hard = bool(hard)
        self.running = True

    def fire(self, n=1):
        """Test hook: run the callback n times (as n timer ticks)."""
        for _ in range(n):
            if self.running and self.callback is not None:
                self.callback(self)

    def deinit(self):
        self.running = False


class UART:
    def __init__(self, id, baudrate=115200, tx=None, rx=None, timeout=0, **kw):
        if id not in (0, 1):
            raise ValueError("UART(%r) doesn't exist" % (id,))
        self.id = id
        self.baudrate = baudrate
        self.tx_data = bytearray()
        self.rx_data = bytearray()

    def write(self, buf):
        self.tx_data.extend(buf)
        return len(buf)

    def any(self):
        return len(self.rx_data)

    def read(self, n=-1):
        if not self.rx_data:
            return None
        if n is None or n < 0:
            n = len(self.rx_data)
        out = bytes(self.rx_data[:n])
        self.rx_data = self.rx_data[n:]
        return out

    def readinto(self, buf, n=-1):
        if not self.rx_data:
            return None
        if n is None or n < 0:
            n = len(buf)
        n = min(n, len(self.rx_data))
        buf[0:n] = self.rx_data[:n]
        self.rx_data = self.rx_data[n:]
        return n

    def feed_rx(self, data):
        """Test hook: bytes arriving from the far end."""
        self.rx_data.extend(data)


class I2C:
    def __init__(self, id=0, scl=None, sda=None, freq=400000):
        self.id = id
        self.freq = freq
        self.devices = {}   # addr -> object with readfrom_mem/writeto_mem, or bytearray regs

    def scan(self):
        return sorted(self.devices)

    def _dev(self, addr):
        if addr not in self.devices:
            raise OSError(5)  # EIO, as on hardware when no device ACKs
        return self.devices[addr]

    def writeto(self, addr, buf, stop=True):
        d = self._dev(addr)
        if hasattr(d, "writeto"):
            return d.writeto(buf)
        return len(buf)

    def readfrom_into(self, addr, buf, stop=True):
        d = self._dev(addr)
        d.readfrom_into(buf)

    def writeto_mem(self, addr, reg, buf):
        d = self._dev(addr)
        d.writeto_mem(reg, buf)

    def readfrom_mem_into(self, addr, reg, buf):
        d = self._dev(addr)
        d.readfrom_mem_into(reg, buf)
