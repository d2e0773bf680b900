"""Frames from the host to a device: encoded for the device's current boot and sent over the
link its last frame came on."""
import time

from becomingone.devices.config import to_pairs
from becomingone.errors import LinkError
from becomingone.util.times import monotonic_us
from shared import protocol as P

__all__ = ["FrameSender"]

HOST_DEVICE_ID = 0                # device_id of every host frame (docs/PROTOCOL.md)
_TIME_MASK = (1 << 46) - 1        # host frame time: era (8 bits) and offset (30 bits) of µs


class FrameSender:
    """Sends host frames (device_id 0, the session's boot id, the host's seq for that session,
    an AUTH tag when the device has a key) over a session's link, to its reply address. Counts
    frames_sent, send_failures, time_sync_sent, hello_requests in `counts`; a link error is
    counted and never raised (the device's next frame brings the link back). auth_for(device)
    -> shared.auth.Auth or None (the admission's keys, which a keys reload replaces)."""

    def __init__(self, auth_for, counts):
        self.auth_for = auth_for
        self.counts = counts
        self._t0_us = monotonic_us()

    def send(self, session, mtype, fields, boot_id=None):
        """True when the frame left; False (counted) without a link or when the link failed."""
        if session.link is None:
            return False
        t = (monotonic_us() - self._t0_us) & _TIME_MASK
        frame = P.encode(mtype, fields, HOST_DEVICE_ID,
                         session.boot_id if boot_id is None else boot_id,
                         session.next_host_seq(), t >> 30, t & (P.SEQ_LIMIT - 1),
                         auth=self.auth_for(session.device_id))
        try:
            session.link.send(frame, session.addr)
        except LinkError:
            self.counts["send_failures"] += 1
            return False
        self.counts["frames_sent"] += 1
        return True

    def config(self, session, changes, config_version):
        """CONFIG with `changes` ({key: value}) as this device's config_version."""
        return self.send(session, P.CONFIG, {"config_version": config_version,
                                             "pairs": to_pairs(changes)})

    def time_sync(self, session):
        """A TIME_SYNC request (the device answers with its receive and transmit times)."""
        self.counts["time_sync_sent"] += 1
        return self.send(session, P.TIME_SYNC, {"mode": P.SYNC_REQUEST,
                                                "host_t1_us": monotonic_us(),
                                                "rx_era": 0, "rx_off": 0})

    def request_hello(self, session, every_s=1.0):
        """Ask a device for its HELLO (ours was lost, or this host restarted): any valid frame
        for another boot id makes the device send HELLO again (device/hostframes.py). At most
        once per `every_s` per session."""
        now = time.monotonic()
        if session.hello_requested is not None and now - session.hello_requested < every_s:
            return False
        session.hello_requested = now
        self.counts["hello_requests"] += 1
        return self.send(session, P.TIME_SYNC, {"mode": P.SYNC_REQUEST,
                                                "host_t1_us": monotonic_us(),
                                                "rx_era": 0, "rx_off": 0},
                         boot_id=(session.boot_id + 1) & 0xFFFF)
