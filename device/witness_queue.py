"""Bounded queue of WITNESS records waiting for proof of work and for the host's ACK.

Every slot is preallocated (a ``bytearray(rec_max)`` per slot plus small-int state arrays), so
pushing, mining, sending, resending and acknowledging never allocate.

Life of a record: ``alloc`` -> caller writes the record body into ``rec[slot]`` and calls
``commit(slot, n)`` (state MINING) -> the beat mines it in idle time and calls
``mined(slot, nonce)`` (state READY) -> the beat sends it and calls ``sent(slot, now_ms)``
(state SENT) -> the host's ACK naming ``rec_id`` frees the slot.  A SENT record whose ACK does not
come within ``timeout_ms`` is due again (``due``), with the timeout doubled each time up to
``max_timeout_ms``; ``link_restored`` makes every SENT record due at once (after a link drop the
host may have lost them) and resets the backoff.

Policy when the queue is full (documented in docs/DEVICE.md, "Witness queue"):
- A new record evicts the OLDEST record that is not a QUARANTINE record (``dropped`` counts it).
- QUARANTINE records are never evicted and never dropped.  ``alloc`` keeps that promise by
  construction: QUARANTINE is latched until the host CLEARs it, so at most one QUARANTINE record
  is created per CLEAR, and the device refuses CLEAR (``can_clear`` is False) while the queue
  holds ``capacity - 1`` or more unacknowledged QUARANTINE records.  So there is always a slot
  a new QUARANTINE record may take.
- A non-QUARANTINE record that finds the queue full of QUARANTINE records is dropped (counted).
"""
try:
    from micropython import const
except ImportError:
    def const(x):
        return x

from array import array

FREE = const(0)
MINING = const(1)   # waiting for its proof of work
READY = const(2)    # stamped, not yet sent
SENT = const(3)     # sent, waiting for ACK

_MASK = const(0x3FFFFFFF)
_HALF = const(0x20000000)


def _ms_diff(a, b):
    d = (a - b) & _MASK
    if d >= _HALF:
        d = d - _MASK - 1
    return d


class WitnessQueue:
    def __init__(self, capacity=8, rec_max=64, timeout_ms=1000, max_timeout_ms=16000):
        if capacity < 2:
            raise ValueError("witness queue capacity must be >= 2, got %r" % (capacity,))
        if rec_max < 1:
            raise ValueError("witness record size must be >= 1 byte, got %r" % (rec_max,))
        if not 0 < timeout_ms <= max_timeout_ms < _HALF:
            raise ValueError("witness timeouts must satisfy 0 < timeout_ms <= max_timeout_ms,"
                             " got %r, %r" % (timeout_ms, max_timeout_ms))
        self.capacity = capacity
        self.rec_max = rec_max
        self.timeout_ms = timeout_ms
        self.max_timeout_ms = max_timeout_ms
        self.rec = [bytearray(rec_max) for _ in range(capacity)]
        self.length = array("H", [0] * capacity)
        self.state = bytearray(capacity)
        self.quar = bytearray(capacity)          # 1 = QUARANTINE record
        self.rec_id = array("i", [0] * capacity)  # record id (per boot, < 2^30)
        self.order = array("i", [0] * capacity)   # insertion order, for "oldest"
        self.nonce_lo = array("H", [0] * capacity)  # the u32 nonce as two u16 halves
        self.nonce_hi = array("H", [0] * capacity)  # (no bigint on the Pico)
        self.sent_at = array("i", [0] * capacity)
        self.wait_ms = array("i", [0] * capacity)
        self.sends = array("H", [0] * capacity)
        self._next_id = 1
        self._next_order = 0
        self.count = 0
        # counters
        self.pushed = 0
        self.dropped = 0          # records evicted or refused because the queue was full
        self.acked = 0
        self.resent = 0
        self.unknown_acks = 0

    # -- producing -------------------------------------------------------------------------
    def quarantine_pending(self):
        n = 0
        for i in range(self.capacity):
            if self.state[i] != FREE and self.quar[i]:
                n += 1
        return n

    def can_clear(self):
        """True if a future QUARANTINE record is guaranteed a slot after a CLEAR."""
        return self.quarantine_pending() < self.capacity - 1

    def alloc(self, quarantine=False):
        """Reserve a slot for a new record; returns its index, or -1 if the record is dropped.
        The caller writes the body into ``rec[slot]`` and calls ``commit``."""
        slot = -1
        for i in range(self.capacity):
            if self.state[i] == FREE:
                slot = i
                break
        if slot < 0:
            # full: evict the oldest non-QUARANTINE record
            best = -1
            for i in range(self.capacity):
                if not self.quar[i]:
                    if best < 0 or _ms_diff(self.order[i], self.order[best]) < 0:
                        best = i
            self.dropped += 1
            if best < 0:
                return -1   # only QUARANTINE records: the new (non-QUARANTINE) one is dropped
            slot = best
            self.state[slot] = FREE
            self.count -= 1
        self.quar[slot] = 1 if quarantine else 0
        self.length[slot] = 0
        self.rec_id[slot] = self._next_id
        self._next_id += 1
        if self._next_id > _MASK:
            self._next_id = 1
        self.order[slot] = self._next_order
        self._next_order = (self._next_order + 1) & _MASK
        self.nonce_lo[slot] = 0
        self.nonce_hi[slot] = 0
        self.sends[slot] = 0
        self.wait_ms[slot] = self.timeout_ms
        self.state[slot] = MINING
        self.count += 1
        self.pushed += 1
        return slot

    def commit(self, slot, n):
        if not 0 < n <= self.rec_max:
            raise ValueError("witness record length must be 1..%d, got %r" % (self.rec_max, n))
        self.length[slot] = n

    # -- mining ----------------------------------------------------------------------------
    def next_to_mine(self):
        """Oldest record still waiting for its stamp (QUARANTINE first), or -1."""
        best = -1
        for i in range(self.capacity):
            if self.state[i] == MINING:
                if best < 0 or (self.quar[i] and not self.quar[best]) or (
                        self.quar[i] == self.quar[best]
                        and _ms_diff(self.order[i], self.order[best]) < 0):
                    best = i
        return best

    def mined(self, slot, nonce_lo16, nonce_hi16=0):
        """Store the found nonce (as its low and high 16-bit halves); the record is ready."""
        if self.state[slot] == MINING:
            self.nonce_lo[slot] = nonce_lo16
            self.nonce_hi[slot] = nonce_hi16
            self.state[slot] = READY

    def drop(self, slot):
        """Give a record up (e.g. its nonce space was exhausted); counted in ``dropped``."""
        if self.state[slot] != FREE:
            self.state[slot] = FREE
            self.quar[slot] = 0
            self.count -= 1
            self.dropped += 1

    # -- sending ---------------------------------------------------------------------------
    def due(self, now_ms):
        """A slot to send now (READY first, then SENT whose ACK is overdue), or -1."""
        late = -1
        for i in range(self.capacity):
            s = self.state[i]
            if s == READY:
                return i
            if s == SENT and late < 0 and _ms_diff(now_ms, self.sent_at[i]) >= self.wait_ms[i]:
                late = i
        return late

    def sent(self, slot, now_ms):
        if self.state[slot] == SENT:
            self.resent += 1
            w = self.wait_ms[slot] * 2
            self.wait_ms[slot] = w if w < self.max_timeout_ms else self.max_timeout_ms
        self.state[slot] = SENT
        self.sent_at[slot] = now_ms & _MASK
        if self.sends[slot] < 65535:
            self.sends[slot] += 1

    def ack(self, rec_id):
        """The host has the record ``rec_id``: free its slot.  Returns True if it was queued."""
        for i in range(self.capacity):
            if self.state[i] != FREE and self.rec_id[i] == rec_id:
                if self.state[i] == SENT or self.state[i] == READY:
                    self.state[i] = FREE
                    self.quar[i] = 0
                    self.count -= 1
                    self.acked += 1
                    return True
        self.unknown_acks += 1
        return False

    def link_restored(self, now_ms):
        """The link came back (or the host restarted): resend every unacknowledged record now,
        with the backoff reset."""
        for i in range(self.capacity):
            if self.state[i] == SENT:
                self.wait_ms[i] = self.timeout_ms
                self.sent_at[i] = (now_ms - self.timeout_ms) & _MASK

    def pending(self):
        return self.count
