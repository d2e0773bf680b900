"""systemd's notify protocol (sd_notify(3)), without libsystemd: datagrams to $NOTIFY_SOCKET.

    n = SdNotify.from_env()            # None when not started by systemd with Type=notify
    n.notify("READY=1", "STATUS=serving")
    n.tick(now)                        # from the coordinator's processing loop: WATCHDOG=1
                                       # every WatchdogSec/2 (only while that loop runs)
    n.close()                          # STOPPING=1

The watchdog ping is sent from the processing thread's tick, so a wedged processing loop stops
the pings and systemd restarts the service (WatchdogSec= in deploy/systemd/becomingone.service).
"""
import os
import socket
import time

__all__ = ["SdNotify"]


class SdNotify:
    """One notify socket; raises nothing (a lost datagram is counted in `errors`)."""

    def __init__(self, address, watchdog_usec=None):
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.interval = watchdog_usec / 2e6 if watchdog_usec else None
        self._next = 0.0
        self.sent = 0
        self.errors = 0

    @classmethod
    def from_env(cls, environ=None):
        env = os.environ if environ is None else environ
        addr = env.get("NOTIFY_SOCKET")
        if not addr:
            return None
        usec = env.get("WATCHDOG_USEC")
        pid = env.get("WATCHDOG_PID")
        wd = int(usec) if usec and usec.isdigit() and (not pid or pid == str(os.getpid())) else None
        return cls(addr, wd)

    def notify(self, *lines):
        try:
            self.sock.sendto("\n".join(lines).encode(), self.address)
            self.sent += 1
            return True
        except OSError:
            self.errors += 1
            return False

    def tick(self, now=None):
        if self.interval is None:
            return
        t = time.monotonic()
        if t >= self._next:
            self._next = t + self.interval
            self.notify("WATCHDOG=1")

    def status(self):
        return {"watchdog_interval_s": self.interval, "sent": self.sent, "errors": self.errors}

    def close(self):
        self.notify("STOPPING=1")
        self.sock.close()
