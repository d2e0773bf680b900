"""UDP listener link: `udp://HOST:PORT` (PORT 0 picks a free port; see `local_url`).

One frame per datagram. A read waits up to the timeout for the first datagram, then drains what
the socket already holds (one recvmmsg call on Linux, else up to `max_batch` recvfrom calls) so
that the ingest path decodes in batches. Replies go to the address given with send() (the source
address of the device's datagrams). The receive buffer is raised to `rcvbuf` bytes (16 MB;
beyond net.core.rmem_max only with CAP_NET_ADMIN, see set_rcvbuf).
"""
import select
import socket

from becomingone.errors import LinkTimeout, UserError
from becomingone.links import mmsg
from becomingone.links.base import Link
from becomingone.links.batch import DatagramBlock, FrameList

__all__ = ["UdpListener", "parse_udp_url", "set_rcvbuf"]


RECV_VLEN = 4096   # datagrams one recvmmsg call drains at most (one read of the link)
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33 if hasattr(socket, "AF_NETLINK") else None)


def set_rcvbuf(sock, nbytes):
    """Ask for an `nbytes` receive buffer: SO_RCVBUFFORCE when the process may exceed
    net.core.rmem_max (CAP_NET_ADMIN), else SO_RCVBUF (capped by the kernel). Returns the size
    the kernel reports. A large buffer rides out scheduling hiccups without loss."""
    if SO_RCVBUFFORCE is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, nbytes)
            return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        except OSError:
            pass
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, nbytes)
    except OSError:
        pass
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)


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


class UdpListener(Link):
    """A UDP listener, `udp://HOST:PORT` (PORT 0 picks a free one; local_url tells which). One
    frame per datagram; a reply goes to the address given to send() (the source address of the
    device's datagrams). On Linux (IPv4) one recvmmsg call drains up to RECV_VLEN datagrams into a
    DatagramBlock; elsewhere up to max_batch recvfrom calls make a FrameList. Raises UserError
    for a bad URL, LinkError from open() when the port cannot be bound."""

    scheme = "udp"
    datagram = True

    def __init__(self, url, *, max_batch=4096, rcvbuf=16 << 20, block=None, **kw):
        super().__init__(url, **kw)
        self.host, self.port = parse_udp_url(url)
        self.max_batch = max_batch
        self.rcvbuf = rcvbuf
        self.sock = None
        self._bound = None
        # recvmmsg (Linux, IPv4): one system call drains up to RECV_VLEN datagrams
        self.recvmmsg = (mmsg.available() and ":" not in self.host) if block is None else block
        self._mr = None

    @property
    def local_url(self):
        if self._bound:
            h, p = self._bound[:2]
            return "udp://%s:%d" % ("[%s]" % h if ":" in h else h, p)
        return self.url

    def _open(self):
        fam = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_DGRAM)
        self.rcvbuf_bytes = set_rcvbuf(s, self.rcvbuf)
        try:
            s.bind((self.host, self.port))
        except OSError as e:
            s.close()
            raise OSError(e.errno, "cannot listen on %s: %s" % (self.url, e.strerror)) from None
        s.setblocking(False)
        self.sock = s
        self._bound = s.getsockname()
        if self.recvmmsg:
            self._mr = mmsg.MmsgReceiver(s, vlen=RECV_VLEN, slot=512)
        if self.port == 0:       # keep the same port when reopened
            self.port = self._bound[1]

    def _close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def fileno(self):
        return self.sock.fileno()

    def _read(self, timeout):
        return self._read_block(timeout) if self.recvmmsg else self._read_list(timeout)

    def _read_list(self, timeout):
        s = self.sock
        out = []
        recv = s.recvfrom
        app = out.append
        try:
            for _ in range(self.max_batch):
                app(recv(2048))
        except BlockingIOError:
            pass
        if not out and timeout:
            r, _, _ = select.select([s], [], [], timeout)
            if r:
                try:
                    for _ in range(self.max_batch):
                        app(recv(2048))
                except BlockingIOError:
                    pass
        return FrameList(out) if out else None

    def _read_block(self, timeout):
        rows, lens, names = self._mr.recv()
        if not len(lens) and timeout:
            r, _, _ = select.select([self.sock], [], [], timeout)
            if r:
                rows, lens, names = self._mr.recv()
        if not len(lens):
            return None
        w = int(lens.max())
        return DatagramBlock(rows[:, :w].copy(), lens, names.copy())   # never a view

    def _write(self, data, addr):
        if addr is None:
            raise OSError("a UDP reply needs the device's address (none known yet)")
        try:
            self.sock.sendto(data, addr)
        except BlockingIOError:
            raise LinkTimeout("link %s: the socket's send buffer is full" % self.local_url) from None
