"""COBS-framed links on byte streams: stdin/stdout (USB CDC), UART, pty (see device/hw/links.py).

Sending never waits on the port: ``send`` copies the framed frame into a transmit buffer
(device/hw/txbuf.py) and the beat's idle time calls ``pump()``, which writes only what the port
takes without blocking (USB CDC: 64-byte chunks while poll() says writable; that file says why
this cannot block).  A frame that does not fit the buffer is dropped and counted in
``send_errors`` (HEARTBEAT tx_dropped).  ``flush(deadline_us)`` drains with a deadline (exit,
crash report)."""
import sys

try:
    import select
except ImportError:
    select = None

from shared import cobs
from shared.compat import const
from device.hw.links import _poller, _readable
from device.hw.txbuf import TxBuffer

_MAX = const(254)
_IS_MPY = sys.implementation.name == "micropython"
# bytes an idle time writes at most: two 64-byte chunks on USB CDC (see pump), 128 1-byte writes
# on a pty (the unix port's: two writes an idle were 2 bytes a beat, ~470 B/s, under a fifth of
# the telemetry, so the buffer stayed full and HELLO, handshake proofs and WITNESS records were
# dropped with the telemetry). const: a plain global is one more interned name, and the unix
# port's firmware has none to spare (docs/DEVICE.md "Names")
_PUMP_BYTES = const(128)


class StreamLink:
    """COBS frames over a byte stream.  ``write(view)`` writes bytes; ``read_avail(dst) -> n``
    reads whatever is available now without blocking (0 if nothing)."""
    name = "serial"
    cobs = True

    def __init__(self, write, read_avail, close=None, writable=None, chunk=64, pad=True,
                 tx_capacity=1024):
        self._write = write
        self._read = read_avail
        self._close = close
        self.tx = TxBuffer(write, writable, tx_capacity, chunk, pad)
        self._rx = bytearray(256)
        self._deframer = cobs.Deframer(_MAX)
        self._pending = []
        self.tx_frames = self.tx_bytes = self.rx_frames = self.rx_bytes = 0
        self.send_errors = self.rx_dropped = 0

    def send(self, data):
        if not self.tx.put(data):
            self.send_errors += 1
            return
        self.tx_frames = (self.tx_frames + 1) & 0x3FFFFFFF
        self.tx_bytes = (self.tx_bytes + len(data)) & 0x3FFFFFFF

    def pump(self):
        # two chunks an idle time (128 bytes a beat on USB CDC, above a 5-record TELEMETRY
        # frame's 50 a beat or an unbatched one's 74): each costs ~0.2 ms on a Pico (poll +
        # write), and a frame's four in one idle made its beat late; on a pty _PUMP_BYTES
        # 1-byte writes
        try:
            self.tx.pump(_PUMP_BYTES // self.tx.chunk or 2)
        except OSError:
            self.send_errors += 1
            self.tx.drop_all()           # the port failed: what was queued is gone

    def flush(self, deadline_us=200000):
        try:
            return self.tx.flush(deadline_us)
        except OSError:
            return False

    def recv(self):
        # called every idle: kept to a frame small enough for the C stack (see device/beat.py
        # idle()); what arrived is deframed in _feed
        if not self._pending:
            try:
                n = self._read(self._rx)
            except OSError:
                n = 0
            if not n:
                return None
            return self._feed(n)
        self.rx_frames = (self.rx_frames + 1) & 0x3FFFFFFF
        return self._pending.pop(0)

    def _feed(self, n):
        self.rx_bytes = (self.rx_bytes + n) & 0x3FFFFFFF
        d = self._deframer
        before = d.errors.get("cobs", 0) + d.errors.get("oversize", 0)
        frames = d.feed(self._rx[:n])
        self.rx_dropped += d.errors.get("cobs", 0) + d.errors.get("oversize", 0) - before
        if not frames:
            return None
        self._pending = frames
        self.rx_frames = (self.rx_frames + 1) & 0x3FFFFFFF
        return self._pending.pop(0)

    def close(self):
        if self._close:
            self._close()




def _out_poller(obj):
    p = select.poll()
    p.register(obj, select.POLLOUT)

    def writable():
        return _readable(p)
    return writable


def _nonblocking_fd_writer(fd):
    """CPython: os.write on a non-blocking fd (a partial write or none when the port is full)."""
    import os
    try:
        import fcntl
        fl = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, fl | os.O_NONBLOCK)
    except (ImportError, OSError):
        pass

    def write(view):
        try:
            return os.write(fd, view)
        except BlockingIOError:
            return 0
    return write


def stdio_link():
    """Binary frames on stdin/stdout (USB CDC on a Pico, a pipe or pty under emulation)."""
    try:
        import micropython
        micropython.kbd_intr(-1)
    except (ImportError, AttributeError):
        pass
    rd = sys.stdin.buffer if hasattr(sys.stdin, "buffer") else sys.stdin
    wr = sys.stdout.buffer if hasattr(sys.stdout, "buffer") else sys.stdout
    p = _poller(sys.stdin)
    byte_at_a_time = _IS_MPY and sys.platform not in ("linux", "darwin")

    if _IS_MPY:
        write = wr.write                      # 64-byte chunks, only when poll says writable
        writable = _out_poller(sys.stdout)
        chunk, pad = 64, True
    else:
        wr.flush()
        write = _nonblocking_fd_writer(sys.stdout.fileno())
        writable = None
        chunk, pad = 4096, False

    one = bytearray(1)

    def read_avail(dst):
        if byte_at_a_time:       # rp2 stdio: read(n) would wait for n bytes
            # one byte at a time into a preallocated byte, as poll() says they are there:
            # read(1) made a bytes object per byte
            n = 0
            lim = len(dst)
            while n < lim and _readable(p):
                if rd.readinto(one) != 1:
                    break
                dst[n] = one[0]
                n += 1
            return n
        if not _readable(p):
            return 0
        if _IS_MPY:
            return rd.readinto(dst) or 0
        import os
        data = os.read(sys.stdin.fileno(), len(dst))
        dst[0:len(data)] = data
        return len(data)

    link = StreamLink(write, read_avail, writable=writable, chunk=chunk, pad=pad,
                      tx_capacity=1024 if _IS_MPY else 16384)
    link.name = "serial"
    link.uses_stdout = True
    return link


def uart_link(uart):
    """A machine.UART (give it txbuf >= 256): written only when its transmitter is done, up to
    256 bytes at a time, which its buffer takes without waiting."""
    def write(view):
        return uart.write(view)

    def read_avail(dst):
        if not uart.any():
            return 0
        return uart.readinto(dst) or 0

    done = getattr(uart, "txdone", None)
    link = StreamLink(write, read_avail, writable=done, chunk=256, pad=False)
    link.name = "uart"
    return link


def pty_link(path):
    """A pseudo-terminal or other character device path (emulation over a serial pty)."""
    if _IS_MPY:
        f = open(path, "r+b")
        p = _poller(f)
        write = f.write
        writable = _out_poller(f)

        one = bytearray(1)

        # MicroPython's readinto() on a blocking fd loops until the whole buffer is full
        # (mp_stream_rw), so read only the bytes poll() says are there, one at a time, into a
        # preallocated byte (no allocation; host traffic is a few frames a second).
        def read_avail(dst):
            n = 0
            lim = len(dst)
            while n < lim and _readable(p):
                if f.readinto(one) != 1:
                    break
                dst[n] = one[0]
                n += 1
            return n

        # a pty takes one byte whenever poll says writable, not always 64: n_tty waits for
        # room to write the rest of a longer write (emulation only: a syscall a byte is fine)
        link = StreamLink(write, read_avail, f.close, writable=writable, chunk=1, pad=False)
    else:
        import os
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            import termios
            import tty
            tty.setraw(fd)
        except (ImportError, OSError):
            pass

        write = _nonblocking_fd_writer(fd)

        def read_avail(dst):
            try:
                data = os.read(fd, len(dst))
            except BlockingIOError:
                return 0
            dst[0:len(data)] = data
            return len(data)

        link = StreamLink(write, read_avail, lambda: os.close(fd), chunk=4096, pad=False,
                          tx_capacity=16384)
    link.name = "pty"
    return link


