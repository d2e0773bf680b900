"""Sampling at f_s, decoupled from the beat.

All samplers fill a ``Ring`` (single producer, single consumer, preallocated ``array('H')``);
the beat drains it with ``drain(dst) -> n`` once per beat.  The producer (an interrupt handler,
a thread, or the beat itself) writes only ``head`` and ``overruns``; the consumer (the beat) writes
only ``tail``.  When the ring is full the producer drops the *new* sample and counts it in
``overruns``: it never moves the consumer's index, so a producer that interrupts the beat (a hard
IRQ) or runs on another core (a thread) cannot race with ``drain`` (each index is one word,
written by one side only).  ``lost()`` is what HEARTBEAT reports as ``samples_lost``.

(``TimerSampler`` is in device/hw/rp2_sampler.py, ``ThreadSampler`` and ``ReadySampler`` in
device/hw/thread_sampler.py.)
- ``TimerSampler(adc, f_s, timer)``: rp2, a ``machine.Timer(hard=True)`` at f_s reads
  ``adc.read_u16() >> 4`` in the timer's hard IRQ (core 0, the beat's core).
- ``ThreadSampler(adc, f_s, clock)``: a thread pacing itself on a deadline schedule (CPython).
- ``ReadySampler(ads, ready, clock)``: pizero, one read per ADS1115 conversion-ready pulse.
- ``PullSampler(source, f_s)``: computes how many sample instants have passed since the last
  call (exact, in integer microseconds) and asks ``source.sample()`` for each one (the emulator's
  synthetic sensor).
"""
from array import array

from device.clock import tdiff
from shared.compat import micropython  # noqa: F401
try:
    from shared.compat import ptr16    # CPython stand-in; viper has it built in
except ImportError:
    pass


@micropython.viper
def copy16(src, so: int, dst, do: int, n: int) -> int:
    """dst[do:do+n] = src[so:so+n] for array('H') (viper: no allocation)."""
    s = ptr16(src)
    d = ptr16(dst)
    i = 0
    while i < n:
        d[do + i] = s[so + i]
        i += 1
    return n

_SAT = 0x3FFFFFFF


class Ring:
    def __init__(self, capacity=256):
        if capacity < 2:
            raise ValueError("sample ring capacity must be >= 2, got %r" % (capacity,))
        self.buf = array("H", bytes(2 * capacity))
        self.cap = capacity
        self.head = 0   # next write (producer only)
        self.tail = 0   # next read (consumer only)
        self.overruns = 0   # samples dropped because the ring was full (producer only)
        self.missed = 0     # sample instants nobody took (a stalled producer; consumer side)

    def put(self, v):
        """Producer: store one sample, or count it dropped when full (no allocation)."""
        h = self.head
        n = h + 1
        if n == self.cap:
            n = 0
        if n == self.tail:           # full: drop this sample, never touch tail
            if self.overruns < _SAT:
                self.overruns += 1
            return
        self.buf[h] = v
        self.head = n

    def available(self):
        d = self.head - self.tail
        return d if d >= 0 else d + self.cap

    def drain(self, dst):
        """Move up to len(dst) samples into dst; returns how many."""
        t = self.tail
        h = self.head
        cap = self.cap
        avail = h - t if h >= t else h + cap - t
        m = len(dst)
        n = avail if avail < m else m
        first = cap - t
        if first > n:
            first = n
        copy16(self.buf, t, dst, 0, first)
        if n > first:
            copy16(self.buf, 0, dst, first, n - first)
        t += n
        if t >= cap:
            t -= cap
        self.tail = t
        return n

    def fill_from(self, source, n):
        """Append n samples written by ``source.fill(buf, off, k)`` straight into the ring, in
        contiguous chunks; samples that overwrite unread ones drop the oldest (counted in
        overruns). Returns the samples the source produced (fewer when it has none)."""
        cap = self.cap
        got = 0
        while n > 0:
            h = self.head
            k = cap - h
            if k > n:
                k = n
            g = source.fill(self.buf, h, k)
            if g <= 0:
                break
            free = cap - 1 - self.available()
            if g > free:
                self.overruns += g - free
                t = self.tail + g - free
                self.tail = t - cap if t >= cap else t
            h += g
            self.head = h - cap if h >= cap else h
            got += g
            if g < k:
                break
            n -= g
        return got
    def lost(self):
        """Samples lost since start: overruns + missed instants, saturating below 2^30."""
        v = self.overruns + self.missed
        return v if v < _SAT else _SAT


def _check_fs(f_s):
    if not 1 <= f_s <= 100000:
        raise ValueError("sample rate f_s must be 1..100000 Hz, got %r" % (f_s,))


class PullSampler:
    """Sample instants are k * 1e6 / f_s us after ``start``; ``poll(now)`` takes every instant
    that has passed (at most the ring's capacity at once: a longer stall counts overruns)."""

    def __init__(self, source, f_s, ring=None, load_clock=None):
        _check_fs(f_s)
        self.load_clock = load_clock
        self.source = source
        self.f_s = f_s
        self.ring = ring or Ring()
        self._last = 0
        self._acc = 0          # microseconds * f_s not yet turned into samples
        self.taken = 0
        self._maxd = 1000000000 // f_s
        # block sources (fill(buf, off, n)) skip the samples an overrun drops through this
        self._scratch = array("H", bytes(128)) if hasattr(source, "fill") else None

    def start(self, now):
        self._last = now
        self._acc = 0

    def poll(self, now):
        d = tdiff(now, self._last)
        if d <= 0:
            return
        self._last = now
        cap = self.ring.cap
        maxd = self._maxd          # keeps d * f_s below 2^30 (small ints on the Pico)
        if d > maxd:               # a long stall: the skipped instants are missed
            m = self.ring.missed + (d - maxd) // 1000 * self.f_s // 1000
            self.ring.missed = m if m < _SAT else _SAT
            d = maxd
        acc = self._acc + d * self.f_s
        n = acc // 1000000
        self._acc = acc - n * 1000000
        room = cap - 1 - self.ring.available()
        src = self.source
        ring = self.ring
        if n > room:
            drop = n - room
            m = ring.overruns + drop
            ring.overruns = m if m < _SAT else _SAT
            sc = self._scratch         # the source still produces them: its time base stays
            if sc is None:             # exact (a real ADC's samples go on, unread)
                for _ in range(drop):
                    src.sample()
            else:
                while drop > 0:
                    g = src.fill(sc, 0, drop if drop < 64 else 64)
                    if g <= 0:
                        break
                    drop -= g
            n = room
        if self._scratch is not None:          # a block source: straight into the ring
            load = getattr(src, "extra_load_us", 0)
            self.taken = (self.taken + ring.fill_from(src, n)) & _SAT
            clk = self.load_clock
            if load and clk is not None:
                # the emulator's overload fault: extra work inside the beat (a simulated clock
                # is charged, a real one is spun)
                if hasattr(clk, "advance"):
                    clk.advance(load)
                else:
                    t0 = clk.ticks()
                    while tdiff(clk.ticks(), t0) < load:
                        pass
            return
        for _ in range(n):
            ring.put(src.sample())
        self.taken = (self.taken + n) & _SAT

    def drain(self, dst):
        return self.ring.drain(dst)

    def lost(self):
        return self.ring.lost()

    def stop(self):
        pass
