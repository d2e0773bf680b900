"""Admission: which frames the coordinator takes in, and how far (docs/HOST.md, "Admission").

1. Authentication (per device key from the keystore, host/ingest/keystore.py). A device with a
   key must tag every frame; a tagged frame from a device without a key is refused. Its device
   key K only tags the HELLO that asks for a session: every other frame carries the tag of the
   per-session key derived in the handshake (host/devices/handshake.py; `session_auth`
   derives it). `auths` maps device id -> shared.auth.Auth of K (HELLO, requests for a
   handshake); the raw keys never leave this object. Tags are checked before any replay state
   changes.
2. Unknown devices (no key), config `admission.unknown_devices`:
     reject  -- every frame is dropped (counted as "unknown_device");
     observe -- integrated (session, Master, memory) but never written to the ledger: their
                WITNESS records are answered with ACK status REJECTED and not stored (the
                default: a device that proves nothing cannot write to the ledger);
     accept  -- admitted like a keyed device, without authentication (an explicit opt-in for
                bench boards; the sessions of keyless devices keep their protections:
                host/devices/sessions.py).
   `security.transport: tls` refuses every keyless device, whatever this says.
3. Rate limit by cost (host/ingest/ratelimit.py, ET Eq 25): each frame costs complexity^1.5 tokens
   of its device's bucket; refused frames are counted as "rate_limited".
4. WITNESS proof of work: a WITNESS reaches the ledger only with a valid stamp at (at least)
   the difficulty the host set for its device (default `admission.pow_bits`; changed per device
   at run time with set_pow_bits). Checked with shared.pow; refused as "pow".
   `security.intrinsic: false` turns the stamp requirement off.
"""
import collections

from becomingone.ingest.keystore import Keystore
from becomingone.ingest.ratelimit import RateLimiter
from becomingone.wire.handshake import session_key
from shared import pow as _pow, protocol as P
from shared.auth import Auth
from shared.protocol_codes import POW_BITS_DEFAULT

__all__ = ["Admission", "POLICIES", "FULL", "OBSERVE"]

POLICIES = ("reject", "observe", "accept")
FULL = "full"
OBSERVE = "observe"


def _pow_verify(record, nonce, bits):
    return _pow.verify(record, nonce, bits)


class Admission:
    """Which frames the coordinator takes in (module docstring): owns the device -> Auth
    map, the unknown-device policy, the rate limiter, the per-device PoW difficulty and the
    rejection counters. Raises ValueError for a bad policy or difficulty."""
    def __init__(self, keystore=None, policy="observe", pow_bits=POW_BITS_DEFAULT, pow_required=True,
                 rate_capacity=2000.0, rate_refill=1000.0, rate_enabled=True, transport="hmac"):
        if policy not in POLICIES:
            raise ValueError("admission.unknown_devices %r (allowed: %s)" % (policy, ", ".join(POLICIES)))
        if transport == "tls":          # every device authenticated: no keyless device at all
            policy = "reject"
        if not 0 <= int(pow_bits) <= 32:
            raise ValueError("pow_bits %r outside 0..32" % (pow_bits,))
        self.keystore = keystore if keystore is not None else Keystore(None)
        self.policy = policy
        self.pow_bits = int(pow_bits)
        self.pow_required = pow_required
        self.transport = transport
        self.rate = RateLimiter(rate_capacity, rate_refill, enabled=rate_enabled)
        self.device_pow = {}
        self.auths = {}
        self._keys = {}
        self.rejected = collections.Counter()
        self.reload_keys()

    def __repr__(self):
        return "<Admission policy=%s keyed=%d transport=%s>" % (self.policy, len(self._keys),
                                                                self.transport)

    def reload_keys(self):
        """(Re)build the device -> Auth map from the keystore; returns the device ids whose key
        was added, replaced or removed (their session keys are void)."""
        old = self._keys
        if self.transport == "none":
            self.auths, self._keys = {}, {}
        else:
            self._keys = {d: bytes(self.keystore.get(d)) for d in self.keystore.device_ids()}
            self.auths = {d: Auth(k) for d, k in self._keys.items()}
        return sorted(d for d in set(old) | set(self._keys) if old.get(d) != self._keys.get(d))

    def has_key(self, device_id):
        return device_id in self.auths

    def device_auth(self, device_id):
        """The Auth of a device's own key K (HELLO asking for a session), or None."""
        return self.auths.get(device_id)

    def session_auth(self, device_id, host_nonce, device_nonce, boot_id):
        """The Auth of the session key of a handshake (docs/PROTOCOL.md 4.1), or None when the
        device has no key."""
        k = self._keys.get(device_id)
        if k is None:
            return None
        return Auth(session_key(k, host_nonce, device_nonce, device_id, boot_id))

    def level(self, device_id):
        """FULL, OBSERVE or None (rejected) for a device, before rate limiting."""
        if device_id in self.auths or self.policy == "accept":
            return FULL
        if self.policy == "observe":
            return OBSERVE
        return None

    def admit(self, device_id, msg_type, payload_len, now=None):
        """(level, reason): level FULL / OBSERVE, or (None, reason) when refused."""
        lv = self.level(device_id)
        if lv is None:
            self.rejected["unknown_device"] += 1
            return None, "unknown_device"
        if not self.rate.allow(device_id, msg_type, payload_len, now):
            self.rejected["rate_limited"] += 1
            return None, "rate_limited"
        return lv, None

    # -- proof of work -----------------------------------------------------------
    def pow_bits_for(self, device_id):
        return self.device_pow.get(device_id, self.pow_bits)

    def set_pow_bits(self, device_id, bits):
        bits = int(bits)
        if not 0 <= bits <= 32:
            raise ValueError("pow_bits %r outside 0..32" % (bits,))
        self.device_pow[device_id] = bits

    def check_witness(self, frame):
        """None when the WITNESS may go to the ledger, else the refusal reason ("pow")."""
        if not self.pow_required:
            return None
        need = self.pow_bits_for(frame.device_id)
        if need == 0:
            return None
        f = frame.fields
        if f["pow_bits"] < need:
            self.rejected["pow"] += 1
            return "pow"
        rec = P.witness_record(frame.device_id, frame.boot_id, f)
        if not _pow_verify(rec, f["nonce"], need):
            self.rejected["pow"] += 1
            return "pow"
        return None

    def summary(self):
        return {"policy": self.policy, "keyed_devices": sorted(self.auths),
                "pow_bits": self.pow_bits, "pow_required": self.pow_required,
                "device_pow_bits": {str(d): b for d, b in sorted(self.device_pow.items())},
                "rejected": dict(self.rejected), "rate": self.rate.metrics()}
