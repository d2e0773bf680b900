"""Frames from the host to a device: encoded for the device's current boot and sent over the
link its last frame came on."""
import time

from becomingone.devices.config import to_pairs
from becomingone.devices.sessions import host_seq_after
from becomingone.errors import LinkError
from becomingone.util.times import monotonic_us
from shared import protocol as P

__all__ = ["FrameSender"]

HOST_DEVICE_ID = 0                # device_id of every host frame (docs/PROTOCOL.md)
_TIME_MASK = (1 << 46) - 1        # host frame time: era (8 bits) and offset (30 bits) of µs


class FrameSender:
    """Sends host frames (device_id 0, the session's boot id, the host's seq for that session)
    over a session's link, to its reply address. A keyed device's frames are tagged with its
    session key (docs/PROTOCOL.md §4.1): without an established session nothing is sent
    (counted `send_no_session`). Counts frames_sent, send_failures, time_sync_sent,
    hello_requests in `counts`; a link error is counted and never raised (the device's next
    frame brings the link back). keyed(device_id) -> bool (the admission's keystore)."""

    def __init__(self, keyed, counts):
        self.keyed = keyed
        self.counts = counts
        self._t0_us = monotonic_us()

    def send(self, session, mtype, fields, boot_id=None):
        """True when the frame left; False (counted) without a link or session key, or when
        the link failed."""
        if session.link is None:
            return False
        auth = None
        if self.keyed(session.device_id):
            auth = session.auth
            if auth is None:
                self.counts["send_no_session"] += 1
                return False
        seq = session.next_host_seq()
        return self._send(session.link, session.addr, mtype, fields,
                          session.boot_id if boot_id is None else boot_id, seq, auth)

    def send_to(self, link, addr, mtype, fields, boot_id, auth, prev_seq=None, session=None):
        """A frame outside an established session (the handshake: CHALLENGE, a request for
        HELLO) to `addr` on `link`, tagged with `auth`; seq from the clock (host_seq_after),
        or the session's next one when `session` is given."""
        if link is None:
            return False
        seq = session.next_host_seq() if session is not None else host_seq_after(prev_seq)
        return self._send(link, addr, mtype, fields, boot_id, seq, auth)

    def _send(self, link, addr, mtype, fields, boot_id, seq, auth):
        t = (monotonic_us() - self._t0_us) & _TIME_MASK
        frame = P.encode(mtype, fields, HOST_DEVICE_ID, boot_id, seq, t >> 30,
                         t & (P.SEQ_LIMIT - 1), auth=auth)
        try:
            link.send(frame, addr)
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
