"""UDP listener link: `udp://HOST:PORT` (PORT 0 picks a free port; see `local_url`).

One frame per datagram. `recv()` waits up to the timeout for the first datagram, then drains
what the socket already holds (up to `max_batch` datagrams, recvmmsg-like) so that the
ingest path decodes in batches. Replies go to the address given with send() (the source
address of the device's datagrams). The receive buffer is raised to `rcvbuf` bytes
(the kernel may cap it at net.core.rmem_max).
"""
import select
import socket

from host.errors import UserError
from host.links.base import Link

__all__ = ["UdpLink", "parse_udp_url"]


def parse_udp_url(url):
    rest = url.split("://", 1)[1]
    host, sep, port = rest.rpartition(":")
    if not sep or not host:
        raise UserError("bad UDP link URL %r (allowed: udp://HOST:PORT, e.g. udp://0.0.0.0:18790)"
                        % (url,))
    host = host.strip("[]")
    try:
        port = int(port.rstrip("/"))
    except ValueError:
        raise UserError("bad port in %r (allowed: 0..65535)" % (url,)) from None
    if not 0 <= port <= 65535:
        raise UserError("bad port in %r (allowed: 0..65535)" % (url,))
    return host, port


class UdpLink(Link):
    scheme = "udp"
    datagram = True

    def __init__(self, url, *, max_batch=4096, rcvbuf=8 << 20, **kw):
        super().__init__(url, **kw)
        self.host, self.port = parse_udp_url(url)
        self.max_batch = max_batch
        self.rcvbuf = rcvbuf
        self.sock = None
        self._bound = None

    @property
    def local_url(self):
        if self._bound:
            h, p = self._bound[:2]
            return "udp://%s:%d" % ("[%s]" % h if ":" in h else h, p)
        return self.url

    def _open(self):
        fam = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_DGRAM)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        except OSError:
            pass
        try:
            s.bind((self.host, self.port))
        except OSError as e:
            s.close()
            raise OSError(e.errno, "cannot listen on %s: %s" % (self.url, e.strerror)) from None
        s.setblocking(False)
        self.sock = s
        self._bound = s.getsockname()
        if self.port == 0:       # keep the same port when reopened
            self.port = self._bound[1]

    def _close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def fileno(self):
        return self.sock.fileno()

    def _read(self, timeout):
        s = self.sock
        out = []
        recv = s.recvfrom
        app = out.append
        try:
            for _ in range(self.max_batch):
                app(recv(2048))
        except BlockingIOError:
            pass
        if out or not timeout:
            return out
        r, _, _ = select.select([s], [], [], timeout)
        if not r:
            return out
        try:
            for _ in range(self.max_batch):
                app(recv(2048))
        except BlockingIOError:
            pass
        return out

    def _write(self, data, addr):
        if addr is None:
            raise OSError("UDP send needs a destination address")
        self.sock.sendto(data, addr)
