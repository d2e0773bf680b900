"""Links between the host and its devices, chosen by URL (in the pySerial / python-can style).

    udp://HOST:PORT           UDP listener; one frame per datagram; replies go to the source
                              address of the datagram that carried the device's last frame
    nats://HOST:PORT[/PREFIX] frames as NATS messages on PREFIX.up.<sender>.<channel>, replies
                              on PREFIX.down.<sender>.<channel> (a relay's uplink; nats extra)
    /dev/ttyACM0, /dev/pts/N  serial port (pyserial), COBS framing with 0x00 delimiters
    socket://HOST:PORT        pyserial's raw TCP "serial port" (COBS framing)
    loop://                   pyserial's loopback (tests)
    serial:PATH               explicit form of a serial path

The scheme -> class registry is lazy (module imported on first use); `register_scheme()`
adds a backend. `open_link(url)` returns an opened Link. Every backend is a Link
(links/base.py: one receive path, recv_batch, a template method around the backend's hooks)
and hands on FrameBatches (links/batch.py); tests/contract/test_link_contract.py holds them all
to the same contract.
"""
import importlib

from becomingone.errors import UserError

__all__ = ["SCHEMES", "register_scheme", "link_class", "open_link", "make_link"]

# scheme -> "module:Class"; anything without a registered scheme is a pyserial URL or path.
SCHEMES = {
    "udp": "becomingone.links.udp:UdpListener",
    "serial": "becomingone.links.serial:SerialLink",
    "nats": "becomingone.links.nats:NatsLink",
}
_SERIAL_URL_SCHEMES = ("socket", "loop", "rfc2217", "spy", "hwgrep", "alt", "cp2110")


def register_scheme(scheme, target):
    """target: "package.module:ClassName" (imported lazily)."""
    if ":" not in target:
        raise ValueError("link backend must be 'module:Class', got %r" % (target,))
    SCHEMES[scheme] = target


def _scheme(url):
    if not isinstance(url, str) or not url:
        raise UserError("link URL must be a non-empty string (got %r)" % (url,))
    if "://" in url:
        s = url.split("://", 1)[0].lower()
        if s in SCHEMES:
            return s
        if s in _SERIAL_URL_SCHEMES:
            return "serial"
        raise UserError("unknown link scheme %r in %r (allowed: udp://HOST:PORT, "
                        "nats://HOST:PORT[/PREFIX], a serial device path, serial:PATH, or a "
                        "pyserial URL: %s)"
                        % (s, url, ", ".join(x + "://" for x in _SERIAL_URL_SCHEMES)))
    if url.startswith("serial:"):
        return "serial"
    if url.startswith("/") or url.startswith("COM") or url.startswith("./"):
        return "serial"
    raise UserError("cannot tell the link type of %r (allowed: udp://HOST:PORT, a serial "
                    "device path such as /dev/ttyACM0, serial:PATH, socket://HOST:PORT, loop://)"
                    % (url,))


def link_class(url):
    target = SCHEMES[_scheme(url)]
    mod, cls = target.split(":")
    return getattr(importlib.import_module(mod), cls)


def make_link(url, **opts):
    """A Link for url, not yet opened."""
    return link_class(url)(url, **opts)


def open_link(url, **opts):
    link = make_link(url, **opts)
    link.open()
    return link
