# Hashcash proof of traversal (shared/pow.py). Runs under pytest and MicroPython.
# The vectors were computed on CPython with an independent implementation
# (256 - int.from_bytes(sha256(record + n.to_bytes(4, "little")), "big").bit_length()).
import sys
import gc

from shared import pow as P

MPY = sys.implementation.name == "micropython"

VECTORS = [  # (record, [(bits, smallest nonce), ...])
    (b"", [(0, 0), (1, 1), (4, 10), (8, 85), (12, 85), (16, 21462)]),
    (b"BecomingONE witness", [(0, 0), (1, 1), (4, 11), (8, 319), (12, 319), (16, 134946)]),
    (bytes(range(52)), [(0, 0), (1, 0), (4, 45), (8, 290), (12, 2426), (16, 2426)]),
    (b"x" * 120, [(0, 0), (1, 1), (4, 1), (8, 65), (12, 760), (16, 24795)]),
]


def test_vectors_mint_and_verify():
    for rec, cases in VECTORS:
        for bits, nonce in cases:
            assert P.mint(rec, bits) == nonce, (rec[:8], bits)
            assert P.verify(rec, nonce, bits)
            if nonce > 0:
                assert not P.verify(rec, nonce - 1, bits)   # the smallest one was found


def test_incremental_slices_and_halves():
    m = P.Miner()
    m.start(b"BecomingONE witness", 16)        # nonce 134946 = 0x00020F22: crosses 2^16
    slices = 0
    while not m.step(1000):
        slices += 1
        assert m.active and not m.done
    assert slices == 134
    assert m.done and not m.active
    assert m.nonce == 134946 and m.nonce_lo16 == 134946 & 0xFFFF and m.nonce_hi16 == 2
    assert m.hashes == 134947
    assert m.step(10) is True                  # idle after done: no work, still done


def test_leading_zero_bits_and_verify_edges():
    assert P.leading_zero_bits(bytes(32)) == 256
    assert P.leading_zero_bits(b"\x00\x01" + bytes(30)) == 15
    assert P.leading_zero_bits(b"\x80") == 0
    assert not P.verify(b"abc", -1, 4) and not P.verify(b"abc", 1 << 32, 4)
    for bad in (-1, 33, 2.5):
        try:
            P.verify(b"abc", 0, bad)
        except ValueError:
            continue
        raise AssertionError(bad)
    assert P.expected_hashes(20) == 1 << 20


def test_exhaustion_reported():
    m = P.Miner()
    m.start(b"r", 32)
    m._b0, m._b1, m._hi = 255, 255, 65535      # the last nonce 0xFFFFFFFF
    m._buf[1] = m._buf[2] = m._buf[3] = m._buf[4] = 255
    found = m.step(5)
    assert not found and m.exhausted and not m.active


def test_restart_reuses_buffer():
    m = P.Miner()
    m.start(b"a" * 40, 4)
    buf = m._buf
    m.step(100)
    m.start(b"b" * 40, 4)                      # same length: no new buffer
    assert m._buf is buf
    assert m.step(1000) and P.verify(b"b" * 40, m.nonce, 4)


def test_allocation_idle_zero_and_per_hash_small():
    if not MPY:
        return
    m = P.Miner()
    m.start(bytes(48), 30)
    m.step(10)
    m.cancel()
    m.step(10)                                 # warm the call paths
    m.start(bytes(48), 30)
    m.step(10)
    rec = bytes(48)
    gc.collect()
    gc.disable()
    try:
        a0 = gc.mem_alloc()
        m.cancel()
        for _ in range(100):
            m.step(50)                         # idle: nothing
        a1 = gc.mem_alloc()
        m.start(rec, 30)
        a2 = gc.mem_alloc()
        m.step(200)
        a3 = gc.mem_alloc()
    finally:
        gc.enable()
    assert a1 - a0 == 0, a1 - a0
    assert a2 - a1 == 0, a2 - a1               # same record length: buffer reused
    per_hash = (a3 - a2) / 200
    assert per_hash <= 256, per_hash           # hash object + 32-byte digest only
