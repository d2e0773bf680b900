"""Frames from the host, handled between beats (in ``Beat.idle``).

- ACK (acked_type WITNESS, ref = witness_id): status OK, the witness record leaves the queue;
  any other status (REJECTED: e.g. the host raised the proof-of-work difficulty) keeps it
  (device/witness_refused.py: re-stamped at the current difficulty, or resent later).
- CONFIG: every pair is validated first; if one is bad nothing changes, the device answers
  ACK(CONFIG, BAD_VALUE / UNSUPPORTED, ref = config_version) and an ERROR naming the key; else
  all pairs are applied, ACK(CONFIG, OK) and a CONFIG_APPLIED witness record.
- MODEL (bias and feature weights of the entropy model): applied, ACK(MODEL, OK), MODEL_APPLIED witness.
- CLEAR: unlatches QUARANTINE (ACK OK + QUARANTINE_CLEARED witness), unless the witness queue
  could not take the next QUARANTINE record (ACK BUSY; see device/witness_queue.py).
- TIME_SYNC request: immediate reply with the receive time (taken when the frame is read) and
  the transmit time.
- CHALLENGE, and frames tagged with the device key instead of the session key: the session
  handshake (device/session.py, keyed devices only).
Frames for another boot id (a host that missed our HELLO) make the device send HELLO again
(at most once a second) and are otherwise ignored.  Bad frames are counted by kind (rx_crc,
rx_cobs, rx_auth, rx_replay, rx_other) and never raise.

The link is taken as up while host frames keep arriving (any valid frame); after
``link_timeout_ms`` of silence it is down, and the next valid frame restores it: HELLO is sent
again and every unacknowledged witness record is resent at once.
"""
import struct

from shared import protocol_codes as P
from shared import wire_format as W
from shared.compat import micropython, const  # noqa: F401
from shared.wire_check import (check_frame, check_len, check_ack, check_config,
                               check_config_key, check_model, check_time_sync, check_clear)
from shared.wire_errors import AuthError, CrcError, FieldError, FramingError, ProtocolError

from device.clock import tdiff

_MAX_PER_IDLE = const(4)


def _text16(s):
    b = s.encode() if isinstance(s, str) else s
    return b[:16]


def _key_text(key):
    """ERROR text of a refused CONFIG: the key id, a space, the key name (16 characters)."""
    if isinstance(key, int):
        return "%d unknown" % key
    for kid in P.CONFIG_KEYS:
        if P.CONFIG_KEYS[kid][0] == key:
            return "%d %s" % (kid, key)
    return "0 " + key


class HostFrames:
    def __init__(self, beat, auth=None):
        self.beat = beat
        self.auth = auth
        self.hs = None                # device/session.py Handshake (keyed devices)
        if auth is not None:
            from shared.auth import ReplayWindow
            self.replay = ReplayWindow(256)
        else:
            self.replay = None
        self.rx_ok = 0
        self.rx_crc = 0
        self.rx_cobs = 0
        self.rx_auth = 0
        self.rx_replay = 0
        self.rx_other = 0
        self.rx_stale_boot = 0
        self.configs = 0
        self.config_rejected = 0
        self.clears = 0
        self.clears_refused = 0
        self.models = 0
        self.time_syncs = 0
        self.last_error = ""
        self._last_hello_ms = -100000

    # ------------------------------------------------------------------ receive
    @micropython.native
    def poll(self, budget_us=0):
        """Handle up to a few frames waiting on the link; also track link liveness."""
        b = self.beat
        link = b.link
        if b.link_up and tdiff(b.now_ms, b.last_rx_ms) > b.s.link_timeout_ms:
            b.link_up = False
        self.rx_cobs = getattr(link, "rx_dropped", 0)
        hs = self.hs
        if hs is not None and hs.pending:     # (no call, so no frame, once the session is up)
            hs.tick(b, budget_us)
        for _ in range(_MAX_PER_IDLE):
            data = link.recv()
            if data is None:
                return
            self.handle(data)

    def handle(self, data):
        b = self.beat
        tm = b.time
        tm.update()                   # the receive time: when the frame is read, not the beat's
        rx_era = tm.era
        rx_off = tm.off
        try:
            vf, t, dev, boot, seq, era, off, end = check_frame(data, self.auth)
            if dev != 0:
                self.rx_other += 1      # a device frame echoed back, or another device's
                return
            fl = self._payload(t, vf, data, end)
        except CrcError:
            self.rx_crc += 1
            return
        except AuthError:
            if self.hs is None or not self.hs.rx(b, data):
                self.rx_auth += 1
            return
        except FramingError:
            self.rx_cobs += 1
            return
        except ProtocolError as e:
            self.rx_other += 1
            self.last_error = str(e)
            return
        if boot != b.enc.boot_id:
            self.rx_stale_boot += 1
            if tdiff(b.now_ms, self._last_hello_ms) >= 1000:
                self._last_hello_ms = b.now_ms
                b.send_hello()
            return
        if self.replay is not None:
            if not self.replay.check(seq):
                self.rx_replay += 1
                return
            self.replay.accept(seq)
        self.rx_ok += 1
        was_up = b.link_up
        b.link_up = True
        b.last_rx_ms = b.now_ms
        if not was_up:
            b.queue.link_restored(b.now_ms)
            b.send_hello()
            self._last_hello_ms = b.now_ms
        if t == W.ACK:
            if fl[0] == W.WITNESS:
                if fl[1] == P.ACK_OK:
                    b.queue.ack(fl[2])
                else:                       # never dropped on a refusal (rare: loaded then)
                    from device.witness_refused import refused
                    refused(b, fl[2])
        elif t == W.CONFIG:
            self.on_config(fl[0], fl[1])
        elif t == W.MODEL:
            self.on_model(fl[0], fl[1], fl[2], fl[3], fl[4], fl[5])
        elif t == W.CLEAR:
            self.on_clear(fl[1])
        elif t == W.TIME_SYNC:
            if fl[0] == P.SYNC_REQUEST:
                self.time_syncs += 1
                tm = b.time
                tm.update()
                b.link.send(b.enc.time_sync_reply(tm.era, tm.off, fl[1], rx_era, rx_off))
        else:
            self.rx_other += 1

    @staticmethod
    def _payload(t, vf, data, end):
        """The payload of a host frame as a tuple in wire order (CONFIG: (version, pairs)),
        checked as the host's decoder checks it (shared/wire_check.py); ERROR and the types a
        device sends give None."""
        if vf & W.FLAG_BATCH:
            raise FieldError("BATCH flag on type %d (only TELEMETRY batches)" % t)
        p = W.HEADER_LEN
        n = end - p
        if t == W.ACK:
            check_len("ACK", n, W.ACK_LEN)
            f = struct.unpack_from(W.ACK_FMT, data, p)
            check_ack(f[0], f[1])
        elif t == W.CONFIG:
            if n < W.CONFIG_HEAD_LEN:
                check_len("CONFIG", n, W.CONFIG_HEAD_LEN)
            version, count = struct.unpack_from(W.CONFIG_HEAD_FMT, data, p)
            check_config(count, n)
            pairs = []
            for i in range(count):
                kv = struct.unpack_from(W.CONFIG_PAIR_FMT, data,
                                        p + W.CONFIG_HEAD_LEN + W.CONFIG_PAIR_LEN * i)
                check_config_key(kv[0])
                pairs.append(kv)
            f = (version, pairs)
        elif t == W.MODEL:
            check_len("MODEL", n, W.MODEL_LEN)
            f = struct.unpack_from(W.MODEL_FMT, data, p)
            check_model(f[1:])
        elif t == W.CLEAR:
            check_len("CLEAR", n, W.CLEAR_LEN)
            f = struct.unpack_from(W.CLEAR_FMT, data, p)
            check_clear(f[0])
        elif t == W.TIME_SYNC:
            check_len("TIME_SYNC", n, W.TIME_SYNC_LEN)
            f = struct.unpack_from(W.TIME_SYNC_FMT, data, p)
            check_time_sync(f[0], 0)
        else:
            f = None
        return f

    # ------------------------------------------------------------------ answers
    def ack(self, acked_type, status, ref):
        """Send ACK(acked_type, status, ref) to the host (public: the session handshake sends
        its proof through it); no allocation beyond the encoder's slot."""
        b = self.beat
        tm = b.time
        b.link.send(b.enc.ack(tm.era, tm.off, acked_type, status, ref & 0xFFFFFFFF))

    def _error(self, code, ref_type, ref, text):
        b = self.beat
        tm = b.time
        self.last_error = text
        b.link.send(b.enc.error(tm.era, tm.off, code, ref_type, ref & 0xFFFFFFFF,
                                _text16(text)))

    def on_config(self, version, pairs):
        """Check the whole CONFIG, then apply all of it or nothing (device/config_plan.py).
        A refusal: ERROR (the key id and name) first, then ACK BAD_VALUE / UNSUPPORTED."""
        b = self.beat
        import gc
        gc.collect()          # a CONFIG is rare: plan it in a compacted heap (dicts, floats)
        from device import config_plan as C
        from device.config_rules import Refused, Unsupported, key_of, message_of
        try:
            C.apply(b, C.plan(b, pairs))
        except Refused as e:
            self.config_rejected += 1
            unsup = isinstance(e, Unsupported)
            self._error(P.ERR_CONFIG_KEY if unsup else P.ERR_CONFIG_VALUE, W.CONFIG, version,
                        _key_text(key_of(e)))
            self.last_error = message_of(e)
            self.ack(W.CONFIG, P.ACK_UNSUPPORTED if unsup else P.ACK_BAD_VALUE, version)
            return
        except ValueError as e:      # a setter refused after the rules passed: rolled back
            self.config_rejected += 1
            self._error(P.ERR_CONFIG_VALUE, W.CONFIG, version, "apply")
            self.last_error = str(e)
            self.ack(W.CONFIG, P.ACK_BAD_VALUE, version)
            return
        self.configs += 1
        self.ack(W.CONFIG, P.ACK_OK, version)
        b.witness(P.WITNESS_CONFIG_APPLIED, 0, version & 0x3FFFFFFF)

    def on_model(self, version, bias, w_level, w_kurt, w_crest, w_anoms):
        b = self.beat
        try:
            b.m.set_model(bias, w_level, w_kurt, w_crest, w_anoms)
        except ValueError as e:
            self.ack(W.MODEL, P.ACK_BAD_VALUE, version)
            self._error(P.ERR_CONFIG_VALUE, W.MODEL, version, str(e))
            return
        self.models += 1
        self.ack(W.MODEL, P.ACK_OK, version)
        b.witness(P.WITNESS_MODEL_APPLIED, 0, version & 0x3FFFFFFF)

    def on_clear(self, ref):
        b = self.beat
        if not b.quarantined:
            self.ack(W.CLEAR, P.ACK_OK, ref)
            return
        if not b.queue.can_clear():
            self.clears_refused += 1
            self.ack(W.CLEAR, P.ACK_BUSY, ref)
            self._error(P.ERR_BUSY, W.CLEAR, ref, "witness q full")
            return
        b.clear_quarantine()
        self.clears += 1
        self.ack(W.CLEAR, P.ACK_OK, ref)
        b.witness(P.WITNESS_QUARANTINE_CLEARED, 0, ref & 0x3FFFFFFF)
