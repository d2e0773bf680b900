"""The relay's uplink to its coordinator over UDP: one socket per local device.

The coordinator keys a session by device id and answers a device at the source address of that
device's last accepted frame (host/devices/sessions.py, host/ingest/pipeline.py). Giving every
local device a UDP socket of its own toward the coordinator (`connect`ed, so only the
coordinator's datagrams reach it) therefore needs nothing from the coordinator: each device
behind the relay is, to it, a device at its own address, its replies come back on that device's
socket and the relay hands them to the device's link unchanged. No envelope, no relay key: the
frames stay the device's, tagged with its session key, so the coordinator's tag, replay-window
and sequence checks hold end to end, and a relay can neither forge nor usefully replay a frame.
"""
import errno
import socket

from becomingone.errors import RelayError, UserError
from becomingone.links.udp import parse_udp_url

__all__ = ["UdpUplink", "parse_uplink", "UPLINK_SCHEMES", "LOST_ERRNOS"]

UPLINK_SCHEMES = ("udp",)
# a send or receive failing with one of these means the coordinator cannot be reached now
LOST_ERRNOS = frozenset(getattr(errno, n) for n in (
    "ECONNREFUSED", "ENETUNREACH", "EHOSTUNREACH", "EHOSTDOWN", "ENETDOWN", "EADDRNOTAVAIL",
    "ECONNRESET") if hasattr(errno, n))


def parse_uplink(url):
    """(host, port) of --to udp://HOST:PORT; UserError naming what is allowed otherwise."""
    if not isinstance(url, str) or "://" not in url:
        raise UserError("--to %r: the coordinator's address must be udp://HOST:PORT (the UDP link "
                        "of its `becomingone run --link udp://0.0.0.0:PORT`)" % (url,))
    scheme = url.split("://", 1)[0].lower()
    if scheme not in UPLINK_SCHEMES:
        raise UserError("--to %r: unknown uplink scheme %r (allowed: %s)"
                        % (url, scheme, ", ".join(s + "://HOST:PORT" for s in UPLINK_SCHEMES)))
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
