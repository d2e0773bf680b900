"""The rp2 sampler: ``machine.Timer(hard=True)`` at f_s reads the ADC in a hard interrupt.

Why a hard IRQ timer (and not a soft timer, the second core, PIO or DMA), on MicroPython 1.28:
- a soft timer callback is only scheduled from the IRQ and runs when the VM next checks for
  pending callbacks: a garbage collection, a long native call or a flash write delays it by
  milliseconds (the jitter the issue measured).  ``hard=True`` runs the callback inside the
  timer's alarm interrupt, so the sample instant is the alarm's (microseconds late at most, the
  IRQ entry), whatever the beat is doing;
- the rp2 port's ``machine.Timer`` lives in the pico-sdk default alarm pool, whose interrupt is
  taken on core 0, the core that runs the beat: producer and consumer share one core, the
  producer only writes ``Ring.head`` / ``Ring.overruns`` and the consumer only ``Ring.tail``
  (device/hw/sampler.py), so there is no cross-core race and no lock (the second core via
  ``_thread`` is gone: its overrun path moved the consumer's index from the other core, and
  core 1 cannot be tested in the emulator);
- DMA from the ADC FIFO (free-running ADC paced by its own divider, a ring-wrapping channel) would
  cost no CPU at all and is the way to go far above 10 kHz, but MicroPython 1.28 offers it only
  through raw register access (``rp2.DMA`` + ``machine.mem32`` on the ADC's FCS/DIV registers,
  a second channel to re-trigger the transfer count), and the ring's write index would have to be
  derived from the channel's write address; PIO cannot read the ADC.  At the boards' rates (1 kHz
  default, spb_max 32 per beat) one hard IRQ per sample is a few percent of core 0
  (docs/DEVICE.md, "On the chip").
The handler allocates nothing (hard IRQs cannot allocate): ``read_u16() >> 4`` is a small int,
``Ring.put`` stores it into a preallocated array and bumps two small-int attributes.

A stalled timer (its callback raised: the rp2 port then stops the alarm) is detected by the beat:
``poll(now)`` compares the interrupts counted with the instants elapsed and counts the shortfall
in ``Ring.missed`` (HEARTBEAT samples_lost).
"""
from shared.compat import micropython
from device.clock import tdiff
from device.hw.sampler import Ring, _check_fs, _SAT


class TimerSampler:
    def __init__(self, adc, f_s, timer, ring=None, hard=True):
        _check_fs(f_s)
        self.adc = adc
        self.f_s = f_s
        self.timer = timer
        self.hard = hard
        self.ring = ring or Ring()
        self.ticks = 0             # interrupts taken (mod 2^30; written by the IRQ only)
        self._seen = 0             # ticks at the last poll
        self._last = 0
        self._acc = 0              # us * f_s not yet turned into expected instants
        self._bal = 0              # instants expected minus taken, bounded
        self._slack = 2 + f_s // 50    # 20 ms of IRQ latency before a shortfall counts
        self._maxd = 1000000000 // f_s
        self._cb = self._tick      # bound once: the IRQ does not allocate a bound method

    @micropython.native
    def _tick(self, _t):
        r = self.ring
        h = r.head
        n = h + 1
        if n == r.cap:
            n = 0
        if n == r.tail:
            if r.overruns < _SAT:
                r.overruns += 1
        else:
            r.buf[h] = self.adc.read_u16() >> 4
            r.head = n
        self.ticks = (self.ticks + 1) & _SAT

    def start(self, now=0):
        self._last = now
        self._seen = self.ticks
        if self.hard:
            self.timer.init(mode=1, freq=self.f_s, callback=self._cb, hard=True)
        else:
            self.timer.init(mode=1, freq=self.f_s, callback=self._cb)

    def poll(self, now):
        """Beat side: count sample instants the timer did not take (a stalled IRQ)."""
        d = tdiff(now, self._last)
        if d <= 0:
            return
        self._last = now
        if d > self._maxd:
            d = self._maxd
        acc = self._acc + d * self.f_s
        exp = acc // 1000000
        self._acc = acc - exp * 1000000
        t = self.ticks
        got = (t - self._seen) & _SAT
        self._seen = t
        b = self._bal + exp - got
        s = self._slack
        if b > s:
            r = self.ring
            m = r.missed + b - s
            r.missed = m if m < _SAT else _SAT
            b = s
        elif b < -s:
            b = -s
        self._bal = b

    def drain(self, dst):
        return self.ring.drain(dst)

    def lost(self):
        return self.ring.lost()

    def stop(self):
        self.timer.deinit()
