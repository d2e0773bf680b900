"""Device time and deadline arithmetic on a wrapping microsecond tick counter.

The tick source wraps at 2^30 on the Pico (``time.ticks_us`` is a small int there); every value
here is masked to 30 bits on every runtime, so the 64-bit unix port and CPython behave exactly as
the Pico does.  Device time is ``era * 2^30 + off`` microseconds since boot, kept as two small
ints (``era``, ``off < 2^30``) and never formed as a bigint.  ``now()`` must be called at least
once per 2^30 us (17.9 minutes); the beat calls it every beat.

No intermediate ever reaches 2^30 (the first non-small int on a 32-bit port): sums that could are
written as ``rem = MASK - a; if b > rem: ...``.

Clocks (all expose ``ticks() -> int < 2^30`` and ``sleep_us(us)``):
- ``Clock()``: the runtime's tick counter (``time.ticks_us``/``sleep_us`` on MicroPython,
  ``time.monotonic_ns`` on CPython), masked to 30 bits.
- ``VirtualClock(start, cost_us)``: a simulated counter for tests and fast emulation; it starts
  anywhere (e.g. just below the 2^30 wrap), ``sleep_us`` advances it, and every ``ticks()`` call
  can charge ``cost_us`` of simulated work.
"""
import sys
import time
from array import array

from shared.compat import micropython, const  # noqa: F401
try:
    from shared.compat import ptr32    # CPython stand-in; viper has it built in
except ImportError:
    pass

MASK = const(0x3FFFFFFF)   # 2^30 - 1: the tick counter wraps at 2^30
HALF = const(0x20000000)   # 2^29: differences beyond +-HALF are taken as the other sign

_HAS_TICKS = hasattr(time, "ticks_us")


def tdiff(a, b):
    """Signed a - b on the 2^30 tick circle, in [-2^29, 2^29)."""
    d = (a - b) & MASK
    if d >= HALF:
        d = d - MASK - 1
    return d


def tadd(a, n):
    """(a + n) mod 2^30 for 0 <= a < 2^30 and 0 <= n < 2^30, without forming 2^30."""
    rem = MASK - a
    if n > rem:
        return n - rem - 1
    return a + n


# Under an operating system (CPython, the unix port, a Pi Zero) a process that sleeps before a
# deadline is woken sooner than one that used its time slice: optional work (mining) stops this
# much before the idle margin. On bare metal (a Pico) sleep_us is exact: nothing to leave.
_OS = sys.platform in ("linux", "darwin", "win32", "cygwin", "freebsd")


class Clock:
    """The runtime's microsecond tick counter, masked to 30 bits."""
    spin_ok = True
    sched_margin_us = 800 if _OS else 0

    def __init__(self):
        if _HAS_TICKS:
            self._t = time.ticks_us
            self._s = time.sleep_us
        else:
            self._t = None
            self._s = None

    def ticks(self):
        if self._t is not None:
            return self._t() & MASK
        return (time.monotonic_ns() // 1000) & MASK

    def sleep_us(self, us):
        if us <= 0:
            return
        if self._s is not None:
            self._s(us)
        else:
            time.sleep(us / 1e6)


class VirtualClock:
    """Simulated tick counter: ``sleep_us`` advances it; each ``ticks()`` call charges
    ``cost_us`` (simulated work) after reading.  ``advance(us)`` charges work explicitly.
    ``spin_ok`` is False: waiting loops must sleep, since spinning would never see time pass."""
    spin_ok = False
    sched_margin_us = 800        # as Clock under an OS: simulated runs mine as the unix port does

    def __init__(self, start=0, cost_us=0):
        if not 0 <= start <= MASK:
            raise ValueError("VirtualClock start must be in 0..2^30-1, got %r" % (start,))
        self.t = start
        self.cost_us = cost_us
        self.slept_us = 0

    def ticks(self):
        t = self.t
        if self.cost_us:
            self.t = tadd(self.t, self.cost_us)
        return t

    def advance(self, us):
        if us > 0:
            self.t = tadd(self.t, us)

    def sleep_us(self, us):
        if us > 0:
            self.t = tadd(self.t, us)
            self.slept_us += us


# DeviceTime words
_LAST = const(0)
_ERA = const(1)
_OFF = const(2)
# Deadline words
_AT = const(0)
_FRAC = const(1)
_PER = const(2)
_PFRAC = const(3)
# beat-timer words (Beat.tst): milliseconds since boot, last step, interval, lateness
_NOWMS = const(0)
_MSREM = const(1)
_LSTEP = const(2)      # ticks of the last step + 1 (0: none yet)
_IV = const(3)
_LATE = const(4)
_SKIP = const(5)
NOW_MS = const(_NOWMS)
INTERVAL = const(_IV)
SKIPPED = const(_SKIP)


@micropython.viper
def _t_update(st, t: int) -> int:
    # DeviceTime.update on its words: returns the elapsed ticks
    s = ptr32(st)
    d = (t - int(s[_LAST])) & MASK
    s[_LAST] = t
    off = int(s[_OFF])
    rem = MASK - off
    if d > rem:
        s[_OFF] = d - rem - 1
        s[_ERA] = int(s[_ERA]) + 1
    else:
        s[_OFF] = off + d
    return d


@micropython.viper
def _dl_advance(ds) -> int:
    d = ptr32(ds)
    f = int(d[_FRAC]) + int(d[_PFRAC])
    step = int(d[_PER])
    if f >= 0x10000:
        f -= 0x10000
        step += 1
    d[_FRAC] = f
    a = int(d[_AT])
    rem = MASK - a
    if step > rem:
        d[_AT] = step - rem - 1
    else:
        d[_AT] = a + step
    return 0


@micropython.viper
def _tdiff(a: int, b: int) -> int:
    d = (a - b) & MASK
    if d >= HALF:
        d = d - MASK - 1
    return d


@micropython.viper
def beat_tick(tst, ds, bs, t: int) -> int:
    """Step 1 of the beat in one call: device time, milliseconds since boot, lateness against
    the deadline (a stall longer than a period skips the missed beats, counted), the next
    deadline, the interval since the previous step. Returns the lateness (us). The common path
    inlines _t_update, _tdiff and _dl_advance (a viper call costs ~6-10 us on the Pico)."""
    s = ptr32(tst)
    d = (t - int(s[_LAST])) & MASK
    s[_LAST] = t
    off = int(s[_OFF])
    rem = MASK - off
    if d > rem:
        s[_OFF] = d - rem - 1
        s[_ERA] = int(s[_ERA]) + 1
    else:
        s[_OFF] = off + d
    b = ptr32(bs)
    q = d // 1000
    r = int(b[_MSREM]) + d - q * 1000
    if r >= 1000:
        r -= 1000
        q += 1
    b[_MSREM] = r
    b[_NOWMS] = (int(b[_NOWMS]) + q) & MASK
    dl = ptr32(ds)
    per = int(dl[_PER])
    late = (t - int(dl[_AT])) & MASK
    if late >= HALF:
        late = late - MASK - 1
    if late >= per:
        sk = 0
        while int(_tdiff(t, int(dl[_AT]))) >= per:
            _dl_advance(ds)
            sk += 1
        sk += int(b[_SKIP])
        b[_SKIP] = sk if sk < 0x3FFFFFFF else 0x3FFFFFFF    # saturates: a small int
        late = int(_tdiff(t, int(dl[_AT])))
    # the next deadline (_dl_advance)
    f = int(dl[_FRAC]) + int(dl[_PFRAC])
    step = per
    if f >= 0x10000:
        f -= 0x10000
        step += 1
    dl[_FRAC] = f
    a = int(dl[_AT])
    rem = MASK - a
    if step > rem:
        dl[_AT] = step - rem - 1
    else:
        dl[_AT] = a + step
    ls = int(b[_LSTEP])
    if ls == 0:
        b[_IV] = per
    else:
        iv = (t - (ls - 1)) & MASK
        if iv >= HALF:
            iv = iv - MASK - 1
        b[_IV] = iv
    b[_LSTEP] = t + 1
    b[_LATE] = late
    return late


class DeviceTime:
    """Device time since boot as (era, off) from a 30-bit tick clock; never wraps.

    ``update()`` reads the clock, advances (era, off) by the elapsed ticks and returns the raw
    30-bit tick value read."""

    def __init__(self, clock):
        self.clock = clock
        self.st = array("i", bytes(12))
        self.st[_LAST] = clock.ticks()

    @property
    def era(self):
        return self.st[_ERA]

    @era.setter
    def era(self, v):
        self.st[_ERA] = v

    @property
    def off(self):
        return self.st[_OFF]

    @off.setter
    def off(self, v):
        self.st[_OFF] = v

    def update(self):
        t = self.clock.ticks()
        _t_update(self.st, t)
        return t

    def us_since(self, era, off):
        """Microseconds from (era, off) to now-as-last-updated, capped at 2^30 - 1."""
        de = self.era - era
        if de == 0:
            return self.off - off
        if de == 1:
            a = MASK - off
            if self.off >= MASK - a:
                return MASK
            return a + 1 + self.off
        return MASK

    def ms(self):
        """Milliseconds since boot as a host-side (possibly big) int; not for the beat path."""
        return (self.era * (MASK + 1) + self.off) // 1000


class Deadline:
    """Deadline schedule on the tick circle: next = previous + period, never drifting.

    The period is ``period_us`` plus a Q16 fraction of a microsecond, accumulated, so a T_Lambda of
    4210.526 us keeps its mean exactly over hours.  ``lateness`` (us, >= 0 when late) is set by
    ``due(now)``."""

    def __init__(self, start_ticks, period_us_q16):
        self.st = array("i", bytes(16))
        self.st[_AT] = start_ticks & MASK
        self.set_period_q16(period_us_q16)

    @property
    def at(self):
        return self.st[_AT]

    @property
    def period_us(self):
        return self.st[_PER]

    @property
    def period_frac(self):
        return self.st[_PFRAC]

    def set_period_q16(self, period_us_q16):
        """Set the period in Q16 microseconds (period_us * 65536); must be in [1 us, 2^29 us)."""
        whole = period_us_q16 >> 16
        if whole < 1 or whole >= HALF:
            raise ValueError("beat period must be in 1 us .. 2^29 us, got %r us (Q16 %r)"
                             % (whole, period_us_q16))
        self.st[_PER] = whole
        self.st[_PFRAC] = period_us_q16 & 0xFFFF

    def advance(self):
        """Move to the next deadline (previous + period)."""
        _dl_advance(self.st)

    def remaining(self, now):
        """us until the deadline (negative when late)."""
        return tdiff(self.at, now)

    def resync(self, now):
        """After a stall of more than one period, skip missed beats (counted by the caller);
        the schedule stays on the same phase grid.  Returns how many beats were skipped."""
        skipped = 0
        while tdiff(now, self.at) >= self.period_us:
            self.advance()
            skipped += 1
        return skipped
