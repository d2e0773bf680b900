"""NATS device link: `nats://HOST:PORT[/PREFIX]` (PREFIX default bo.dev).

Devices' frames reach the coordinator as NATS messages, one frame per message, on
`PREFIX.up.<sender>.<channel>`; the reply address of a frame is `<sender>.<channel>`, and the
coordinator answers on `PREFIX.down.<sender>.<channel>`. A relay (`becomingone relay --to
nats://...`, host/relay/uplink.py) is one sender, each local device one channel of it, so the
coordinator sees each device behind it at an address of its own, exactly as over UDP. The frames
stay the devices' own (tags, sequence and replay checks hold end to end); the server is a
transport, trusted no more than a UDP network. Core NATS (at most once), like a datagram: what
must arrive (WITNESS) is acknowledged by the coordinator and resent by the device or relay.
"""
import queue

from becomingone.errors import UserError
from becomingone.links.base import Link
from becomingone.links.batch import FrameList
from becomingone.links.natsio import NatsIO, parse_nats_url

__all__ = ["NatsLink", "up_subject", "down_subject"]

_DRAIN = 4096          # messages handed on by one read at most


def up_subject(prefix, sender, channel):
    """The subject a sender's channel publishes device frames on."""
    return "%s.up.%s.%s" % (prefix, sender, channel)


def down_subject(prefix, sender, channel):
    """The subject the coordinator answers a sender's channel on."""
    return "%s.down.%s.%s" % (prefix, sender, channel)


class NatsLink(Link):
    """Device frames over a NATS server (module docstring). Raises UserError for a bad URL,
    LinkError from open() when the server cannot be reached (later losses: nats-py reconnects,
    and send() raises LinkError meanwhile)."""

    scheme = "nats"
    datagram = True

    def __init__(self, url, *, connect_timeout=2.0, **kw):
        super().__init__(url, **kw)
        try:
            self.server, self.prefix = parse_nats_url(url)
        except ValueError as e:
            raise UserError(str(e)) from None
        self.connect_timeout = connect_timeout
        self.io = None
        self._q = queue.SimpleQueue()
        self._up = self.prefix + ".up."

    def _open(self):
        io = NatsIO(self.server, name="becomingone-coordinator")
        io.start(self.connect_timeout)                   # OSError when it is not there
        try:
            io.subscribe(self._up + "*.*", self._on_message)
        except OSError:
            io.close()
            raise
        self.io = io

    def _on_message(self, subject, data):
        self._q.put((data, subject[len(self._up):]))

    def _close(self):
        io, self.io = self.io, None
        if io is not None:
            io.close()

    def _read(self, timeout):
        q = self._q
        try:
            first = q.get(timeout=timeout)
        except queue.Empty:
            return None
        items = [first]
        while len(items) < _DRAIN:
            try:
                items.append(q.get_nowait())
            except queue.Empty:
                break
        return FrameList(items)

    def _write(self, data, addr):
        if not isinstance(addr, str) or addr.count(".") != 1:
            raise OSError("no NATS reply address for this frame (got %r)" % (addr,))
        io = self.io
        if io is None:
            raise OSError("the NATS link is closed")
        sender, channel = addr.split(".")
        io.publish(down_subject(self.prefix, sender, channel), data)
