"""The host half of the session handshake (docs/PROTOCOL.md §4.1, docs/HOST.md "Sessions").

A keyed device's HELLO tagged with its device key K asks for a session: the host keeps a
*pending* handshake (device, boot, the device's nonce, the HELLO) and answers CHALLENGE with a
fresh nonce, tagged with the session key SK = HKDF-SHA256(K, host nonce || device nonce,
label || device || boot). The first frame of that (device, boot) that verifies with SK -- the
device's ACK of the CHALLENGE -- proves the device holds K for this boot now: the session is
established (host/devices/sessions.py `establish`), the previous boot retired, and the stored
HELLO handed on. A replayed HELLO only ever makes a pending handshake that nobody completes,
so it never retires or replaces a live session.

Bounded state: at most `per_device` pending handshakes per device (oldest dropped), `max_total`
in all, each forgotten after `ttl_s`. Session keys live in RAM only: after a host restart a
keyed device's frames verify under no key ("no_session"); the host then asks it for a new
handshake with a frame tagged with K (`request`, at most once per `request_every_s` per device
and `request_rate` per second in all), which makes the device send HELLO again.

    hs = Handshakes(admission, sessions, sender, counts)
    hs.candidates(data) -> [(auth, kind, pending)]  the keys a frame may be tagged with, in the
                                                    order to try (kind "session" | "pending" |
                                                    "device"); [] when a keyed device has none;
                                                    None for a keyless device
    hs.hello(link, addr, frame)        a K-tagged HELLO: pending handshake + CHALLENGE
    hs.complete(pending) -> (session, opened)
    hs.request(link, addr, device_id, boot_id)
    hs.hold(device_id, boot_id, n) -> bool  n frames under K before the proof: held, not refused
    hs.hold_before_hello(device_id, boot_id, n) -> bool  the same before the boot's HELLO
    hs.awaiting_hello(device_id, boot_id) -> bool          frames of that boot held so
    hs.expire(now); hs.summary()

Frames of a boot whose handshake is pending that verify under the device key K (the device's
first beats, sent before the CHALLENGE came back) are not ingested and not rejections either:
they are counted as `frames_awaiting_handshake` (status, the live table). If that handshake
expires or is displaced unproven, they move to the rejections as "no_session" (`reject`).
Frames under K of a boot whose HELLO the host has not seen -- it opened a serial port while the
device was waiting for its CHALLENGE (opening a port discards what was buffered, the HELLO
included), or it restarted before the device's handshake completed -- are held the same way
once the host has asked the device for a handshake (`hold_before_hello`): the boot's HELLO then
starts a pending handshake that takes them over, and without one within `ttl_s` they are
"no_session" (a replayed frame of an old boot ends there).
"""
import collections
import time

from becomingone.wire.handshake import new_nonce
from shared import protocol as P

__all__ = ["Handshakes", "Pending"]

SESSION, PENDING, DEVICE = "session", "pending", "device"


class Pending:
    """One pending handshake: what the HELLO said, where it came from, the host nonce sent
    and the session key the proof must carry."""

    __slots__ = ("device_id", "boot_id", "device_nonce", "host_nonce", "auth", "hello", "link",
                 "addr", "t", "challenges", "early")

    def __init__(self, device_id, boot_id, device_nonce, host_nonce, auth, hello, link, addr, t):
        self.device_id, self.boot_id = device_id, boot_id
        self.device_nonce, self.host_nonce, self.auth = device_nonce, host_nonce, auth
        self.hello, self.link, self.addr, self.t = hello, link, addr, t
        self.challenges = 0
        self.early = 0           # frames under K of this boot held before the proof

    def __repr__(self):
        return "<Pending dev=%d boot=%d key=***>" % (self.device_id, self.boot_id)


class Handshakes:
    """Pending handshakes of keyed devices (module docstring). Ports: admission (device keys:
    has_key, device_auth, session_auth), sessions (establish, current session keys), sender
    (send_to: CHALLENGE and requests), counts (a Counter). Processing thread only; raises
    nothing for bad input."""

    def __init__(self, admission, sessions, sender, counts, per_device=4, max_total=4096,
                 ttl_s=10.0, request_every_s=1.0, request_rate=50.0, reject=None):
        self.admission = admission
        self.sessions = sessions
        self.sender = sender
        self.counts = counts
        self.per_device = per_device
        self.max_total = max_total
        self.ttl_s = ttl_s
        self.request_every_s = request_every_s
        self.request_rate = request_rate
        self.reject = reject         # reject(reason, n): held frames of an unproven handshake
        self.pending = {}            # device_id -> OrderedDict((boot, device nonce) -> Pending)
        self.total = 0
        self._requested = {}         # device_id -> monotonic time of the last request
        self._req_window = [0.0, 0]  # [window start, requests in it]
        # (device_id, boot_id) -> [monotonic time, frames]: held before the boot's HELLO
        self.before_hello = collections.OrderedDict()

    # ------------------------------------------------------------------ keys for a frame
    def candidates(self, data):
        """The keys frame `data` (raw bytes) may be tagged with, in the order to try:
        [(Auth, kind, Pending or None)]; None for a keyless device (decode unsigned)."""
        if len(data) < P.HEADER_LEN:
            return None
        dev = data[2] | (data[3] << 8)
        if not self.admission.has_key(dev):
            return None
        boot = data[4] | (data[5] << 8)
        out = []
        s = self.sessions.current.get(dev)
        if s is not None and s.boot_id == boot and s.auth is not None:
            out.append((s.auth, SESSION, None))
        pend = self.pending.get(dev)
        if pend:
            for (b, _n), p in reversed(pend.items()):
                if b == boot:
                    out.append((p.auth, PENDING, p))
        if data[1] == P.HELLO:
            out.append((self.admission.device_auth(dev), DEVICE, None))
        return out

    # ------------------------------------------------------------------ the handshake
    def hello(self, link, addr, frame, now=None):
        """A HELLO tagged with the device key: keep (or refresh) its pending handshake and send
        the CHALLENGE (again, with the same host nonce, for a HELLO sent again)."""
        now = time.monotonic() if now is None else now
        dev, boot = frame.device_id, frame.boot_id
        dn = frame.fields["nonce"]
        pend = self.pending.setdefault(dev, collections.OrderedDict())
        key = (boot, dn)
        p = pend.get(key)
        if p is None:
            hn = new_nonce()
            auth = self.admission.session_auth(dev, hn, dn, boot)
            if auth is None:                   # the key was removed meanwhile
                return None
            while len(pend) >= self.per_device:
                self._unproven(pend.popitem(last=False)[1])
                self.total -= 1
                self.counts["handshakes_displaced"] += 1
            if self.total >= self.max_total:
                self.expire(now)
                if self.total >= self.max_total:
                    self.counts["handshakes_refused"] += 1
                    return None
            p = Pending(dev, boot, dn, hn, auth, dict(frame.fields), link, addr, now)
            early = self.before_hello.pop((dev, boot), None)
            if early is not None:                # frames of this boot held before its HELLO
                p.early = early[1]
            pend[key] = p
            self.total += 1
            self.counts["handshakes_started"] += 1
        else:
            pend.move_to_end(key)
            p.link, p.addr, p.t = link, addr, now
            p.hello = dict(frame.fields)
        p.challenges += 1
        s = self.sessions.current.get(dev)
        prev = s.host_seq - 1 if s is not None and s.boot_id == boot and s.host_seq else None
        self.sender.send_to(link, addr, P.CHALLENGE, {"nonce": p.host_nonce}, boot, p.auth,
                            prev_seq=prev, session=s if prev is not None else None)
        self.counts["challenges_sent"] += 1
        return p

    def complete(self, p, now=None):
        """The device proved the key of pending handshake `p`: establish its session.
        Returns (session, opened); opened False: the same boot's session, re-keyed."""
        pend = self.pending.get(p.device_id)
        if pend is not None:
            for k in [k for k, v in pend.items() if v.boot_id == p.boot_id]:
                del pend[k]
                self.total -= 1
            if not pend:
                del self.pending[p.device_id]
        s, opened = self.sessions.establish(p.device_id, p.boot_id, p.auth, now)
        s.link, s.addr = p.link, p.addr
        self.counts["handshakes_completed"] += 1
        return s, opened

    def request(self, link, addr, device_id, boot_id, now=None, keyless=False):
        """Ask a keyed device for a (new) handshake: a TIME_SYNC request tagged with its device
        key, for another boot id (the device answers with HELLO). keyless: ask a keyless
        device for its HELLO the same way, unsigned (its boot has no session: "no_hello").
        Rate limited (per device and in all); True if sent."""
        if link is None or (addr is None and getattr(link, "datagram", True)):
            return False                       # a serial link replies on itself (addr None)
        now = time.monotonic() if now is None else now
        last = self._requested.get(device_id)
        if last is not None and now - last < self.request_every_s:
            return False
        w = self._req_window
        if now - w[0] >= 1.0:
            w[0], w[1] = now, 0
        if w[1] >= self.request_rate:
            self.counts["handshake_requests_shed"] += 1
            return False
        auth = self.admission.device_auth(device_id)
        if auth is None and not keyless:
            return False
        w[1] += 1
        self._requested[device_id] = now
        if len(self._requested) > 4 * self.max_total:
            self._requested.clear()
        self.counts["hello_requests" if auth is None else "handshake_requests"] += 1
        return self.sender.send_to(link, addr, P.TIME_SYNC,
                                   {"mode": P.SYNC_REQUEST, "host_t1_us": 0, "rx_era": 0,
                                    "rx_off": 0}, (boot_id + 1) & 0xFFFF or 1, auth)

    def forget(self, device_id):
        """The device's key changed or went away: its pending handshakes are void."""
        pend = self.pending.pop(device_id, None)
        if pend:
            self.total -= len(pend)
            for p in pend.values():
                self._unproven(p)
        for k in [k for k in self.before_hello if k[0] == device_id]:
            self._unheld(self.before_hello.pop(k)[1])

    # ------------------------------------------------------------------ frames before the proof
    def hold(self, device_id, boot_id, n=1):
        """n frames of (device, boot) that verified under the device key K while its handshake
        is pending: counted as awaiting the handshake (True); False when no handshake of that
        boot is pending (the caller refuses them as "no_session")."""
        pend = self.pending.get(device_id)
        if not pend:
            return False
        for (b, _n), p in reversed(pend.items()):
            if b == boot_id:
                p.early += n
                self.counts["frames_awaiting_handshake"] += n
                return True
        return False

    def hold_before_hello(self, device_id, boot_id, n=1, now=None):
        """n frames of (device, boot) that verified under the device key K while no handshake
        of that boot is pending and the host has asked the device for one (`request`): counted
        as awaiting the handshake (True) until the boot's HELLO starts one, which takes them
        over, or `ttl_s` passes ("no_session"). At most `max_total` boots are held; the oldest
        goes first."""
        now = time.monotonic() if now is None else now
        key = (device_id, boot_id)
        e = self.before_hello.get(key)
        if e is None:
            while len(self.before_hello) >= self.max_total:
                self._unheld(self.before_hello.popitem(last=False)[1][1])
            e = self.before_hello[key] = [now, 0]
        e[1] += n
        self.counts["frames_awaiting_handshake"] += n
        return True

    def awaiting_hello(self, device_id, boot_id):
        """True while frames of (device, boot) are held before its HELLO."""
        return (device_id, boot_id) in self.before_hello

    def _unheld(self, n):
        if n:
            self.counts["frames_awaiting_handshake"] -= n
            if self.reject is not None:
                self.reject("no_session", n)

    def _unproven(self, p):
        """A pending handshake ends without its proof: the frames it held are rejections."""
        if p.early:
            self.counts["frames_awaiting_handshake"] -= p.early
            if self.reject is not None:
                self.reject("no_session", p.early)
            p.early = 0

    def expire(self, now=None):
        now = time.monotonic() if now is None else now
        for dev in list(self.pending):
            pend = self.pending[dev]
            for k in [k for k, p in pend.items() if now - p.t > self.ttl_s]:
                self._unproven(pend.pop(k))
                self.total -= 1
                self.counts["handshakes_expired"] += 1
            if not pend:
                del self.pending[dev]
        bh = self.before_hello
        while bh:
            k, e = next(iter(bh.items()))
            if now - e[0] <= self.ttl_s:
                break
            del bh[k]
            self._unheld(e[1])

    def summary(self):
        c = self.counts
        return {"pending": self.total,
                "started": c["handshakes_started"], "completed": c["handshakes_completed"],
                "expired": c["handshakes_expired"], "displaced": c["handshakes_displaced"],
                "refused": c["handshakes_refused"], "requests": c["handshake_requests"]}
