"""UDP listener link: `udp://HOST:PORT` (PORT 0 picks a free port; see `local_url`).

One frame per datagram. `recv()` waits up to the timeout for the first datagram, then drains
what the socket already holds (up to `max_batch` datagrams, recvmmsg-like) so that the
ingest path decodes in batches. Replies go to the address given with send() (the source
address of the device's datagrams). The receive buffer is raised to `rcvbuf` bytes (16 MB;
beyond net.core.rmem_max only with CAP_NET_ADMIN, see set_rcvbuf).
"""
import select
import socket

import numpy as np

from becomingone.errors import UserError
from becomingone.links import mmsg
from becomingone.links.base import Link

__all__ = ["UdpLink", "DatagramBlock", "parse_udp_url", "set_rcvbuf"]


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


class DatagramBlock:
    """Datagrams drained by one recvmmsg call: data (n, width) uint8 rows (row i holds
    lens[i] bytes), names (n, 16) raw sockaddr_in of the senders."""

    __slots__ = ("data", "lens", "names")

    def __init__(self, data, lens, names):
        self.data, self.lens, self.names = data, lens, names

    def __len__(self):
        return len(self.lens)

    def merge(self, other):
        """A new block: this one's datagrams, then other's."""
        a, b = self.data, other.data
        w = max(a.shape[1], b.shape[1])
        if a.shape[1] != w:
            a = np.pad(a, ((0, 0), (0, w - a.shape[1])))
        if b.shape[1] != w:
            b = np.pad(b, ((0, 0), (0, w - b.shape[1])))
        return DatagramBlock(np.concatenate((a, b)), np.concatenate((self.lens, other.lens)),
                             np.concatenate((self.names, other.names)))

    @staticmethod
    def addr(name):
        return socket.inet_ntoa(bytes(name[4:8])), (int(name[2]) << 8) | int(name[3])

    def items(self, idx=None):
        """[(frame bytes, (host, port)), ...] for rows idx (default: all)."""
        rng = range(len(self.lens)) if idx is None else idx
        d, ln, nm = self.data, self.lens, self.names
        return [(d[i, :ln[i]].tobytes(), self.addr(nm[i])) for i in rng]


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

    def __init__(self, url, *, max_batch=4096, rcvbuf=16 << 20, block=None, **kw):
        super().__init__(url, **kw)
        self.host, self.port = parse_udp_url(url)
        self.max_batch = max_batch
        self.rcvbuf = rcvbuf
        self.sock = None
        self._bound = None
        # recvmmsg block mode (Linux, IPv4): one system call drains up to 1024 datagrams
        self.block_mode = (mmsg.available() and ":" not in self.host) if block is None else block
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
        set_rcvbuf(s, self.rcvbuf)
        try:
            s.bind((self.host, self.port))
        except OSError as e:
            s.close()
            raise OSError(e.errno, "cannot listen on %s: %s" % (self.url, e.strerror)) from None
        s.setblocking(False)
        self.sock = s
        self._bound = s.getsockname()
        if self.block_mode:
            self._mr = mmsg.MmsgReceiver(s, vlen=1024, slot=512)
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

    def recv_block(self, timeout=0.1):
        """Block mode: a DatagramBlock of what arrived within `timeout` (None when nothing),
        oversize datagrams dropped and counted. Falls back to recv() when not in block mode."""
        if not self.block_mode:
            raise RuntimeError("recv_block needs block mode (Linux recvmmsg, IPv4)")
        if not self.is_open:
            if not self.wanted or not self._try_reopen(timeout):
                return None
        try:
            rows, lens, names = self._mr.recv()
            if not len(lens) and timeout:
                r, _, _ = select.select([self.sock], [], [], timeout)
                if r:
                    rows, lens, names = self._mr.recv()
        except OSError as e:
            self._lost(e)
            return None
        n = len(lens)
        if not n:
            return None
        c = self.counters
        c["bytes_in"] += int(lens.sum())
        big = lens > self.max_frame
        if big.any():
            c["oversize"] += int(big.sum())
            keep = ~big
            rows, lens, names = rows[keep], lens[keep], names[keep]
            n = len(lens)
            if not n:
                return None
        w = int(lens.max())
        c["frames_in"] += n
        return DatagramBlock(rows[:, :w].copy(), lens, names.copy())   # never a view

    def _write(self, data, addr):
        if addr is None:
            raise OSError("UDP send needs a destination address")
        self.sock.sendto(data, addr)
