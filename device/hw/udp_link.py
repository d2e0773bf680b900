"""One frame per UDP datagram (pico_w, emulation); see device/hw/links.py. Datagrams from any
address but the host's (the one frames are sent to) are dropped and counted in rx_dropped
(HEARTBEAT rx_cobs: link-level drops)."""
from device.hw.links import _poller, _readable


class UdpLink:
    name = "udp"
    cobs = False

    def __init__(self, host, port, local_port=0):
        import socket
        if not 0 < port < 65536:
            raise ValueError("UDP port must be 1..65535, got %r" % (port,))
        self.addr = socket.getaddrinfo(host, port, 0, socket.SOCK_DGRAM)[0][-1]
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        if local_port:
            self.sock.bind(socket.getaddrinfo("0.0.0.0", local_port)[0][-1])
        self.sock.setblocking(False)
        self._poll = _poller(self.sock)
        self.tx_frames = self.tx_bytes = self.rx_frames = self.rx_bytes = 0
        self.send_errors = self.rx_dropped = 0

    def send(self, data):
        try:
            self.sock.sendto(data, self.addr)
        except OSError:
            self.send_errors += 1
            return
        self.tx_frames = (self.tx_frames + 1) & 0x3FFFFFFF
        self.tx_bytes = (self.tx_bytes + len(data)) & 0x3FFFFFFF

    def recv(self):
        if not _readable(self._poll):
            return None
        try:
            data, src = self.sock.recvfrom(512)
        except OSError:
            return None
        if src != self.addr:          # only the host we send to may talk to us
            self.rx_dropped = (self.rx_dropped + 1) & 0x3FFFFFFF
            return None
        if not data:
            return None
        self.rx_frames = (self.rx_frames + 1) & 0x3FFFFFFF
        self.rx_bytes = (self.rx_bytes + len(data)) & 0x3FFFFFFF
        return data

    def close(self):
        self.sock.close()


