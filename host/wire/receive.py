"""The host's per-frame decoder of the wire protocol.

Receiver: bytes in (a COBS stream or datagrams), decoded Frames out; every rejected frame is
counted by reason (shared/wire_errors.py REASONS, plus "internal") and no exception leaves
`decode()` / `feed()` / `datagram()`. Authentication (per-device keys) and replay windows per
(device, boot) are applied in the order of PROTOCOL.md: CRC, header, tag, replay check,
payload, then the replay state is updated.
"""
import logging

from shared import cobs
from shared import protocol as P
from shared.auth import Auth, ReplayGuard
from shared.wire_errors import REASONS, AuthError, ProtocolError

__all__ = ["Receiver", "as_auth_map"]

log = logging.getLogger(__name__)
_OWN = object()       # decode(): use the receiver's own keys


def as_auth_map(keys):
    """{device_id: Auth} from {device_id: 32-byte key or Auth} (None -> None)."""
    if keys is None:
        return None
    out = {}
    for dev, k in dict(keys).items():
        out[int(dev)] = k if isinstance(k, Auth) else Auth(bytes(k))
    return out


class Receiver:
    """Decode frames from one or more links; count everything; never raise from feed().

    keys: None or {device_id: key bytes | Auth}; a device with a key must sign every frame.
    replay: True (default) keeps a ReplayGuard of `window` sequence numbers per (device, boot).
    """

    def __init__(self, keys=None, replay=True, window=256, max_streams=4096,
                 max_frame=P.MAX_FRAME):
        self.auth = as_auth_map(keys) or {}
        self.replay = ReplayGuard(window, max_streams) if replay else None
        self.deframer = cobs.Deframer(max_frame)
        self.counters = {"ok": 0, "internal": 0}
        for r in REASONS:
            self.counters[r] = 0
        self.last_error = None  # (reason, message) of the last rejected frame; never key bytes

    def __repr__(self):
        return "<Receiver ok=%d rejected=%d keys=%d>" % (
            self.counters["ok"], self.rejected, len(self.auth))

    @property
    def rejected(self):
        return sum(v for k, v in self.counters.items() if k != "ok")

    def set_key(self, device_id, key):
        """Install or replace (key bytes / Auth) or remove (None) a device's key."""
        if key is None:
            self.auth.pop(device_id, None)
        else:
            self.auth[device_id] = key if isinstance(key, Auth) else Auth(bytes(key))

    def _count(self, reason, msg):
        self.counters[reason] = self.counters.get(reason, 0) + 1
        self.last_error = (reason, msg)

    def decode(self, frame, auth=_OWN):
        """Decode one frame with the receiver's keys (or `auth`: an Auth, a mapping, None);
        returns a Frame or None (rejected and counted)."""
        try:
            f = P.decode(frame, auth=self.auth if auth is _OWN else auth, replay=self.replay)
        except ProtocolError as e:
            self._count(e.reason, str(e))
            return None
        except Exception as e:  # a bug, not bad input: count it, keep receiving
            self._count("internal", type(e).__name__)
            log.exception("internal error while decoding a %d-byte frame", len(frame))
            return None
        self.counters["ok"] += 1
        return f

    def decode_first(self, frame, candidates):
        """Decode one frame trying the keys in `candidates` ([(Auth, kind, ref), ...]) in
        order until its tag verifies: (Frame, kind, ref), or (None, None, None) when rejected
        and counted (by the last key's reason)."""
        for auth, kind, ref in candidates:
            try:
                f = P.decode(frame, auth=auth, replay=self.replay)
            except AuthError as e:
                err = e
                continue
            except ProtocolError as e:
                self._count(e.reason, str(e))
                return None, None, None
            except Exception as e:  # a bug, not bad input
                self._count("internal", type(e).__name__)
                log.exception("internal error while decoding a %d-byte frame", len(frame))
                return None, None, None
            self.counters["ok"] += 1
            return f, kind, ref
        self._count("auth", str(err) if candidates else "no key")
        return None, None, None

    def datagram(self, data):
        """One UDP datagram = one frame (no COBS)."""
        return self.decode(bytes(data))

    def feed(self, data):
        """Bytes from a COBS stream; returns the Frames completed by them."""
        d = self.deframer
        before = dict(d.errors)
        try:
            segments = d.feed(data)
        except Exception as e:  # pragma: no cover - the deframer does not raise
            self._count("internal", type(e).__name__)
            log.exception("internal error in the deframer")
            d.reset()
            return []
        for k in ("cobs", "oversize"):
            n = d.errors[k] - before.get(k, 0)
            if n:
                self.counters[k] += n
                self.last_error = (k, "%d stream segment(s) dropped" % n)
        out = []
        for seg in segments:
            f = self.decode(seg)
            if f is not None:
                out.append(f)
        return out
