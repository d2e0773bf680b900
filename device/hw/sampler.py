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
        """Consumer: move up to len(dst) samples into dst; returns how many."""
        n = 0
        m = len(dst)
        t = self.tail
        h = self.head
        buf = self.buf
        cap = self.cap
        while t != h and n < m:
            dst[n] = buf[t]
            n += 1
            t += 1
            if t == cap:
                t = 0
        self.tail = t
        return n

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

    def __init__(self, source, f_s, ring=None):
        _check_fs(f_s)
        self.source = source
        self.f_s = f_s
        self.ring = ring or Ring()
        self._last = 0
        self._acc = 0          # microseconds * f_s not yet turned into samples
        self.taken = 0
        self._maxd = 1000000000 // f_s

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
        if n > room:
            m = self.ring.overruns + n - room
            self.ring.overruns = m if m < _SAT else _SAT
            for _ in range(n - room):
                self.source.sample()       # keep the synthetic signal's time base exact
            n = room
        src = self.source
        ring = self.ring
        for _ in range(n):
            ring.put(src.sample())
        self.taken = (self.taken + n) & _SAT

    def drain(self, dst):
        return self.ring.drain(dst)

    def lost(self):
        return self.ring.lost()

    def stop(self):
        pass
