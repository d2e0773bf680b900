"""Links between the device and its host.  Each link sends whole frames and hands back whole
received frames; framing is the link's job (COBS over byte streams, one frame per UDP datagram).

API (every link):
  cobs           True if the link is a byte stream: the encoder must hand it COBS-framed
                 frames (shared.frame_encoder.Encoder(cobs=True) returns 0x00|COBS|0x00)
  send(data)     write one encoded frame (exact-length bytes-like); never raises (errors are
                 counted in ``send_errors``)
  recv()         one received frame (bytes), or None; never blocks, never raises
  close()
Counters: tx_frames, tx_bytes, rx_frames, rx_bytes (modulo 2^30: small ints on a Pico), send_errors,
rx_dropped.

Sending allocates nothing: the encoder's preallocated, exact-length buffers are written as they
are.  Receiving allocates (only when bytes arrive).

- ``NullLink``: headless (``--link none``).  The others live in device/hw/stream_links.py and
  device/hw/udp_link.py and are imported only when used (heap).
- ``StreamLink(rd, wr)``: COBS frames on a byte stream.  ``stdio_link()`` builds it on the
  binary stdin/stdout (USB CDC on the Pico: ``micropython.kbd_intr(-1)`` first, so a 0x03 byte in
  a frame is data, not Ctrl-C); ``uart_link(uart)`` on a ``machine.UART``; ``pty_link(path)`` on a
  pseudo-terminal (emulation).
- ``UdpLink(host, port)``: one frame per datagram to the host, from an ephemeral local port
  (pico_w after Wi-Fi is up; emulation on this machine).
"""
def _poller(obj):
    import select
    p = select.poll()
    p.register(obj, select.POLLIN)
    return p


def _readable(p):
    for _ in p.ipoll(0) if hasattr(p, "ipoll") else p.poll(0):
        return True
    return False


class NullLink:
    name = "none"
    cobs = False

    def __init__(self):
        self.tx_frames = self.tx_bytes = self.rx_frames = self.rx_bytes = 0
        self.send_errors = self.rx_dropped = 0

    def send(self, data):
        self.tx_frames = (self.tx_frames + 1) & 0x3FFFFFFF
        self.tx_bytes = (self.tx_bytes + len(data)) & 0x3FFFFFFF

    def recv(self):
        return None

    def close(self):
        pass


def open_link(spec):
    """Build a link from a --link value: none | serial | uart:ID[:BAUD] | udp://HOST:PORT | PATH."""
    if spec == "none":
        return NullLink()
    if spec == "serial" or spec == "stdio":
        from device.hw.stream_links import stdio_link
        return stdio_link()
    if spec.startswith("udp://"):
        hp = spec[6:]
        i = hp.rfind(":")
        if i <= 0:
            raise ValueError("--link udp://HOST:PORT needs a port, got %r" % (spec,))
        try:
            port = int(hp[i + 1:])
        except ValueError:
            raise ValueError("--link udp://HOST:PORT: bad port in %r" % (spec,))
        from device.hw.udp_link import UdpLink
        return UdpLink(hp[:i], port)
    if spec.startswith("uart:"):
        import machine
        from device.hw.stream_links import uart_link
        parts = spec.split(":")
        baud = int(parts[2]) if len(parts) > 2 else 115200
        return uart_link(machine.UART(int(parts[1]), baudrate=baud, txbuf=512))
    if spec.startswith("/"):
        from device.hw.stream_links import pty_link
        return pty_link(spec)
    raise ValueError("unknown --link %r (allowed: none, serial, uart:ID[:BAUD], udp://HOST:PORT,"
                     " or a pty path)" % (spec,))
