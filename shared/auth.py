# Frame authentication (HMAC-SHA256 truncated to 8 bytes) and replay windows, both runtimes.
#
# MicroPython has no hmac module, so HMAC (RFC 2104) is written here: on MicroPython from
# shared/sha256.py with the ipad/opad midstates computed once per key (a tag costs the message's
# blocks plus one, and allocates nothing), on CPython from hashlib; tests check both against
# CPython's hmac. Keys are 32 bytes. A key never appears in a repr, a log line or an error.
#
# Auth(key):           .tag_into(buf, n) writes HMAC(key, buf[0:n])[:8] at buf[n:n+8]
#                      .verify(buf, n) -> bool, constant-time compare with buf[n:n+8]
# hmac_sha256(key, msg) -> 32-byte digest
# ReplayWindow(size):  sliding window over sequence numbers (bytearray bitmap)
#                      .check(seq) -> bool (no state change), .accept(seq) (state change)
# ReplayGuard(size, max_streams): one ReplayWindow per (device_id, boot_id)
import hashlib
import sys

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

from shared.wire_format import TAG_LEN  # noqa: E402  (the tag's length is a wire fact)

_KEY_LEN = const(32)
_BLOCK = const(64)


def _pads(key):
    if not isinstance(key, (bytes, bytearray)) or len(key) != _KEY_LEN:
        # never echo the key; say what is allowed
        raise ValueError("auth key must be %d bytes (got %s)" % (
            _KEY_LEN, "%d bytes" % len(key) if isinstance(key, (bytes, bytearray))
            else type(key).__name__))
    ipad = bytearray(_BLOCK)
    opad = bytearray(_BLOCK)
    for i in range(_BLOCK):
        k = key[i] if i < _KEY_LEN else 0
        ipad[i] = k ^ 0x36
        opad[i] = k ^ 0x5C
    return bytes(ipad), bytes(opad)


def hmac_sha256(key, msg):
    """HMAC-SHA256 of msg with a 32-byte key (RFC 2104)."""
    ipad, opad = _pads(key)
    inner = hashlib.sha256(ipad)
    inner.update(msg)
    outer = hashlib.sha256(opad)
    outer.update(inner.digest())
    return outer.digest()


_MPY = sys.implementation.name == "micropython"


class Auth:
    """One device key, ready to tag and verify frames."""

    def __init__(self, key):
        self._ipad, self._opad = _pads(key)
        self._mac = bytearray(32)
        self._sha = None
        self._hi = self._ho = None
        if not _MPY:
            # the pads absorbed once: a tag costs two copies of a hash state (the host checks
            # hundreds of thousands of tags a second; becomingone/wire/telemetry.py)
            self._hi, self._ho = hashlib.sha256(self._ipad), hashlib.sha256(self._opad)
        if _MPY:
            from shared.sha256 import Sha256
            sha = Sha256()
            blk = sha.block
            for pad, slot in ((self._ipad, 0), (self._opad, 1)):
                sha.load_iv()
                for i in range(64):
                    blk[i] = pad[i]
                sha.compress()
                sha.save_mid(slot)
            self._sha = sha
            for i in range(64):
                blk[i] = 0
            self._ipad = self._opad = None       # only the midstates are kept

    def __repr__(self):
        return "<Auth key=***>"

    def _digest(self, buf, n):
        sha = self._sha
        if sha is not None:
            mac = self._mac
            sha.load_mid(0)
            sha.hash_tail(buf, 0, n, 64)
            sha.digest_into(mac, 0, 32)
            sha.load_mid(1)
            sha.hash_tail(mac, 0, 32, 64)
            sha.digest_into(mac, 0, 32)
            return mac
        inner = self._hi.copy()
        inner.update(memoryview(buf)[:n] if n != len(buf) else buf)
        outer = self._ho.copy()
        outer.update(inner.digest())
        return outer.digest()

    def tag_into(self, buf, n):
        """Write the 8-byte tag of buf[0:n] at buf[n:n+8]."""
        d = self._digest(buf, n)
        for i in range(TAG_LEN):
            buf[n + i] = d[i]

    def verify(self, buf, n):
        """True when buf[n:n+8] is the tag of buf[0:n] (compare without early exit)."""
        if len(buf) < n + TAG_LEN:
            return False
        d = self._digest(buf, n)
        diff = 0
        for i in range(TAG_LEN):
            diff |= d[i] ^ buf[n + i]
        return diff == 0


class ReplayWindow:
    """Accepts each sequence number at most once: anything above the highest seen, or within
    `size` below it and not yet seen. The bitmap is a ring: bit (seq mod size) is set when seq
    (highest - size < seq <= highest) was seen; advancing clears the bits of the skipped seqs."""

    def __init__(self, size=256):
        if size < 8 or size % 8:
            raise ValueError("replay window size must be a multiple of 8, >= 8 (got %r)" % (size,))
        self.size = size
        self.highest = -1
        self._bits = bytearray(size // 8)

    def __repr__(self):
        return "<ReplayWindow size=%d highest=%d>" % (self.size, self.highest)

    def check(self, seq):
        """True when seq would be accepted. Changes nothing."""
        if seq > self.highest:
            return True
        if self.highest - seq >= self.size:
            return False
        i = seq % self.size
        return not (self._bits[i >> 3] & (1 << (i & 7)))

    def accept(self, seq):
        """Record seq as seen (call only after the frame was authenticated and decoded)."""
        bits = self._bits
        size = self.size
        if seq > self.highest:
            if seq - self.highest >= size or self.highest < 0:
                for j in range(len(bits)):
                    bits[j] = 0
            else:
                s = self.highest + 1
                while s < seq:
                    i = s % size
                    bits[i >> 3] &= ~(1 << (i & 7)) & 0xFF
                    s += 1
            self.highest = seq
        elif self.highest - seq >= size:
            return
        i = seq % size
        bits[i >> 3] |= 1 << (i & 7)


class ReplayGuard:
    """Replay windows per (device_id, boot_id). Keeps at most max_streams windows; the least
    recently used one is forgotten first (a frame of a forgotten stream starts a new window)."""

    def __init__(self, size=256, max_streams=64):
        self.size = size
        self.max_streams = max_streams
        self._windows = {}
        self._tick = 0

    def __repr__(self):
        return "<ReplayGuard streams=%d size=%d>" % (len(self._windows), self.size)

    def check(self, device_id, boot_id, seq):
        w = self._windows.get((device_id, boot_id))
        return True if w is None else w[0].check(seq)

    def accept(self, device_id, boot_id, seq):
        key = (device_id, boot_id)
        self._tick += 1
        w = self._windows.get(key)
        if w is None:
            if len(self._windows) >= self.max_streams:
                oldest = None
                for k in self._windows:
                    if oldest is None or self._windows[k][1] < self._windows[oldest][1]:
                        oldest = k
                del self._windows[oldest]
            w = [ReplayWindow(self.size), 0]
            self._windows[key] = w
        w[1] = self._tick
        w[0].accept(seq)

    def forget(self, device_id, boot_id):
        self._windows.pop((device_id, boot_id), None)
