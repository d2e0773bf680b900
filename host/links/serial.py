"""Serial link: pyserial's `serial_for_url` (device paths, pty paths, socket://, loop://,
rfc2217://); COBS framing with 0x00 delimiters (shared/cobs.py).

Query options after `?` in a pyserial URL are passed through; `baudrate` defaults to 115200
(ignored by USB CDC and ptys). When the port disappears (board unplugged: pyserial raises
SerialException, an OSError), the base class closes it and reopens the same path with
backoff, so the board is picked up again when it is plugged back.
"""
import errno

import serial

from becomingone.errors import LinkTimeout
from becomingone.links.base import Link

__all__ = ["SerialLink"]

WRITE_TIMEOUT_S = 1.0


class SerialLink(Link):
    """A serial port by pyserial URL (a device path, serial:PATH, socket://, loop://,
    rfc2217://): COBS frames delimited by 0x00. Raises LinkError from open() when the port
    cannot be opened, LinkTimeout from send() when a write takes over WRITE_TIMEOUT_S."""

    scheme = "serial"
    datagram = False

    def __init__(self, url, *, baudrate=115200, **kw):
        super().__init__(url, **kw)
        self.port = url[len("serial:"):] if url.startswith("serial:") and "://" not in url else url
        self.baudrate = baudrate
        self.ser = None

    def _open(self):
        try:
            self.ser = serial.serial_for_url(self.port, baudrate=self.baudrate, timeout=0.1,
                                             write_timeout=WRITE_TIMEOUT_S, exclusive=None)
        except TypeError:
            self.ser = serial.serial_for_url(self.port, baudrate=self.baudrate, timeout=0.1,
                                             write_timeout=WRITE_TIMEOUT_S)
        except ValueError as e:      # pyserial: bad URL / option
            raise OSError("cannot open %s: %s" % (self.port, e)) from None

    def _close(self):
        if self.ser is not None:
            try:
                self.ser.close()
            finally:
                self.ser = None

    def _read(self, timeout):
        s = self.ser
        if s is None:
            raise OSError(errno.EBADF, "the port is closed")
        try:
            s.timeout = timeout
            first = s.read(1)
            if not first:
                return b""
            n = s.in_waiting
            return first + s.read(n) if n else first
        except (TypeError, AttributeError):
            # pyserial's read of a port that close() (another thread) closed meanwhile: its fd
            # is None by then (TypeError in select/os.read), not an OSError
            if self.ser is not s or not s.is_open:
                raise OSError(errno.EBADF, "the port was closed during the read") from None
            raise

    def _write(self, data, addr):
        try:
            self.ser.write(data)
        except serial.SerialTimeoutException:
            raise LinkTimeout("link %s: a write took over %g s" % (self.url, WRITE_TIMEOUT_S)) from None
