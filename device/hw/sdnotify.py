"""systemd's service protocol for the CPython boards (a Pi Zero): ``sd_notify`` without
libsystemd (one datagram to ``$NOTIFY_SOCKET``).

The pizero's unit (tools/deploy/pizero.py) is ``Type=notify`` with ``WatchdogSec=``: the device
says READY=1 once its beat is built, then WATCHDOG=1 from the beat's watchdog feed, at most every
``WATCHDOG_USEC / 2`` (systemd's advice).  A beat that hangs stops the pings and systemd kills
and restarts the service; its ``ExecStopPost`` writes ``reset-cause`` = watchdog into the state
directory, so the next boot reports WATCHDOG and starts in QUARANTINE (device/latch.py).
Sending never blocks (a non-blocking socket; errors are counted)."""
import os

from device.clock import tdiff
from device.hw.outputs import SoftWatchdog


class SdNotify:
    def __init__(self, addr=None):
        import socket
        addr = addr or os.environ.get("NOTIFY_SOCKET", "")
        if not addr:
            raise ValueError("NOTIFY_SOCKET is not set")
        if addr.startswith("@"):
            addr = "\0" + addr[1:]            # abstract socket namespace
        self.addr = addr
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sent = 0
        self.errors = 0

    def send(self, msg):
        try:
            self.sock.sendto(msg.encode() if isinstance(msg, str) else msg, self.addr)
            self.sent += 1
            return True
        except OSError:
            self.errors += 1
            return False


def watchdog_interval_us():
    """systemd's WATCHDOG_USEC (when it is meant for this process), else 0."""
    pid = os.environ.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return 0
    try:
        return int(os.environ.get("WATCHDOG_USEC", "0"))
    except ValueError:
        return 0


class SystemdWatchdog(SoftWatchdog):
    """SoftWatchdog (feed gaps measured) that also pings systemd's service watchdog."""

    def __init__(self, clock, notify, interval_us=None):
        SoftWatchdog.__init__(self, clock)
        self.notify = notify
        iv = watchdog_interval_us() if interval_us is None else interval_us
        self.every_us = max(1000, iv // 2) if iv else 1000000
        self._last_ping = None
        self.pings = 0

    def feed(self):
        SoftWatchdog.feed(self)
        now = self.clock.ticks()
        if self._last_ping is None or tdiff(now, self._last_ping) >= self.every_us:
            self._last_ping = now
            if self.notify.send("WATCHDOG=1"):
                self.pings += 1


def attach(beat):
    """READY=1 now (the beat is built), WATCHDOG=1 from the beat's watchdog feed from now on."""
    try:
        n = SdNotify()
    except (ValueError, OSError):
        return None
    beat.hw.watchdog = SystemdWatchdog(beat.clock, n)
    lt = beat.latch
    n.send("READY=1\nSTATUS=beat running (device %d, reset cause %s%s)"
           % (beat.enc.device_id, lt.report()["reset_cause"] if lt is not None else "unknown",
              ", QUARANTINE restored" if beat.quarantined else ""))
    return n
