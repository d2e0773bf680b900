"""Link: the abstract base of every link between the host and its devices, a template method
around a backend's raw I/O (the python-can BusABC pattern).

Public (template): open(), close(), recv_batch(timeout), recv(timeout), send(frame, addr),
stats(). A backend implements only the hooks:
    _open()                 acquire the port; OSError when it cannot
    _close()                release it
    _read(timeout)          datagram backends (datagram = True): a FrameBatch or None;
                            stream backends: bytes (possibly empty), COBS-deframed here
    _write(data, addr)      one frame's bytes (COBS-encoded here for streams); OSError on
                            failure, LinkTimeout when the write timed out
A backend raises OSError (pyserial's SerialException is one) when its port goes away: the link
then closes it and reopens with exponential backoff (reopen_min doubling to reopen_max seconds)
on later recv_batch() calls, so an unplugged board is picked up again without a restart.
"""
import abc
import threading
import time

from becomingone.errors import LinkClosed, LinkError, LinkTimeout
from becomingone.links.batch import FrameList
from shared import cobs

__all__ = ["Link", "LinkClosed", "LinkError", "LinkTimeout"]


class Link(abc.ABC):
    """One link (a UDP listener, a serial port): owns its port, the stream framing and the
    counters frames_in/out, bytes_in/out, oversize, cobs, resync (stream links: the partial
    frame before the first delimiter after an open, not a rejection), opens, open_failures,
    disconnects, send_failures, reads (datagram links: reads that returned datagrams).
    Raises LinkError from open() when the port cannot be opened,
    LinkClosed from recv_batch()/send() on a closed link (and from send() while a lost port is being reopened),
    LinkTimeout from send() when a write times out; a lost port never raises from recv_batch()."""

    scheme = "?"
    datagram = False
    # bytes the OS buffers for this link while nobody reads it (a socket's receive buffer;
    # None: not known). The coordinator's reader paces its reads only within it.
    rcvbuf_bytes = None

    def __init__(self, url, *, max_frame=cobs.MAX_FRAME, reopen_min=0.05, reopen_max=2.0):
        self.url = url
        self.max_frame = max_frame
        self.reopen_min = reopen_min
        self.reopen_max = reopen_max
        self.is_open = False
        self.wanted = False            # opened by its owner and not closed: keep it open
        self._deframer = None if self.datagram else cobs.Deframer(max_frame)
        self._wlock = threading.Lock()
        self._next_try = 0.0
        self._delay = reopen_min
        self.counters = {"frames_in": 0, "frames_out": 0, "bytes_in": 0, "bytes_out": 0,
                         "oversize": 0, "cobs": 0, "resync": 0, "opens": 0, "open_failures": 0,
                         "disconnects": 0, "send_failures": 0, "reads": 0}
        self.last_error = None

    # -- backend hooks -------------------------------------------------------------
    @abc.abstractmethod
    def _open(self):
        """Acquire the port (OSError when it cannot be opened)."""

    @abc.abstractmethod
    def _close(self):
        """Release the port."""

    @abc.abstractmethod
    def _read(self, timeout):
        """What arrived within `timeout` s: a FrameBatch or None (datagram), bytes (stream)."""

    @abc.abstractmethod
    def _write(self, data, addr):
        """Write one frame's bytes to `addr` (datagram) or the port (stream)."""

    # -- public -------------------------------------------------------------------
    @property
    def local_url(self):
        """The URL as opened (e.g. the real port of udp://127.0.0.1:0)."""
        return self.url

    def open(self):
        """Open now. LinkError when the port cannot be opened (first open only: later losses
        are handled by reopening); `wanted` is set either way, so a serial port that appears
        later is picked up by recv_batch()."""
        self.wanted = True
        try:
            self._open()
        except OSError as e:
            self.last_error = "%s: %s" % (type(e).__name__, e)
            raise LinkError(str(e)) from None
        self._opened()
        return self

    def close(self):
        self.wanted = False
        if self.is_open:
            self.is_open = False
            try:
                self._close()
            except OSError:
                pass

    def _lost(self, err):
        self.last_error = "%s: %s" % (type(err).__name__, err)
        self.counters["disconnects"] += 1
        self.is_open = False
        try:
            self._close()
        except Exception:
            pass
        if self._deframer is not None:
            self._deframer.reset()
        self._next_try = time.monotonic() + self._delay

    def _try_reopen(self, timeout):
        now = time.monotonic()
        if now < self._next_try:
            time.sleep(min(timeout, self._next_try - now))
            return False
        try:
            self._open()
        except OSError as e:
            self.counters["open_failures"] += 1
            self.last_error = "%s: %s" % (type(e).__name__, e)
            self._delay = min(self.reopen_max, self._delay * 2)
            self._next_try = time.monotonic() + self._delay
            return False
        self._opened()
        return True

    def _opened(self):
        self.is_open = True
        self.counters["opens"] += 1
        self._delay = self.reopen_min
        if self._deframer is not None:
            # the OS dropped what was buffered before the open: the stream starts mid-frame
            self._deframer.reset(hunt=True)

    def recv_batch(self, timeout=0.1):
        """The frames received within `timeout` s as a FrameBatch (becomingone/links/batch.py),
        or None when nothing arrived. Oversize frames are dropped and counted. A lost port
        returns None and is reopened on later calls; LinkClosed once close() was called."""
        if not self.is_open:
            if not self.wanted:
                raise LinkClosed("link %s is closed" % self.local_url)
            if not self._try_reopen(timeout):
                return None
        try:
            raw = self._read(timeout)
        except OSError as e:
            if not self.wanted:             # close() from another thread ended the read
                raise LinkClosed("link %s is closed" % self.local_url) from None
            self._lost(e)
            return None
        c = self.counters
        if self.datagram:
            if not raw:
                return None
            c["reads"] += 1
            c["bytes_in"] += raw.nbytes()
            batch, dropped = raw.without_oversize(self.max_frame)
            if dropped:
                c["oversize"] += dropped
            if batch is not None:
                c["frames_in"] += len(batch)
            return batch
        if not raw:
            return None
        c["bytes_in"] += len(raw)
        d = self._deframer
        frames = d.feed(raw)
        c["cobs"] = d.errors["cobs"]
        c["oversize"] = d.errors["oversize"]
        c["resync"] = d.errors["resync"]
        if not frames:
            return None
        c["frames_in"] += len(frames)
        return FrameList([(f, None) for f in frames])

    def recv(self, timeout=0.1):
        """recv_batch() as a list of (frame bytes, reply address) ([] when nothing arrived)."""
        batch = self.recv_batch(timeout)
        return batch.items() if batch is not None else []

    def send(self, frame, addr=None):
        """Send one frame (COBS-framed on stream links) to `addr` (datagram links: the device's
        reply address). Raises LinkClosed (closed, or the port is gone: it is reopened by
        recv_batch), LinkTimeout (the write timed out) or LinkError (the write failed); every
        failure is counted in send_failures."""
        data = frame if self.datagram else cobs.encode(frame)
        with self._wlock:
            if not self.is_open:
                self.counters["send_failures"] += 1
                raise LinkClosed("link %s is %s" % (self.local_url, "reopening (its port is gone)"
                                                    if self.wanted else "closed"))
            try:
                self._write(data, addr)
            except (OSError, LinkTimeout) as e:
                self.counters["send_failures"] += 1
                self.last_error = "%s: %s" % (type(e).__name__, e)
                if not self.datagram:
                    self._lost(e)            # a stream is reopened: the next frame starts clean
                if isinstance(e, LinkTimeout):
                    raise
                raise LinkError("link %s: send failed: %s" % (self.local_url, e)) from None
        self.counters["frames_out"] += 1
        self.counters["bytes_out"] += len(data)
        return True

    def stats(self):
        d = dict(self.counters)
        d.update(url=self.local_url, open=self.is_open, last_error=self.last_error)
        return d

    def __repr__(self):
        return "<%s %s %s>" % (type(self).__name__, self.local_url,
                               "open" if self.is_open else "closed")
