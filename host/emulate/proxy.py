"""Link proxies that sit between emulated devices and the host and inject faults.

UdpFaultProxy: one relay per device. The device sends to `device_addr`; the relay forwards
from its own socket to the host, and the host's replies (to that socket) go back to the
device's last source address. Loss, duplication and reordering apply in both directions.

SerialFaultProxy: two pseudo-terminal pairs in raw mode, `device_path` for the firmware and
`host_path` for pyserial on the host; a thread copies bytes between the masters and flips a
random bit of a byte with probability `biterr`.
"""
import collections
import os
import random
import select
import socket
import threading
import time
import tty

from shared.cobs import Deframer

_REORDER_HOLD_S = 0.05  # a held-back datagram is released after this even if nothing follows


class _Direction:
    def __init__(self, name):
        self.name = name
        self.forwarded = 0
        self.dropped = 0
        self.duplicated = 0
        self.reordered = 0
        self.held = None  # (payload, dest, since)

    def stats(self):
        return {"forwarded": self.forwarded, "dropped": self.dropped,
                "duplicated": self.duplicated, "reordered": self.reordered}


class UdpFaultProxy:
    """Relay for one device: device <-> proxy <-> host (UDP), with faults."""

    def __init__(self, host_addr, faults=None, seed=1, bind="127.0.0.1", observer=None):
        self.host_addr = host_addr
        self.observer = observer  # called with each device frame before faults apply
        self.loss = getattr(faults, "loss", 0.0) if faults else 0.0
        self.dup = getattr(faults, "dup", 0.0) if faults else 0.0
        self.reorder = getattr(faults, "reorder", 0.0) if faults else 0.0
        self.rng = random.Random(seed)
        self.dev_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.dev_sock.bind((bind, 0))
        self.host_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.host_sock.bind((bind, 0))
        self.device_addr = self.dev_sock.getsockname()
        self.device_peer = None
        self.captured = collections.deque(maxlen=16)  # recent device frames (for replay tests)
        self.up = _Direction("device->host")
        self.down = _Direction("host->device")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="udp-proxy", daemon=True)
        self.enabled = True  # False: drop everything (simulates a dead link)

    @property
    def url(self):
        return "udp://%s:%d" % self.device_addr

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=2)
        for s in (self.dev_sock, self.host_sock):
            try:
                s.close()
            except OSError:
                pass

    def stats(self):
        return {"up": self.up.stats(), "down": self.down.stats()}

    def _send(self, sock, d, data, dest):
        if dest is None:
            return
        try:
            sock.sendto(data, dest)
            d.forwarded += 1
        except OSError:
            d.dropped += 1

    def _relay(self, sock, d, data, dest):
        if not self.enabled or self.rng.random() < self.loss:
            d.dropped += 1
            return
        copies = 2 if self.rng.random() < self.dup else 1
        if copies == 2:
            d.duplicated += 1
        if d.held is None and self.rng.random() < self.reorder:
            d.held = (data, dest, time.monotonic())
            d.reordered += 1
            return
        for _ in range(copies):
            self._send(sock, d, data, dest)
        if d.held is not None:
            held, hdest, _t = d.held
            d.held = None
            self._send(sock, d, held, hdest)

    def _flush_held(self, sock, d):
        if d.held is not None and time.monotonic() - d.held[2] > _REORDER_HOLD_S:
            held, hdest, _t = d.held
            d.held = None
            self._send(sock, d, held, hdest)

    def _run(self):
        socks = [self.dev_sock, self.host_sock]
        while not self._stop.is_set():
            try:
                r, _w, _x = select.select(socks, [], [], 0.02)
            except (OSError, ValueError):
                return
            for s in r:
                try:
                    data, src = s.recvfrom(65535)
                except OSError:
                    continue
                if s is self.dev_sock:
                    self.device_peer = src
                    self.captured.append(data)
                    if self.observer is not None:
                        self.observer(data)
                    self._relay(self.host_sock, self.up, data, self.host_addr)
                else:
                    self._relay(self.dev_sock, self.down, data, self.device_peer)
            self._flush_held(self.host_sock, self.up)
            self._flush_held(self.dev_sock, self.down)


def _raw_pty():
    master, slave = os.openpty()
    tty.setraw(slave)
    return master, slave, os.ttyname(slave)


class SerialFaultProxy:
    """Two raw pty pairs joined by a byte pump that can flip bits."""

    def __init__(self, biterr=0.0, seed=1, observer=None):
        self.biterr = biterr
        self.observer = observer  # called with each device frame (COBS-decoded) before faults
        self._deframer = None
        if observer is not None:
            self._deframer = Deframer()
        self.rng = random.Random(seed)
        self.dev_master, self._dev_slave, self.device_path = _raw_pty()
        self.host_master, self._host_slave, self.host_path = _raw_pty()
        self.bytes_up = 0
        self.bytes_down = 0
        self.bits_flipped = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="serial-proxy", daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=2)
        for fd in (self.dev_master, self._dev_slave, self.host_master, self._host_slave):
            try:
                os.close(fd)
            except OSError:
                pass

    def stats(self):
        return {"bytes_up": self.bytes_up, "bytes_down": self.bytes_down,
                "bits_flipped": self.bits_flipped}

    def _corrupt(self, data):
        if not self.biterr:
            return data
        b = bytearray(data)
        for i in range(len(b)):
            if self.rng.random() < self.biterr:
                b[i] ^= 1 << self.rng.randrange(8)
                self.bits_flipped += 1
        return bytes(b)

    def _run(self):
        fds = [self.dev_master, self.host_master]
        while not self._stop.is_set():
            try:
                r, _w, _x = select.select(fds, [], [], 0.05)
            except (OSError, ValueError):
                return
            for fd in r:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    # EIO: the other end of the pty has no reader right now (device restarting)
                    time.sleep(0.01)
                    continue
                if not data:
                    continue
                if fd == self.dev_master and self._deframer is not None:
                    for frame in self._deframer.feed(data):
                        self.observer(bytes(frame))
                data = self._corrupt(data)
                dst = self.host_master if fd == self.dev_master else self.dev_master
                try:
                    os.write(dst, data)
                except OSError:
                    continue
                if fd == self.dev_master:
                    self.bytes_up += len(data)
                else:
                    self.bytes_down += len(data)
