"""A transmit buffer for byte-stream links: the beat only copies a frame in (never waits on the
port), the idle time writes out what the port takes without blocking (``pump``).

    tx = TxBuffer(write, writable, capacity=1024, chunk=64, pad=True)
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

``put`` allocates nothing: a slice store into a bytearray (MicroPython builds no slice object for
it); frames go in one after the other and the buffer starts over whenever it is empty, which is
every idle time while the host reads.  Only under back-pressure (the host not reading) does
``put`` move what is pending to the front (a memoryview slice: 16-32 bytes, then).  ``pump``
runs in idle time; a padded write, and a pty's 1-byte write (chunk 1), copies its bytes in
viper into a buffer of its own (no memoryview slice: no heap).
"""
from shared.compat import micropython  # noqa: F401
try:
    from shared.compat import ptr8     # CPython stand-in; viper has it built in
except ImportError:
    pass

_pool = []


@micropython.viper
def _chunk(src, s: int, n: int, dst, c: int) -> int:
    # dst[0:n] = src[s:s+n], then 0x00 to c: a slice of the memoryview would be heap per write
    a = ptr8(src)
    d = ptr8(dst)
    i = 0
    while i < n:
        d[i] = a[s + i]
        i += 1
    while i < c:
        d[i] = 0
        i += 1
    return n


def reserve(capacity):
    """Allocate a transmit buffer now (early at boot, while the heap is in one piece); the next
    TxBuffer of this capacity takes it instead of allocating its own."""
    _pool.append(bytearray(capacity))


class TxBuffer:
    def __init__(self, write, writable=None, capacity=1024, chunk=64, pad=True):
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
        self.mv = memoryview(self.buf)
        self.cap = capacity
        self.start = 0                # first byte not yet written out
        self.end = 0                  # end of the frames put in
        self.chunk = chunk
        # padded chunks, and a pty's 1-byte writes, go out of a buffer of their own (a
        # memoryview slice per write would be heap every write)
        self.out = bytearray(chunk) if pad or chunk == 1 else None
        self.dropped = 0              # frames refused for lack of room
        self.short = 0                # writes that took fewer bytes than offered
        self.max_used = 0

    def pending(self):
        return self.end - self.start

    def put(self, data):
        n = len(data)
        e = self.end
        if e + n > self.cap:
            p = e - self.start
            if p + n > self.cap:
                if self.dropped < 0x3FFFFFFF:
                    self.dropped += 1
                return False
            if p:                     # back-pressure: move what waits to the front
                self.buf[0:p] = self.mv[self.start:e]
            self.start = 0
            e = p
        self.buf[e:e + n] = data
        e += n
        self.end = e
        if e - self.start > self.max_used:
            self.max_used = e - self.start
        return True

    def drop_all(self):
        self.start = self.end = 0

    @micropython.native
    def pump(self, max_writes=8):
        """Write what the port takes now; returns the writes done."""
        k = 0
        c = self.chunk
        while self.end > self.start and k < max_writes:
            if self.writable is not None and not self.writable():
                break
            s = self.start
            n = self.end - s
            if n > c:
                n = c
            if self.out is not None:          # padded, or a pty's single bytes
                out = self.out
                _chunk(self.buf, s, n, out, c)    # the rest COBS delimiters
                w = self.write(out)
                if w is None:
                    w = c
                if w <= 0:
                    break
                if w < n:
                    self.short += 1           # a padded write cut short: those bytes are lost
                w = n
            else:
                w = self.write(self.mv[s:s + n])
                if w is None:
                    w = n
                if w <= 0:
                    break
            k += 1
            s += w
            if s >= self.end:
                s = self.end = 0
            self.start = s
            if w < n:                         # a partial non-blocking write: the rest waits
                break
        return k

    def flush(self, deadline_us=200000):
        """Pump until empty or deadline_us passed (the exit report, the crash handler)."""
        import time
        if hasattr(time, "ticks_us"):
            t0 = time.ticks_us()
            while self.end > self.start and time.ticks_diff(time.ticks_us(), t0) < deadline_us:
                if not self.pump(1):
                    time.sleep_ms(1)
        else:
            t0 = time.monotonic()
            while self.end > self.start and time.monotonic() - t0 < deadline_us / 1e6:
                if not self.pump(1):
                    time.sleep(0.001)
        return self.end == self.start
