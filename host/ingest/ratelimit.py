"""Per-device rate limiting by cost (ET Eq 25, "VarianceLimiter": V_cost = complexity^1.5).

Every admitted frame costs `cost = complexity ** 1.5` tokens from its device's token bucket
(capacity C tokens, refilled continuously at R tokens/s). A frame whose cost exceeds the
tokens left is refused (counted as `rate_limited`) and costs nothing.

Complexity of a frame (documented in docs/HOST.md):
  - TELEMETRY: max(1, payload_bytes / 32)   (a batched frame of several beats is bigger,
    so it is more complex; 32 bytes is about one beat's record)
  - WITNESS:   max(1, payload_bytes / 32) + 1   (it leads to a durable ledger write)
  - HELLO, HEARTBEAT, ACK, TIME_SYNC, ERROR: 1
  - anything else: max(1, payload_bytes / 32)
Defaults: capacity 4000 tokens, refill 2000 tokens/s per device, which is about 8x what a
device sending one telemetry frame per 4.2 ms beat needs; a flooding device is cut to the
refill rate. Both are configurable per device at run time.
"""
import time

import numpy as np

__all__ = ["TokenBucket", "RateLimiter", "variance_cost", "frame_complexity"]

EXPONENT = 1.5
_ONE = frozenset((1, 4, 7, 9, 10))   # HELLO, ACK, TIME_SYNC, HEARTBEAT, ERROR
WITNESS = 3


def variance_cost(complexity, exponent=EXPONENT):
    """ET Eq 25: cost = complexity ** exponent (complexity must be >= 0)."""
    if complexity < 0:
        raise ValueError("complexity must be >= 0 (got %r)" % (complexity,))
    return float(complexity) ** exponent


def frame_complexity(msg_type, payload_len):
    if msg_type in _ONE:
        return 1.0
    c = max(1.0, payload_len / 32.0)
    return c + 1.0 if msg_type == WITNESS else c


class TokenBucket:
    """One device's token bucket: capacity, refill rate, tokens left and the counts of
    frames allowed and refused. Raises ValueError for a bad capacity or rate."""
    __slots__ = ("capacity", "refill_rate", "tokens", "stamp", "allowed", "refused")

    def __init__(self, capacity, refill_rate, now=None):
        if capacity <= 0 or refill_rate < 0:
            raise ValueError("token bucket needs capacity > 0 and refill_rate >= 0 (got %r, %r)"
                             % (capacity, refill_rate))
        self.capacity = float(capacity)
        self.refill_rate = float(refill_rate)
        self.tokens = float(capacity)
        self.stamp = time.monotonic() if now is None else now
        self.allowed = 0
        self.refused = 0

    def _refill(self, now):
        dt = now - self.stamp
        if dt > 0:
            self.tokens = min(self.capacity, self.tokens + dt * self.refill_rate)
            self.stamp = now

    def request(self, cost, now=None):
        """Take `cost` tokens if available; True when allowed."""
        self._refill(time.monotonic() if now is None else now)
        if cost <= self.tokens:
            self.tokens -= cost
            self.allowed += 1
            return True
        self.refused += 1
        return False

    def request_many(self, costs, now=None):
        """Costs of consecutive frames (numpy array); returns how many of them, from the
        start, fit in the bucket (the rest are refused). Vectorised for the batch path."""
        self._refill(time.monotonic() if now is None else now)
        n = len(costs)
        if n == 0:
            return 0
        cum = np.cumsum(costs)
        k = int(np.searchsorted(cum, self.tokens, side="right"))
        if k:
            self.tokens -= float(cum[k - 1])
        self.allowed += k
        self.refused += n - k
        return k

    def request_n(self, cost, n, now=None):
        """n frames of the same cost: how many of them (from the first) fit. Scalar math."""
        self._refill(time.monotonic() if now is None else now)
        k = n if cost <= 0 else min(n, int(self.tokens / cost + 1e-9))
        if k:
            self.tokens = max(0.0, self.tokens - k * cost)
        self.allowed += k
        self.refused += n - k
        return k

    def remaining(self, now=None):
        self._refill(time.monotonic() if now is None else now)
        return self.tokens


class RateLimiter:
    """One token bucket per device; `set_limits(device, capacity, refill_rate)` at run time."""

    def __init__(self, capacity=4000.0, refill_rate=2000.0, enabled=True):
        TokenBucket(capacity, refill_rate)  # validates
        self.capacity = float(capacity)
        self.refill_rate = float(refill_rate)
        self.enabled = enabled
        self.buckets = {}
        self.overrides = {}
        self.over = frozenset()       # devices refused in the last period (read by link readers)
        self._refused_now = set()

    def bucket(self, device_id, now=None):
        b = self.buckets.get(device_id)
        if b is None:
            cap, rate = self.overrides.get(device_id, (self.capacity, self.refill_rate))
            b = self.buckets[device_id] = TokenBucket(cap, rate, now)
        return b

    def note_refused(self, device_id):
        """A frame of `device_id` did not fit its bucket (see roll_over)."""
        self._refused_now.add(device_id)

    def roll_over(self):
        """Once a tick: `over` becomes the devices refused since the last call (a link reader
        sheds their frames first when the processing thread falls behind)."""
        if self._refused_now or self.over:
            self.over = frozenset(self._refused_now)
            self._refused_now = set()

    def set_limits(self, device_id, capacity, refill_rate):
        TokenBucket(capacity, refill_rate)
        self.overrides[device_id] = (float(capacity), float(refill_rate))
        b = self.buckets.get(device_id)
        if b is not None:
            b.capacity, b.refill_rate = float(capacity), float(refill_rate)
            b.tokens = min(b.tokens, b.capacity)

    def allow(self, device_id, msg_type, payload_len, now=None):
        if not self.enabled:
            return True
        ok = self.bucket(device_id, now).request(
            variance_cost(frame_complexity(msg_type, payload_len)), now)
        if not ok:
            self._refused_now.add(device_id)
        return ok

    def allow_many(self, device_id, msg_types, payload_lens, now=None):
        """Vectorised: frames of one device in arrival order -> count allowed from the start."""
        n = len(payload_lens)
        if not self.enabled:
            return n
        c = np.maximum(1.0, np.asarray(payload_lens, dtype=np.float64) / 32.0)
        t = np.asarray(msg_types)
        c = np.where(np.isin(t, list(_ONE)), 1.0, c)
        c = np.where(t == WITNESS, c + 1.0, c)
        k = self.bucket(device_id, now).request_many(c ** EXPONENT, now)
        if k < n:
            self._refused_now.add(device_id)
        return k

    def allow_same(self, device_id, msg_type, payload_len, n, now=None):
        """n frames of one type and size (the batch path): how many, from the first, fit."""
        if not self.enabled:
            return n
        k = self.bucket(device_id, now).request_n(
            variance_cost(frame_complexity(msg_type, payload_len)), n, now)
        if k < n:
            self._refused_now.add(device_id)
        return k

    def metrics(self):
        return {str(d): {"allowed": b.allowed, "refused": b.refused,
                         "tokens": round(b.tokens, 1)} for d, b in self.buckets.items()}
