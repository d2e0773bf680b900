"""A keyless device under the default admission (observe) whose HELLO is lost still gets its
session: its boot is opened only by a HELLO (docs/HOST.md "Admission": well-formed junk opens no
phantom device), so the host refuses its TELEMETRY as `no_hello` and asks it for a HELLO, and
the firmware (MicroPython unix port, a real process) sends it again. A UDP proxy between the
two drops the device's first datagram (its HELLO)."""
import socket
import subprocess
import threading

from tests.test_attacks import Coord, _mpy, wait, ROOT


class _DropFirst(threading.Thread):
    """UDP proxy: device <-> proxy <-> host; drops the device's first datagram."""

    def __init__(self, host_addr):
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.up.bind(("127.0.0.1", 0))
        self.up.settimeout(0.1)
        self.host_addr, self.dev_addr = host_addr, None
        self.dropped = 0
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                data, src = self.sock.recvfrom(2048)
                self.dev_addr = src
                if self.dropped == 0:
                    self.dropped = 1
                else:
                    self.up.sendto(data, self.host_addr)
            except socket.timeout:
                pass
            try:
                while True:
                    data = self.up.recv(2048)
                    if self.dev_addr:
                        self.sock.sendto(data, self.dev_addr)
            except socket.timeout:
                pass


def test_lost_hello_recovered_for_an_observed_keyless_device(tmp_path, firmware_main):
    c = Coord(tmp_path).start()                  # default admission: observe
    proxy = _DropFirst(c.addr)
    proxy.start()
    dev = subprocess.Popen(
        [_mpy(), "-X", "heapsize=192K", firmware_main, "--board", "emulator", "--beats", "0",
         "--link", "udp://127.0.0.1:%d" % proxy.sock.getsockname()[1], "--device-id", "51",
         "--pow-bits", "0", "--quiet"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        ok = wait(lambda: ((c.session(51) or {}).get("hello") is not None), 15.0)
        st = c.status()
        assert proxy.dropped == 1
        assert ok, ("the device whose HELLO was lost got no session: rejected %r, counters %r"
                    % (st["frames_rejected"], {k: v for k, v in st["counters"].items()
                                              if "hello" in k}))
        assert st["frames_rejected"].get("no_hello", 0) >= 1, st["frames_rejected"]
        assert st["counters"].get("hello_requests", 0) >= 1
        assert st["devices_seen"] == 1
    finally:
        dev.kill()                                # by PID: the process we started
        dev.wait(10)
        proxy.stop.set()
        proxy.join(5)
        c.stop()
