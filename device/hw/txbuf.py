"""A transmit buffer for byte-stream links: the beat only copies a frame in (never waits on the
port), the idle time writes out what the port takes without blocking (``pump``).

    tx = TxBuffer(write, writable, capacity=2048, chunk=64, pad=True)
    tx.put(frame) -> bool       copy a whole framed frame in (False: no room, frame dropped)
    tx.pump(max_writes=8)       write while the port is writable; never blocks
    tx.flush(deadline_us)       pump until empty or the deadline (exit, crash report)

Why chunks of exactly 64 bytes, padded with 0x00 (``pad=True``, USB CDC on a Pico): MicroPython
1.28's rp2 USB CDC write waits (up to 500 ms, ``MICROPY_HW_USB_CDC_TX_TIMEOUT``) for room in
TinyUSB's 256-byte TX FIFO when a write does not fit, and poll() only says "at least one byte
free" (``tud_cdc_write_available() > 0``).  TinyUSB moves bytes from that FIFO to the endpoint
64 at a time (or all of them when fewer), so if every write is exactly 64 bytes the FIFO always
holds a multiple of 64 and its free space is a multiple of 64 too: whenever poll() says
writable, 64 bytes fit, and the write returns at once.  When the host has the port open but does
not read, the FIFO fills, poll() says not writable, frames wait here and, once this buffer is
full, new frames are dropped and counted (HEARTBEAT ``tx_dropped``); nothing blocks.  The 0x00
padding is COBS delimiters, which a receiver ignores (empty segments; docs/PROTOCOL.md §3.1).
Other streams: a pipe or pty (unix port: poll's POLLOUT means room for one write of this size),
a non-blocking fd (CPython: partial writes), a UART (``txdone()``: its buffer is empty).

``put`` allocates nothing (a viper copy on MicroPython, a slice copy on CPython); ``pump`` neither.
"""
import sys

try:
    import micropython
    _MPY = sys.implementation.name == "micropython"
except ImportError:
    _MPY = False

if _MPY:
    @micropython.viper
    def _copy(dst: ptr8, doff: int, src: ptr8, soff: int, n: int):
        i = 0
        while i < n:
            dst[doff + i] = src[soff + i]
            i += 1

    @micropython.viper
    def _zero(dst: ptr8, doff: int, n: int):
        i = 0
        while i < n:
            dst[doff + i] = 0
            i += 1
else:
    def _copy(dst, doff, src, soff, n):
        dst[doff:doff + n] = src[soff:soff + n]

    def _zero(dst, doff, n):
        dst[doff:doff + n] = bytes(n)


_pool = []


def reserve(capacity):
    """Allocate a transmit buffer now (early at boot, while the heap is in one piece); the next
    TxBuffer of this capacity takes it instead of allocating its own."""
    _pool.append(bytearray(capacity))


class TxBuffer:
    def __init__(self, write, writable=None, capacity=2048, chunk=64, pad=True):
        if capacity < 2 * chunk:
            raise ValueError("tx buffer capacity must be >= 2 chunks (%d), got %r"
                             % (2 * chunk, capacity))
        self.write = write            # write(buf) -> bytes written (or None = all)
        self.writable = writable      # () -> bool, or None: always try (non-blocking writes)
        buf = None
        for i in range(len(_pool)):
            if len(_pool[i]) == capacity:
                buf = _pool.pop(i)
                break
        self.buf = buf if buf is not None else bytearray(capacity)
        self.cap = capacity
        self.head = 0                 # next byte written in
        self.used = 0
        self.chunk = chunk
        self.pad = pad
        self.out = bytearray(chunk)
        self.dropped = 0              # frames refused for lack of room
        self.short = 0                # writes that took fewer bytes than offered
        self.max_used = 0

    def pending(self):
        return self.used

    def put(self, data):
        n = len(data)
        if n > self.cap - self.used:
            if self.dropped < 0x3FFFFFFF:
                self.dropped += 1
            return False
        h = self.head
        first = self.cap - h
        if first >= n:
            _copy(self.buf, h, data, 0, n)
        else:
            _copy(self.buf, h, data, 0, first)
            _copy(self.buf, 0, data, first, n - first)
        h += n
        self.head = h - self.cap if h >= self.cap else h
        self.used += n
        if self.used > self.max_used:
            self.max_used = self.used
        return True

    def _tail(self):
        t = self.head - self.used
        return t + self.cap if t < 0 else t

    def pump(self, max_writes=8):
        """Write what the port takes now; returns the writes done."""
        k = 0
        while self.used > 0 and k < max_writes:
            if self.writable is not None and not self.writable():
                break
            t = self._tail()
            n = self.used if self.used < self.chunk else self.chunk
            first = self.cap - t
            out = self.out
            if first >= n:
                _copy(out, 0, self.buf, t, n)
            else:
                _copy(out, 0, self.buf, t, first)
                _copy(out, first, self.buf, 0, n - first)
            size = n
            if self.pad and n < self.chunk:
                _zero(out, n, self.chunk - n)
                size = self.chunk
            w = self.write(out if size == self.chunk else memoryview(out)[:size])
            if w is None:
                w = size
            if w <= 0:
                break
            k += 1
            if w < n:
                if not self.pad:          # a partial non-blocking write: the rest stays
                    self.used -= w
                    break
                self.short += 1           # a padded write cut short: those bytes are lost
            self.used -= n
        return k

    def flush(self, deadline_us=200000):
        """Pump until empty or deadline_us passed (the exit report, the crash handler)."""
        import time
        if hasattr(time, "ticks_us"):
            t0 = time.ticks_us()
            while self.used > 0 and time.ticks_diff(time.ticks_us(), t0) < deadline_us:
                if not self.pump(1):
                    time.sleep_ms(1)
        else:
            t0 = time.monotonic()
            while self.used > 0 and time.monotonic() - t0 < deadline_us / 1e6:
                if not self.pump(1):
                    time.sleep(0.001)
        return self.used == 0
