"""The relay's uplink to its coordinator, over UDP or NATS: one channel per local device.

The coordinator keys a session by device id and answers a device at the source address of that
device's last accepted frame (host/devices/sessions.py, host/ingest/pipeline.py). Giving every
local device a UDP socket of its own toward the coordinator (`connect`ed, so only the
coordinator's datagrams reach it) therefore needs nothing from the coordinator: each device
behind the relay is, to it, a device at its own address, its replies come back on that device's
socket and the relay hands them to the device's link unchanged. No envelope, no relay key: the
frames stay the device's, tagged with its session key, so the coordinator's tag, replay-window
and sequence checks hold end to end, and a relay can neither forge nor usefully replay a frame.

Over NATS (`--to nats://HOST:PORT[/PREFIX]`, the coordinator running `--link` with the same URL:
host/links/nats.py) each local device is a channel of this relay: its frames go up on
`PREFIX.up.<relay>.<channel>` and the coordinator answers on `PREFIX.down.<relay>.<channel>`, so
again each device has an address of its own there. A NatsChannel has the face of a connected UDP
socket (send, recv, fileno for select) for the relay's loop; while the client is away from the
server (or before it first got there) send() fails with ENETUNREACH, which the relay takes as
the uplink lost, and buffers.
"""
import collections
import errno
import secrets
import socket
import threading
import time

from becomingone.errors import RelayError, UserError
from becomingone.links.udp import parse_udp_url

__all__ = ["UdpUplink", "NatsUplink", "make_uplink", "parse_uplink", "UPLINK_SCHEMES",
           "LOST_ERRNOS"]

UPLINK_SCHEMES = ("udp", "nats")
# a send or receive failing with one of these means the coordinator cannot be reached now
LOST_ERRNOS = frozenset(getattr(errno, n) for n in (
    "ECONNREFUSED", "ENETUNREACH", "EHOSTUNREACH", "EHOSTDOWN", "ENETDOWN", "EADDRNOTAVAIL",
    "ECONNRESET") if hasattr(errno, n))


def _scheme(url):
    if not isinstance(url, str) or "://" not in url:
        raise UserError("--to %r: the coordinator's address must be udp://HOST:PORT (the UDP link "
                        "of its `becomingone run --link udp://0.0.0.0:PORT`) or "
                        "nats://HOST:PORT[/PREFIX] (its NATS link)" % (url,))
    scheme = url.split("://", 1)[0].lower()
    if scheme not in UPLINK_SCHEMES:
        raise UserError("--to %r: unknown uplink scheme %r (allowed: udp://HOST:PORT, "
                        "nats://HOST:PORT[/PREFIX])" % (url, scheme))
    return scheme


def make_uplink(url, bind=""):
    """The uplink for --to `url`: a UdpUplink or a NatsUplink."""
    if _scheme(url) == "nats":
        return NatsUplink(url)
    return UdpUplink(url, bind=bind)


def parse_uplink(url):
    """(host, port) of --to udp://HOST:PORT; UserError naming what is allowed otherwise."""
    if _scheme(url) != "udp":
        raise UserError("--to %r: not a UDP address (udp://HOST:PORT)" % (url,))
    host, port = parse_udp_url(url)
    if port == 0:
        raise UserError("--to %r: the coordinator's port must be 1..65535" % (url,))
    return host, port


class UdpUplink:
    """Opens the per-device sockets toward the coordinator at `url` (udp://HOST:PORT), bound to
    `bind` (an address of this host; "" = any). Raises UserError for a bad URL and RelayError
    when the name does not resolve or a socket cannot be opened."""

    def __init__(self, url, bind=""):
        self.url = url
        self.host, self.port = parse_uplink(url)
        self.bind = bind
        try:
            infos = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_DGRAM)
        except socket.gaierror as e:
            raise RelayError("uplink %s: cannot resolve %s: %s" % (url, self.host, e)) from None
        self.family, _t, _p, _c, self.addr = infos[0]

    connected = True              # UDP: the relay judges the uplink by what comes back
    down_reason = None

    def start(self):
        return self

    def close(self):
        pass

    def open_socket(self):
        """A non-blocking UDP socket connected to the coordinator."""
        try:
            s = socket.socket(self.family, socket.SOCK_DGRAM)
            try:
                if self.bind:
                    s.bind((self.bind, 0))
                s.connect(self.addr)
            except OSError:
                s.close()
                raise
        except OSError as e:
            raise RelayError("uplink %s: cannot open a socket toward it%s: %s"
                             % (self.url, " from %s" % self.bind if self.bind else "",
                                e.strerror or e)) from None
        s.setblocking(False)
        return s


class NatsChannel:
    """One local device's channel to the coordinator over NATS, with the face of a connected,
    non-blocking UDP socket for the relay's select loop: send(), recv() (BlockingIOError when
    nothing is there), fileno() (readable when a message came), getsockname(), close()."""

    def __init__(self, uplink, channel):
        self.uplink, self.channel = uplink, channel
        self._r, self._w = socket.socketpair()
        self._r.setblocking(False)
        self._w.setblocking(False)
        self._q = collections.deque()
        self.subject = uplink.up_subject(channel)

    def fileno(self):
        return self._r.fileno()

    def getsockname(self):
        return (self.uplink.token, self.channel)

    def send(self, data):
        self.uplink.publish(self.subject, data)
        return len(data)

    def deliver(self, data):
        """A message from the coordinator (the NATS loop thread)."""
        self._q.append(data)
        try:
            self._w.send(b"x")
        except OSError:
            pass                  # the wake-up pipe is full: the loop is awake already

    def recv(self, _n=None):
        try:
            while self._r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass
        if not self._q:
            raise BlockingIOError(errno.EAGAIN, "no message")
        return self._q.popleft()

    def close(self):
        self.uplink.forget(self.channel)
        self._r.close()
        self._w.close()


class NatsUplink:
    """The relay's NATS uplink to the coordinator's `nats://HOST:PORT[/PREFIX]` link: one
    client, this relay's random sender token, a NatsChannel per local device. start() connects,
    or keeps trying every second in the background while the relay buffers (a server that is
    down when the relay starts is an uplink lost, not an error). Raises UserError for a bad URL."""

    def __init__(self, url, retry_s=1.0):
        from becomingone.links.natsio import NatsIO, parse_nats_url
        try:
            self.server, self.prefix = parse_nats_url(url, what="uplink")
        except ValueError as e:
            raise UserError("--to %s" % e) from None
        self.url = url
        self.retry_s = retry_s
        self.token = secrets.token_hex(4)
        self.io = NatsIO(self.server, name="becomingone-relay-" + self.token)
        self.channels = {}
        self._next = 0
        self._lock = threading.Lock()
        self._ready = False
        self._stop = threading.Event()
        self._thread = None

    @property
    def connected(self):
        """False while the client is away from the server (or never got there)."""
        return self._ready and self.io.connected

    @property
    def down_reason(self):
        if not self._ready:
            return "not connected to the NATS server %s yet" % self.server
        return "disconnected from the NATS server %s (reconnecting)" % self.server

    def up_subject(self, channel):
        from becomingone.links.nats import up_subject
        return up_subject(self.prefix, self.token, channel)

    def start(self):
        if not self._try_connect():
            self._thread = threading.Thread(target=self._retry, name="relay-nats-connect",
                                            daemon=True)
            self._thread.start()
        return self

    def _try_connect(self):
        from becomingone.links.nats import down_subject
        try:
            self.io.start(timeout=2.0)
        except OSError:
            return False
        try:
            self.io.subscribe(down_subject(self.prefix, self.token, "*"), self._on_message)
        except OSError:
            self.io.close()
            return False
        self._ready = True
        return True

    def _retry(self):
        while not self._stop.wait(self.retry_s):
            if self._try_connect():
                return

    def _on_message(self, subject, data):
        ch = self.channels.get(subject.rpartition(".")[2])
        if ch is not None:
            ch.deliver(data)

    def publish(self, subject, data):
        if not self._ready:
            raise OSError(errno.ENETUNREACH, "not connected to %s yet" % self.server)
        self.io.publish(subject, data)

    def open_socket(self):
        """A NatsChannel for one more local device."""
        with self._lock:
            self._next += 1
            ch = NatsChannel(self, str(self._next))
            self.channels[ch.channel] = ch
        return ch

    def forget(self, channel):
        self.channels.pop(channel, None)

    def close(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(3.0)
        if self._ready:
            self.io.close()
