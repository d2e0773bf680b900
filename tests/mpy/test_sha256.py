# Allocation-free SHA-256 (shared/sha256.py) against hashlib, and the miner and HMAC built on it.
import gc
import hashlib
import sys

from shared.sha256 import Sha256
from shared.auth import Auth, hmac_sha256
from shared.pow import Miner, verify

MPY = sys.implementation.name == "micropython"


def test_digests_match_hashlib():
    s = Sha256()
    out = bytearray(32)
    for n in (0, 1, 27, 55, 56, 63, 64, 65, 119, 120, 200, 255):
        msg = bytes((i * 7 + n) & 0xFF for i in range(n))
        s.load_iv()
        s.hash_tail(msg, 0, n, 0)
        s.digest_into(out, 0)
        assert bytes(out) == hashlib.sha256(msg).digest(), n


def test_leading_zero_bits():
    s = Sha256()
    # a known nonce search: the digest's leading zeros agree with the bytes
    for nonce in range(300):
        msg = b"rec" + bytes([nonce & 0xFF, nonce >> 8])
        s.load_iv()
        s.hash_tail(msg, 0, len(msg), 0)
        d = hashlib.sha256(msg).digest()
        z = 0
        for b in d[:4]:
            if b == 0:
                z += 8
                continue
            while not b & 0x80:
                z += 1
                b <<= 1
            break
        assert s.lead0() == min(z, 32)


def test_hmac_tags_match_and_do_not_allocate():
    key = bytes(range(32))
    a = Auth(key)
    for n in (10, 55, 63, 64, 100, 200):
        buf = bytearray(bytes((i * 3 + n) & 0xFF for i in range(n)) + bytes(8))
        a.tag_into(buf, n)
        assert bytes(buf[n:n + 8]) == hmac_sha256(key, bytes(buf[:n]))[:8]
        assert a.verify(buf, n)
        buf[0] ^= 1
        assert not a.verify(buf, n)
    if MPY:
        buf = bytearray(80)
        a.tag_into(buf, 62)
        gc.collect()
        a0 = gc.mem_alloc()
        for _ in range(20):
            a.tag_into(buf, 62)
        assert gc.mem_alloc() - a0 == 0


def test_miner_one_block_records_do_not_allocate_per_hash():
    rec = bytes(range(23))                      # a WITNESS record
    m = Miner()
    m.start(rec, 10)
    while not m.step(64):
        pass
    assert verify(rec, m.nonce, 10)
    if MPY:
        m.start(rec, 20)                         # a long search
        m.step(64)
        gc.collect()
        a0 = gc.mem_alloc()
        m.step(256)
        assert gc.mem_alloc() - a0 < 64          # the step call, not a hash object per try
