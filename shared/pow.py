"""Proof of traversal (hashcash, SPEC 4.6 / ET Eq 26): find a u32 nonce such that
SHA-256(record || nonce as 4 bytes little-endian) has at least `bits` leading zero bits
(bit 7 of byte 0 first). Minting is incremental, in bounded slices a beat can afford; verifying
is one hash. Both runtimes.

On MicroPython the miner hashes with shared/sha256.py: the record, nonce and padding sit in one
preallocated block (a record of up to 51 bytes is one SHA-256 block; a WITNESS record is 23),
each try writes the nonce bytes and compresses from the IV: nothing is allocated per hash (a
hashlib object and digest per hash would fill the Pico's heap; collecting it takes ~24 ms).
On CPython the inner loop uses hashlib. start() allocates only when the record length changes.

Public API
----------
Miner()
    .start(record: bytes-like, bits: int)   begin minting (0 <= bits <= 32); nonces 0, 1, 2, ...
    .step(max_hashes: int) -> bool          try up to max_hashes nonces; True once found
    .done (bool), .active (bool), .hashes (hashes tried in this job, saturates at 2^30 - 1)
    .nonce_lo16, .nonce_hi16                the found nonce as halves (no bigint on the Pico)
    .nonce                                  the found nonce as an int (a bigint on a 32-bit port
                                            when >= 2^30: read it off the beat path)
    .exhausted (bool)                       all 2^32 nonces tried without success
    .cancel()
verify(record, nonce, bits) -> bool         one hash
leading_zero_bits(digest) -> int
mint(record, bits, limit=None) -> int       blocking convenience (host, tests); ValueError when the
                                            nonce space (or limit) is exhausted
expected_hashes(bits) -> int                2^bits (mean work)
"""
import hashlib
import struct
import sys

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

_MAX_BITS = const(32)
_HASH_CAP = const(0x3FFFFFFF)


def _check_bits(bits):
    if not (isinstance(bits, int) and 0 <= bits <= _MAX_BITS):
        raise ValueError("difficulty must be an int in 0..32 leading zero bits, got %r" % (bits,))


def leading_zero_bits(digest):
    n = 0
    for b in digest:
        if b == 0:
            n += 8
            continue
        m = 0x80
        while not b & m:
            n += 1
            m >>= 1
        return n
    return n


def _meets(d, nfull, mask):
    for i in range(nfull):
        if d[i]:
            return False
    if mask and nfull < 32:
        return not (d[nfull] & mask)
    return True


def _scan(sha, buf, o, b0, end, m0, nfull, mask):
    # nonce low byte b0 .. end-1 (end <= 256): the first that meets the difficulty, or -1
    while b0 < end:
        buf[o] = b0
        d = sha(buf).digest()
        if not (d[0] & m0) and _meets(d, nfull, mask):
            return b0
        b0 += 1
    return -1


if sys.implementation.name == "micropython":
    import micropython

    @micropython.native
    def _scan(sha, buf, o, b0, end, m0, nfull, mask):  # noqa: F811 - same code, machine code
        while b0 < end:
            buf[o] = b0
            d = sha(buf).digest()
            if not (d[0] & m0) and _meets(d, nfull, mask):
                return b0
            b0 += 1
        return -1


if sys.implementation.name == "micropython":
    from shared.sha256 import Sha256

    @micropython.native
    def _scan_block(sha, blk, o, b0, end, bits):  # noqa: F811
        # one-block records: nonce byte 0 at blk[o]; chaining value from the IV each try
        while b0 < end:
            blk[o] = b0
            sha.load_iv()
            sha.compress()
            if sha.lead0() >= bits:
                return b0
            b0 += 1
        return -1
else:
    Sha256 = None


def verify(record, nonce, bits):
    """True when SHA-256(record || nonce u32 LE) has >= bits leading zero bits."""
    _check_bits(bits)
    if not 0 <= nonce <= 0xFFFFFFFF:
        return False
    h = hashlib.sha256(record)
    h.update(struct.pack("<HH", nonce & 0xFFFF, (nonce >> 16) & 0xFFFF))
    return _meets(h.digest(), bits >> 3, (0xFF << (8 - (bits & 7))) & 0xFF)


def expected_hashes(bits):
    return 1 << bits


class Miner:
    def __init__(self):
        self._buf = bytearray(0)
        self._off = 0
        self._nfull = 0
        self._mask = 0
        self._m0 = 0
        self._b0 = 0
        self._b1 = 0
        self._hi = 0
        self.hashes = 0
        self.nonce_lo16 = 0
        self.nonce_hi16 = 0
        self.done = False
        self.active = False
        self.exhausted = False
        self.bits = 0
        # the one-block hasher, made now (a long-lived object made at the first start() would
        # land in the heap's hole for the beat's frames, device/runner.py)
        self._sha = Sha256() if Sha256 is not None else None

    def start(self, record, bits):
        _check_bits(bits)
        n = len(record)
        if Sha256 is not None and n + 4 <= 55:
            # the whole message in one block: record | nonce | 0x80 | zeros | bit length
            if self._sha is None:
                self._sha = Sha256()
            blk = self._sha.block
            for i in range(n):
                blk[i] = record[i]
            for i in range(n, 64):
                blk[i] = 0
            blk[n + 4] = 0x80
            bl = (n + 4) << 3
            blk[62] = bl >> 8
            blk[63] = bl & 0xFF
            self._buf = blk
        else:
            if len(self._buf) != n + 4 or self._buf is (self._sha.block if self._sha else None):
                self._buf = bytearray(n + 4)
            buf = self._buf
            buf[0:n] = record
            buf[n] = buf[n + 1] = buf[n + 2] = buf[n + 3] = 0
        self._off = n
        self.bits = bits
        self._nfull = bits >> 3
        self._mask = (0xFF << (8 - (bits & 7))) & 0xFF
        # first-byte filter: every candidate must pass it (all 8 bits when bits >= 8)
        self._m0 = 0xFF if bits >= 8 else self._mask
        self._b0 = 0
        self._b1 = 0
        self._hi = 0
        self.hashes = 0
        self.done = False
        self.exhausted = False
        self.active = True

    def cancel(self):
        self.active = False

    def step(self, max_hashes):
        if not self.active:
            return self.done
        buf = self._buf
        o = self._off
        m0 = self._m0
        nf = self._nfull
        mk = self._mask
        one = self._sha is not None and buf is self._sha.block
        sha = self._sha if one else hashlib.sha256
        bits = self.bits
        left = max_hashes
        b0 = self._b0
        while left > 0:
            end = b0 + left
            if end > 256:
                end = 256
            if one:
                r = _scan_block(sha, buf, o, b0, end, bits)
            else:
                r = _scan(sha, buf, o, b0, end, m0, nf, mk)
            if r >= 0:
                self._count(max_hashes - left + r - b0 + 1)
                self._b0 = r
                self._found()
                return True
            left -= end - b0
            b0 = end
            if b0 == 256:
                b0 = 0
                if self._carry():
                    self._b0 = 0
                    self._count(max_hashes - left)
                    return False
        self._b0 = b0
        self._count(max_hashes)
        return False

    def _count(self, n):
        h = self.hashes + n
        self.hashes = h if h < _HASH_CAP else _HASH_CAP

    def _carry(self):
        # advance nonce bytes 1..3 after byte 0 wrapped; True when all 2^32 nonces are used
        o = self._off
        buf = self._buf
        b1 = self._b1 + 1
        if b1 == 256:
            b1 = 0
            hi = self._hi + 1
            if hi == 65536:
                self.active = False
                self.exhausted = True
                return True
            self._hi = hi
            buf[o + 2] = hi & 0xFF
            buf[o + 3] = hi >> 8
        self._b1 = b1
        buf[o + 1] = b1
        return False

    def _found(self):
        self.nonce_lo16 = self._b0 | (self._b1 << 8)
        self.nonce_hi16 = self._hi
        self.done = True
        self.active = False

    @property
    def nonce(self):
        return (self.nonce_hi16 << 16) | self.nonce_lo16


def mint(record, bits, limit=None):
    """Blocking mint (host/tests): the smallest nonce that meets `bits`."""
    m = Miner()
    m.start(record, bits)
    tried = 0
    while True:
        if m.step(4096):
            return m.nonce
        tried += 4096
        if m.exhausted or (limit is not None and tried >= limit):
            raise ValueError("no nonce with %d leading zero bits in %d hashes" % (bits, tried))
