"""Link base class: a template method around raw backend I/O.

Public `recv()` / `send()` do the framing, timeouts, reconnection and counting; a backend
implements only `_open()`, `_close()`, `_read(timeout)` and `_write(data, addr)`:
  - datagram backends (`datagram = True`): `_read` returns a list of (payload, addr);
    each payload is one frame.
  - stream backends: `_read` returns bytes (possibly empty); frames are COBS-delimited
    (shared/cobs.py) and `send()` COBS-encodes.
A backend raises OSError (pyserial's SerialException is one) when the port goes away;
the link then closes it and reopens with exponential backoff (0.05 s doubling to
`reopen_max` s) on later `recv()` calls, so an unplugged board is picked up again when it
comes back, without restarting the host.
"""
import threading
import time

from shared import cobs

__all__ = ["Link", "LinkClosed"]


class LinkClosed(Exception):
    """send() on a link whose port is currently gone."""


class Link:
    scheme = "?"
    datagram = False

    def __init__(self, url, *, max_frame=cobs.MAX_FRAME, reopen_min=0.05, reopen_max=2.0):
        self.url = url
        self.max_frame = max_frame
        self.reopen_min = reopen_min
        self.reopen_max = reopen_max
        self.is_open = False
        self.wanted = False
        self._deframer = None if self.datagram else cobs.Deframer(max_frame)
        self._wlock = threading.Lock()
        self._next_try = 0.0
        self._delay = reopen_min
        self.counters = {"frames_in": 0, "frames_out": 0, "bytes_in": 0, "bytes_out": 0,
                         "oversize": 0, "cobs": 0, "opens": 0, "open_failures": 0,
                         "disconnects": 0, "send_failures": 0}
        self.last_error = None

    # -- backend hooks -------------------------------------------------------------
    def _open(self):
        raise NotImplementedError

    def _close(self):
        raise NotImplementedError

    def _read(self, timeout):
        raise NotImplementedError

    def _write(self, data, addr):
        raise NotImplementedError

    # -- public -------------------------------------------------------------------
    @property
    def local_url(self):
        """The URL as opened (e.g. the real port of udp://127.0.0.1:0)."""
        return self.url

    def open(self):
        """Open now; raises OSError when the port cannot be opened (first open only:
        later losses are handled by reconnecting)."""
        self.wanted = True
        self._open()
        self.is_open = True
        self.counters["opens"] += 1
        self._delay = self.reopen_min
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
        self.is_open = True
        self.counters["opens"] += 1
        self._delay = self.reopen_min
        return True

    def recv(self, timeout=0.1):
        """Frames received within `timeout` seconds: a list of (frame_bytes, reply_addr).
        Never raises for a lost port: it returns [] and reconnects on later calls."""
        if not self.is_open:
            if not self.wanted or not self._try_reopen(timeout):
                return []
        try:
            raw = self._read(timeout)
        except OSError as e:
            self._lost(e)
            return []
        c = self.counters
        if self.datagram:
            out = []
            mf = self.max_frame
            for data, addr in raw:
                c["bytes_in"] += len(data)
                if len(data) > mf:
                    c["oversize"] += 1
                else:
                    out.append((data, addr))
            c["frames_in"] += len(out)
            return out
        if not raw:
            return []
        c["bytes_in"] += len(raw)
        d = self._deframer
        frames = d.feed(raw)
        c["cobs"] = d.errors["cobs"]
        c["oversize"] = d.errors["oversize"]
        c["frames_in"] += len(frames)
        return [(f, None) for f in frames]

    def send(self, frame, addr=None):
        """Send one frame (COBS-framed on stream links). Returns False (and counts) when
        the port is gone or the write fails; the link reconnects on its own."""
        data = frame if self.datagram else cobs.encode(frame)
        with self._wlock:
            if not self.is_open:
                self.counters["send_failures"] += 1
                return False
            try:
                self._write(data, addr)
            except OSError as e:
                self.counters["send_failures"] += 1
                self.last_error = "%s: %s" % (type(e).__name__, e)
                if not self.datagram:
                    self._lost(e)
                return False
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
