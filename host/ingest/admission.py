"""Admission: which frames the coordinator takes in, and how far (docs/HOST.md, "Admission").

1. Authentication (per device key from the keystore, host/ingest/keystore.py). `auths` is the
   mapping device id -> shared.auth.Auth handed to the decoder (host/wire/telemetry.py /
   shared/protocol.decode): a device with a key must tag every frame; a tagged frame from a
   device without a key is refused. Tags are checked before any replay state changes.
2. Unknown devices (no key), config `admission.unknown_devices`:
     reject  -- every frame is dropped (counted as "unknown_device");
     observe -- integrated (session, Master, memory) but never written to the ledger: their
                WITNESS records are answered with ACK status REJECTED and not stored;
     accept  -- admitted like a keyed device, without authentication (the default, so that
                an emulator or a bench board works out of the box).
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
    def __init__(self, keystore=None, policy="accept", pow_bits=POW_BITS_DEFAULT, pow_required=True,
                 rate_capacity=2000.0, rate_refill=1000.0, rate_enabled=True, transport="hmac"):
        if policy not in POLICIES:
            raise ValueError("admission.unknown_devices %r (allowed: %s)" % (policy, ", ".join(POLICIES)))
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
        self.rejected = collections.Counter()
        self.reload_keys()

    def reload_keys(self):
        """(Re)build the device -> Auth map from the keystore (keys stay inside Auth objects)."""
        if self.transport == "none":
            self.auths = {}
            return
        self.auths = {d: Auth(self.keystore.get(d)) for d in self.keystore.device_ids()}

    def has_key(self, device_id):
        return device_id in self.auths

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
