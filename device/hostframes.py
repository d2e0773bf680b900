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
from shared import protocol as P
from shared.auth import ReplayWindow
from shared.wire_errors import AuthError, CrcError, FramingError, ProtocolError, ReplayError

from device.clock import tdiff

_MAX_PER_IDLE = 4


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
        self.replay = ReplayWindow(256) if auth is not None else None
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
    def poll(self, budget_us=0):
        """Handle up to a few frames waiting on the link; also track link liveness."""
        b = self.beat
        link = b.link
        if b.link_up and tdiff(b.now_ms, b.last_rx_ms) > b.s.link_timeout_ms:
            b.link_up = False
        self.rx_cobs = getattr(link, "rx_dropped", 0)
        if self.hs is not None:
            self.hs.tick(b)
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
            f = P.decode(data, self.auth, None)
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
        if f.device_id != 0:
            self.rx_other += 1          # a device frame echoed back, or another device's
            return
        if f.boot_id != b.enc.boot_id:
            self.rx_stale_boot += 1
            if tdiff(b.now_ms, self._last_hello_ms) >= 1000:
                self._last_hello_ms = b.now_ms
                b.send_hello()
            return
        if self.replay is not None:
            if not self.replay.check(f.seq):
                self.rx_replay += 1
                return
            self.replay.accept(f.seq)
        self.rx_ok += 1
        was_up = b.link_up
        b.link_up = True
        b.last_rx_ms = b.now_ms
        if not was_up:
            b.queue.link_restored(b.now_ms)
            b.send_hello()
            self._last_hello_ms = b.now_ms
        t = f.type
        fl = f.fields
        if t == P.ACK:
            if fl["acked_type"] == P.WITNESS:
                if fl["status"] == P.ACK_OK:
                    b.queue.ack(fl["ref"])
                else:                       # never dropped on a refusal (rare: loaded then)
                    from device.witness_refused import refused
                    refused(b, fl["ref"])
        elif t == P.CONFIG:
            self.on_config(fl["config_version"], fl["pairs"])
        elif t == P.MODEL:
            self.on_model(fl["model_version"], fl["bias"], fl["w_level"], fl["w_kurt"],
                          fl["w_crest"], fl["w_anoms"])
        elif t == P.CLEAR:
            self.on_clear(fl["ref"])
        elif t == P.TIME_SYNC:
            if fl["mode"] == P.SYNC_REQUEST:
                self.time_syncs += 1
                tm = b.time
                tm.update()
                b.link.send(b.enc.time_sync_reply(tm.era, tm.off, fl["host_t1_us"], rx_era,
                                                  rx_off))
        else:
            self.rx_other += 1

    # ------------------------------------------------------------------ answers
    def _ack(self, acked_type, status, ref):
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
            self._error(P.ERR_CONFIG_KEY if unsup else P.ERR_CONFIG_VALUE, P.CONFIG, version,
                        _key_text(key_of(e)))
            self.last_error = message_of(e)
            self._ack(P.CONFIG, P.ACK_UNSUPPORTED if unsup else P.ACK_BAD_VALUE, version)
            return
        except ValueError as e:      # a setter refused after the rules passed: rolled back
            self.config_rejected += 1
            self._error(P.ERR_CONFIG_VALUE, P.CONFIG, version, "apply")
            self.last_error = str(e)
            self._ack(P.CONFIG, P.ACK_BAD_VALUE, version)
            return
        self.configs += 1
        self._ack(P.CONFIG, P.ACK_OK, version)
        b.witness(P.WITNESS_CONFIG_APPLIED, 0, version & 0x3FFFFFFF)

    def on_model(self, version, bias, w_level, w_kurt, w_crest, w_anoms):
        b = self.beat
        try:
            b.m.set_model(bias, w_level, w_kurt, w_crest, w_anoms)
        except ValueError as e:
            self._ack(P.MODEL, P.ACK_BAD_VALUE, version)
            self._error(P.ERR_CONFIG_VALUE, P.MODEL, version, str(e))
            return
        self.models += 1
        self._ack(P.MODEL, P.ACK_OK, version)
        b.witness(P.WITNESS_MODEL_APPLIED, 0, version & 0x3FFFFFFF)

    def on_clear(self, ref):
        b = self.beat
        if not b.quarantined:
            self._ack(P.CLEAR, P.ACK_OK, ref)
            return
        if not b.queue.can_clear():
            self.clears_refused += 1
            self._ack(P.CLEAR, P.ACK_BUSY, ref)
            self._error(P.ERR_BUSY, P.CLEAR, ref, "witness q full")
            return
        b.clear_quarantine()
        self.clears += 1
        self._ack(P.CLEAR, P.ACK_OK, ref)
        b.witness(P.WITNESS_QUARANTINE_CLEARED, 0, ref & 0x3FFFFFFF)
