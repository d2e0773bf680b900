"""The device half of the session handshake (docs/PROTOCOL.md section 4.1). Loaded only on a
keyed device (device/runner.py); its frames are signed with a per-session key that lives in
RAM only, derived with shared/hkdf.py when a handshake completes.

1. The device picks a 16-byte nonce and sends HELLO carrying it, tagged with its device key K
   (resent every second while the handshake is pending).
2. The host answers CHALLENGE (its own nonce), tagged with the session key
   SK = HKDF-SHA256(K, host nonce || device nonce, label || device_id || boot_id).
3. The device derives SK, checks the CHALLENGE's tag with it (so it came from a host that holds K
   and saw this nonce), signs every later frame with SK and answers ACK(CHALLENGE) under SK,
   which proves to the host that it holds K for this boot.

Until then the beat runs on (QUARANTINE stays latched): its frames keep the key they had (K at
boot: the host does not take them; the previous SK during a new handshake). A host frame tagged
with K instead of SK means the host lost the session (it restarted): a new handshake starts, at
most one HELLO a second. An epoch roll (new boot id) starts one too. Allocation happens here
only (a handshake), never in the beat.
"""
import os

from shared import protocol_codes as P
from shared import wire_format as W
from shared.auth import Auth, TAG_LEN, hmac_sha256
from shared.wire_check import check_frame
from shared.wire_errors import ProtocolError

from device.clock import tdiff


class Handshake:
    """Handshake state of one keyed device: the device key (to tag HELLOs asking for a session
    and to check host frames that ask for a new one; it duck-types shared.auth.Auth for the
    decoder and the encoder), the current nonce, pending or not, counters."""

    def __init__(self, key, auth=None):
        self.key = key
        # the device key as a shared.auth.Auth (allocation-free tags on MicroPython: a HELLO
        # is resent every second while no host answers); None: hmac_sha256
        self._kauth = auth
        self.nonce = os.urandom(16)
        self.pending = True
        self.sent_ms = -100000
        self.sessions = 0
        self.est_us = 0               # what a HELLO costs (us, measured)

    def __repr__(self):
        return "<Handshake pending=%s sessions=%d key=***>" % (self.pending, self.sessions)

    # -- the device key, as an Auth for shared.wire_check.check_frame and the Encoder
    def get(self, device_id):
        return self

    def tag_into(self, buf, n):
        if self._kauth is not None:
            self._kauth.tag_into(buf, n)
            return
        d = hmac_sha256(self.key, memoryview(buf)[:n])
        for i in range(TAG_LEN):
            buf[n + i] = d[i]

    def verify(self, buf, n):
        if len(buf) < n + TAG_LEN:
            return False
        if self._kauth is not None:
            return self._kauth.verify(buf, n)
        d = hmac_sha256(self.key, memoryview(buf)[:n])
        diff = 0
        for i in range(TAG_LEN):
            diff |= d[i] ^ buf[n + i]
        return diff == 0

    # -- the beat's hooks
    def hello_auth(self, b):
        """The key for the HELLO about to be sent: the device key while a handshake is pending
        (that HELLO asks for a session), else None (the session key, as every frame)."""
        if not self.pending:
            return None
        self.sent_ms = b.now_ms
        return self

    def restart(self, b):
        """Start a new handshake (epoch roll, or the host asked): a fresh nonce, HELLO."""
        if not self.pending:
            self.nonce = os.urandom(16)
            self.pending = True
        self.sent_ms = b.now_ms
        b.send_hello()

    def tick(self, b, budget_us=0):
        """Idle time: resend the HELLO of a pending handshake once a second, when its measured
        cost fits the idle time left ``budget_us`` (a signed HELLO: ~3.7 ms on a Pico; 0: no
        limit), or once it is a second overdue whatever it costs."""
        if self.pending:
            d = tdiff(b.now_ms, self.sent_ms)
            if d >= 2000 or (d >= 1000 and (budget_us <= 0 or budget_us > self.est_us)):
                clk = getattr(b, "clock", None)
                t0 = clk.ticks() if clk is not None else 0
                b.send_hello()
                if clk is not None:
                    c = tdiff(clk.ticks(), t0)
                    e = self.est_us
                    self.est_us = c if c > e else e - ((e - c) >> 3)

    def rx(self, b, data):
        """A host frame whose tag the session key refused: a CHALLENGE answering our HELLO, or
        a frame tagged with the device key (the host has no session: start a new one).
        Returns True when it was one of them."""
        enc = b.enc
        hl = W.HEADER_LEN
        if data[1] == W.CHALLENGE:
            if not self.pending or len(data) != hl + W.CHALLENGE_LEN + TAG_LEN + W.CRC_LEN:
                return False
            from shared.hkdf import session_key
            sk = Auth(session_key(self.key, data[hl:hl + W.CHALLENGE_LEN], self.nonce,
                                  enc.device_id, enc.boot_id))
            try:
                f = check_frame(data, sk)     # (ver_flags, type, device_id, boot_id, seq, ...)
            except ProtocolError:
                return False
            h = b.host
            r = h.replay
            seq = f[4]
            if f[2] != 0 or f[3] != enc.boot_id or (r is not None and not r.check(seq)):
                return False
            if r is not None:
                r.accept(seq)
            enc.auth = sk
            h.auth = sk
            self.pending = False
            self.sessions += 1
            h.ack(W.CHALLENGE, P.ACK_OK, seq)     # the proof: our first frame under SK
            return True
        try:
            f = check_frame(data, self)
        except ProtocolError:
            return False
        if f[2] != 0:
            return False
        h = b.host
        r = h.replay
        if r is not None:
            seq = f[4]
            if not r.check(seq):
                h.rx_replay += 1
                return True
            r.accept(seq)
        if not self.pending:
            self.restart(b)
        elif tdiff(b.now_ms, self.sent_ms) >= 1000:
            b.send_hello()
        return True
