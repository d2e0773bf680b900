"""rp2: the ADC free-running at f_s into a ring by DMA, so sampling costs the CPU nothing.

Why: at the Pico's 12 kHz a timer interrupt per sample (even a hard IRQ) costs tens of percent of
a Cortex-M0+ running MicroPython and jitters whenever interrupts are masked (GC, flash writes);
the RP2040's ADC paces itself (CS.START_MANY, DIV) and its FIFO raises DREQ_ADC, so one DMA
channel moves every conversion into a RAM ring with no code running at all.

Hardware notes (RP2040 datasheet §4.9 ADC, §2.5 DMA):
- DIV = 48 MHz / f_s - 1 in 16.8 fixed point (12 kHz: 3999); a conversion takes 96 cycles, so
  f_s <= 500 kS/s. DIV's whole part has 16 bits: the ADC paces itself no slower than 733 Hz, so
  a lower f_s runs the ADC at f_s x 2^k (500 Hz: 1 kHz) and ``drain`` takes every 2^k-th sample
  (the ring, TRANS_COUNT and the lost count are in ADC samples; ``lost()`` in samples at f_s).
- FCS: EN, DREQ_EN, THRESH = 1 (a DREQ per sample); results stay 12-bit (SHIFT off).
- The DMA writes halfwords into a ring of 2^k bytes (CTRL.RING_SEL on the write address,
  RING_SIZE = k): the buffer must be aligned to its size, so a buffer twice as large is taken
  and the aligned half used.
- TRANS_COUNT counts down from the count the channel was armed with: the samples written so far
  are exact (armed - TRANS_COUNT), which is how the consumer knows how far the producer got and
  how many it overwrote (counted in ``overruns``). The count is 2^30 - 1 (24.9 h at 12 kHz);
  ``poll`` re-arms the channel well before it runs out (the FIFO holds the few samples that
  arrive meanwhile).

DmaSampler(adc_pin, f_s, ring_bits, clock_hz, div)   (clock_hz, div: boards/pico.py LIMITS)
    .start(now)        arm the DMA channel and start the ADC
    .poll(now)         re-arm when due (idle-time safe, allocation-free otherwise)
    .drain(dst) -> n   up to len(dst) new samples into array('H') dst (viper, no allocation)
    .lost()            samples lost because the beat fell more than the ring behind
    .buf               (read-only) the ring's samples as array memory, for diagnostics
    .stop()
"""
import array

import machine
import rp2
import uctypes

from shared.compat import micropython, const  # noqa: F401

_ADC_CS = const(0x4004C000)
_ADC_FCS = const(0x4004C008)
_ADC_FIFO = const(0x4004C00C)
_ADC_DIV = const(0x4004C010)
_DMA_BASE = const(0x50000000)
_DREQ_ADC = const(36)
_ARM = const(0x3FFFFFFF)          # transfers per arming (a small int on the Pico)
_REARM_BELOW = const(0x1000000)   # re-arm with 16 M transfers (23 min at 12 kHz) left
# state words
_LAST = const(0)     # TRANS_COUNT at the last drain (what was consumed up to)
_TAIL = const(1)     # ring index of the next unread sample
_OVR = const(2)      # samples lost (saturating)
_MASK = const(3)     # ring index mask, CHn_TRANS_COUNT's address, the decimation shift: in the
_TC = const(4)       # state words, so drain's call is short (a bytecode frame over 11 words
_SH = const(5)       # is heap-allocated per call, and a fragmented heap makes that slow)
_NST = const(6)


@micropython.viper
def _drain(st, ring, dst, maxn: int) -> int:
    s = ptr32(st)
    r = ptr16(ring)
    d = ptr16(dst)
    mask = int(s[_MASK])
    sh = int(s[_SH])
    now = int(ptr32(s[_TC])[0])
    last = int(s[_LAST])
    avail = last - now                  # samples written since the last drain
    tail = int(s[_TAIL])
    if avail > mask:                    # the beat fell more than the ring behind
        lost = avail - mask
        o = int(s[_OVR]) + lost
        s[_OVR] = o if o < 0x3FFFFFFF else 0x3FFFFFFF
        tail = (tail + lost) & mask
        last -= lost
        avail = mask
    n = avail >> sh                     # samples at f_s: every 2^sh-th ADC sample
    if n > maxn:
        n = maxn
    step = 1 << sh
    i = 0
    while i < n:
        d[i] = r[tail]
        tail = (tail + step) & mask
        i += 1
    s[_TAIL] = tail
    s[_LAST] = last - (n << sh)
    return n


class DmaSampler:
    def __init__(self, adc_pin, f_s, ring_bits, clock_hz, div):
        from device.limits import adc_pacing
        if not 26 <= adc_pin <= 29:
            raise ValueError("ADC pin must be 26..29 (ADC0..ADC3), got %r" % (adc_pin,))
        sh = adc_pacing(f_s, clock_hz, div[0], div[1])   # the ADC at f_s << sh
        if sh < 0:          # check_board refuses this at boot (device/limits.py check_rate)
            raise ValueError("f_s must divide %d Hz into %d..%d ADC clocks, got %r"
                             % (clock_hz, div[0], div[1], f_s))
        div = clock_hz // (f_s << sh) - 1
        self._sh = sh
        if not 6 <= ring_bits <= 12:
            raise ValueError("ring_bits must be 6..12 (64..4096 samples), got %r" % (ring_bits,))
        self.f_s = f_s
        self.channel = adc_pin - 26
        self.adc = machine.ADC(adc_pin)         # the pin to analog input, the ADC enabled
        n = 1 << ring_bits
        nbytes = 2 * n
        self._raw = bytearray(2 * nbytes)
        addr = uctypes.addressof(self._raw)
        off = (-addr) & (nbytes - 1)            # the ring must be aligned to its size
        self._addr = addr + off
        self.buf = memoryview(self._raw)[off:off + nbytes]
        self._mask = n - 1
        self._div = div
        self._st = array.array("i", bytes(4 * _NST))
        self.dma = rp2.DMA()
        self._tc = _DMA_BASE + 0x40 * self.dma.channel + 0x08     # CHn_TRANS_COUNT
        st = self._st
        st[_MASK] = self._mask
        st[_TC] = self._tc
        st[_SH] = sh
        self._ctrl = self.dma.pack_ctrl(size=1, inc_read=False, inc_write=True,
                                        treq_sel=_DREQ_ADC, ring_sel=True,
                                        ring_size=ring_bits + 1)
        self.started = False

    def lost(self):
        """Samples lost since start (the beat fell more than the ring behind), < 2^30."""
        return self._st[_OVR] >> self._sh

    def start(self, now=0):
        m = machine.mem32
        m[_ADC_CS] = 0                           # stop, so the FIFO can be drained
        m[_ADC_FCS] = (1 << 24) | (1 << 3) | 1   # THRESH 1, DREQ_EN, EN
        while m[_ADC_FCS] & (0xF << 16):         # LEVEL: empty the FIFO
            m[_ADC_FIFO]
        m[_ADC_DIV] = self._div << 8
        self._st[_LAST] = _ARM
        self._st[_TAIL] = 0
        self.dma.config(read=_ADC_FIFO, write=self._addr, count=_ARM, ctrl=self._ctrl,
                        trigger=True)
        m[_ADC_CS] = (self.channel << 12) | (1 << 3) | 1          # AINSEL, START_MANY, EN
        self.started = True

    def poll(self, now=0):
        # re-arm a channel that is running low (every ~24.9 h at 12 kHz): in place, from where
        # it writes now, keeping the consumer's position
        if self.started and self._st[_LAST] < _REARM_BELOW and \
                machine.mem32[self._tc] < _REARM_BELOW:
            self._rearm()

    def _rearm(self):
        d = self.dma
        left = machine.mem32[self._tc]
        waddr = d.write
        d.active(0)
        done = self._st[_LAST] - left            # written, not yet drained
        d.config(write=waddr, count=_ARM, trigger=True)
        self._st[_LAST] = _ARM + done

    def drain(self, dst):
        return _drain(self._st, self.buf, dst, len(dst))

    def stop(self):
        machine.mem32[_ADC_CS] = 1               # EN only: no more conversions
        self.dma.active(0)
        self.started = False
