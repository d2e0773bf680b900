"""SHA-256 compression that allocates nothing (FIPS 180-4), for the device's proof of work and
frame signing; the same API on CPython runs on hashlib.

Why: MicroPython's hashlib has no copy() and no in-place digest, so every hash allocates its
object and a 32-byte digest (~224 bytes on the unix port). Mining and signing in the steady beat
would fill the Pico's heap with garbage, and a collection there takes ~24 ms, six beats. This
module keeps the chaining state, the message schedule and the block in preallocated arrays and
runs the compression in viper (machine words; every sum is masked to 32 bits so a 64-bit unix
port computes what the Pico computes), or on the Pico in Thumb assembly (shared/sha256_thumb.py).

Public API (both runtimes; tests check it against hashlib)
----------
Sha256()
    .load_iv() / .save_mid(slot) / .load_mid(slot)    chaining value: the IV, or a midstate kept
                                                     in one of two slots (HMAC's ipad and opad)
    .block                                           bytearray(64): the block to compress
    .compress()                                      one block into the chaining value
    .hash_tail(buf, start, n, prefix_len) -> None     hash buf[start:start+n] as the end of a
                                                     message that began with prefix_len bytes
                                                     already compressed (padding included)
    .h                                               the chaining value, 8 words (array('I'))
    .digest_into(out, off, nbytes)                    big-endian digest bytes into out
    .lead0()                                         leading zero bits of the digest (0..32,
                                                     capped: enough for difficulties <= 32)
"""
import array
import sys

from shared.compat import micropython, const  # noqa: F401
try:
    from shared.compat import ptr8, ptr32, uint    # CPython stand-ins; viper has them built in
except ImportError:
    pass

_MPY = sys.implementation.name == "micropython"

_K = (0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
      0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
      0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
      0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
      0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
      0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
      0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
      0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
      0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
      0xc67178f2)
_IV = (0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
       0x5be0cd19)


def _words(vals):
    # array('I') from values that may not be small ints on the Pico, built from 16-bit halves
    a = array.array("I", bytes(4 * len(vals)))
    for i in range(len(vals)):
        v = vals[i]
        a[i] = v
    return a


_KW = _words(_K)

# On the Pico the compression is Thumb-1 assembly (shared/sha256_thumb.py: 85 us a block at
# 125 MHz against 322 us in viper, measured on the emulated RP2040), with one scratch area for
# every Sha256 (the message schedule and the round window: 136 words)
_thumb = None
if sys.platform == "rp2":
    from shared.sha256_thumb import compress as _thumb
    _SCRATCH = array.array("I", bytes(4 * 136))


@micropython.viper
def _compress(h, w, blk, k):
    H = ptr32(h)
    W = ptr32(w)
    B = ptr8(blk)
    K = ptr32(k)
    m = (uint(0xFFFF) << 16) | uint(0xFFFF)
    i = 0
    while i < 16:
        j = i << 2
        W[i] = (uint(B[j]) << 24) | (uint(B[j + 1]) << 16) | (uint(B[j + 2]) << 8) | uint(B[j + 3])
        i += 1
    while i < 64:
        x = uint(W[i - 15])
        s0 = (((x >> 7) | (x << 25)) ^ ((x >> 18) | (x << 14)) ^ (x >> 3)) & m
        x = uint(W[i - 2])
        s1 = (((x >> 17) | (x << 15)) ^ ((x >> 19) | (x << 13)) ^ (x >> 10)) & m
        W[i] = (uint(W[i - 16]) + s0 + uint(W[i - 7]) + s1) & m
        i += 1
    a = uint(H[0])
    b = uint(H[1])
    c = uint(H[2])
    d = uint(H[3])
    e = uint(H[4])
    f = uint(H[5])
    g = uint(H[6])
    hh = uint(H[7])
    i = 0
    while i < 64:
        S1 = (((e >> 6) | (e << 26)) ^ ((e >> 11) | (e << 21)) ^ ((e >> 25) | (e << 7))) & m
        ch = (e & f) ^ ((e ^ m) & g)
        t1 = (hh + S1 + ch + uint(K[i]) + uint(W[i])) & m
        S0 = (((a >> 2) | (a << 30)) ^ ((a >> 13) | (a << 19)) ^ ((a >> 22) | (a << 10))) & m
        mj = (a & b) ^ (a & c) ^ (b & c)
        t2 = (S0 + mj) & m
        hh = g
        g = f
        f = e
        e = (d + t1) & m
        d = c
        c = b
        b = a
        a = (t1 + t2) & m
        i += 1
    H[0] = (uint(H[0]) + a) & m
    H[1] = (uint(H[1]) + b) & m
    H[2] = (uint(H[2]) + c) & m
    H[3] = (uint(H[3]) + d) & m
    H[4] = (uint(H[4]) + e) & m
    H[5] = (uint(H[5]) + f) & m
    H[6] = (uint(H[6]) + g) & m
    H[7] = (uint(H[7]) + hh) & m


@micropython.viper
def _copy8(src, so: int, dst, do: int, n: int):
    s = ptr8(src)
    d = ptr8(dst)
    i = 0
    while i < n:
        d[do + i] = s[so + i]
        i += 1


@micropython.viper
def _zero8(dst, do: int, n: int):
    d = ptr8(dst)
    i = 0
    while i < n:
        d[do + i] = 0
        i += 1


@micropython.viper
def _copy32(src, so: int, dst, do: int, n: int):
    # word by word in viper: reading an array('I') element >= 2^30 from Python makes a long
    # int on the Pico (an allocation per word)
    s = ptr32(src)
    d = ptr32(dst)
    i = 0
    while i < n:
        d[do + i] = s[so + i]
        i += 1


@micropython.viper
def _lead0(h) -> int:
    H = ptr32(h)
    x = uint(H[0])
    if x == uint(0):
        return 32
    n = 0
    top = uint(1) << 31
    while (x & top) == uint(0):
        n += 1
        x <<= 1
    return n


@micropython.viper
def _digest_into(h, out, off: int, nbytes: int):
    H = ptr32(h)
    o = ptr8(out)
    i = 0
    while i < nbytes:
        x = uint(H[i >> 2])
        o[off + i] = (x >> (24 - ((i & 3) << 3))) & 0xFF
        i += 1


class Sha256:
    def __init__(self):
        self.h = array.array("I", bytes(32))
        self._mid = array.array("I", bytes(64))       # two saved midstates
        self._w = None if _thumb is not None else array.array("I", bytes(256))
        self.block = bytearray(64)
        self._iv = _words(_IV)
        self.load_iv()

    def load_iv(self):
        _copy32(self._iv, 0, self.h, 0, 8)

    def save_mid(self, slot):
        _copy32(self.h, 0, self._mid, 8 * slot, 8)

    def load_mid(self, slot):
        _copy32(self._mid, 8 * slot, self.h, 0, 8)

    def compress(self):
        if _thumb is not None:
            _thumb(self.h, self.block, _KW, _SCRATCH)
        else:
            _compress(self.h, self._w, self.block, _KW)

    def hash_tail(self, buf, start, n, prefix_len):
        """Compress buf[start:start+n] as the end of a message whose first prefix_len bytes
        (a multiple of 64) are already in the chaining value, with the padding."""
        blk = self.block
        while n >= 64:
            _copy8(buf, start, blk, 0, 64)
            self.compress()
            start += 64
            n -= 64
            prefix_len += 64
        total = prefix_len + n
        _copy8(buf, start, blk, 0, n)
        blk[n] = 0x80
        if n + 1 > 56:
            _zero8(blk, n + 1, 63 - n)
            self.compress()
            _zero8(blk, 0, 56)
        else:
            _zero8(blk, n + 1, 55 - n)
        bits = total << 3          # a frame or record is far below 2^29 bytes
        blk[56] = 0
        blk[57] = 0
        blk[58] = 0
        blk[59] = 0
        blk[60] = (bits >> 24) & 0xFF
        blk[61] = (bits >> 16) & 0xFF
        blk[62] = (bits >> 8) & 0xFF
        blk[63] = bits & 0xFF
        self.compress()

    def digest_into(self, out, off, nbytes=32):
        _digest_into(self.h, out, off, nbytes)

    def lead0(self):
        return _lead0(self.h)
