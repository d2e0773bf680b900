# Seeded mutation fuzz of the decoder and the COBS deframer, on both runtimes (bounded work:
# a few thousand mutated frames). Every mutated frame must either raise a ProtocolError or
# decode to a valid frame that re-encodes to exactly the mutated bytes; nothing else escapes.
import random

from shared import cobs
from shared import protocol as P
from shared.auth import Auth
from shared.frame_encoder import Encoder
from shared.wire_errors import ProtocolError

N_MUTANTS = 3000
KEY = Auth(bytes(range(7, 39)))


def _seed_frames():
    out = []
    for a in (None, KEY):
        enc = Encoder(17, 4242, auth=a)
        out.append((bytes(enc.hello(0, 1, b"pico", 0, 3, 1, 0x2FD, 1000, 4211, 2147, 10, 12, 0,
                                    16, 1, 32, 500, 1, 0)), a))
        out.append((bytes(enc.telemetry(0, 2, 100, 4211, 12, -70000, 65000, 123456, 654321, 4,
                                        60000, -1200, 33000, 2000, 22937, 0x41)), a))
        enc.batch_add(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 0)
        enc.batch_add(2, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 3)
        out.append((bytes(enc.batch_flush(0, 3)), a))
        out.append((bytes(enc.witness(0, 4, 7, 1, 100, 3, 40000, 30000, -250, 16, 91823)), a))
        out.append((bytes(enc.heartbeat(0, 5, 237, 12, 410, 1203, 143360, 2, 9, 1, 2, 0, 0, 0,
                                        0)), a))
        out.append((P.encode(P.CONFIG, {"config_version": 3, "pairs": [[1, 2], [3, 62259]]},
                             0, 4242, 0, auth=a), a))
        out.append((P.encode(P.MODEL, {"model_version": 2, "bias": -1.5, "w_level": 0.0, "w_kurt": 0.0,
                                            "w_crest": 0.0, "w_anoms": 0.125}, 0, 4242, 1,
                             auth=a), a))
    return out


def _mutate(rng, b):
    b = bytearray(b)
    k = rng.getrandbits(3)
    n = len(b)
    if k <= 2 and n:  # flip one bit (most common)
        i = rng.getrandbits(16) % n
        b[i] ^= 1 << rng.getrandbits(3)
    elif k == 3 and n:  # set a byte
        b[rng.getrandbits(16) % n] = rng.getrandbits(8)
    elif k == 4:  # insert bytes
        i = rng.getrandbits(16) % (n + 1)
        ins = bytearray(1 + rng.getrandbits(2))
        for j in range(len(ins)):
            ins[j] = rng.getrandbits(8)
        b = b[:i] + ins + b[i:]
    elif k == 5 and n:  # delete bytes
        i = rng.getrandbits(16) % n
        b = b[:i] + b[i + 1 + rng.getrandbits(2):]
    elif k == 6:  # truncate
        b = b[:rng.getrandbits(16) % (n + 1)]
    else:  # two bit flips with the CRC recomputed: exercises the checks behind the CRC
        if n > 8:
            for _ in range(2):
                i = rng.getrandbits(16) % (n - 4)
                b[i] ^= 1 << rng.getrandbits(3)
            from shared.crc import crc32_store
            crc32_store(b, n - 4)
    return bytes(b)


def test_mutated_frames_rejected_or_valid():
    rng = random
    rng.seed(20261122)
    seeds = _seed_frames()
    rejected = accepted = 0
    reasons = {}
    for i in range(N_MUTANTS):
        good, a = seeds[i % len(seeds)]
        bad = _mutate(rng, good)
        try:
            f = P.decode(bad, auth=a)
        except ProtocolError as e:
            rejected += 1
            reasons[e.reason] = reasons.get(e.reason, 0) + 1
            continue
        accepted += 1
        again = P.encode(f.type, f.fields, f.device_id, f.boot_id, f.seq, f.time_era, f.time_off,
                         auth=a if f.auth else None, batch=f.batch)
        assert again == bad, "accepted mutant does not re-encode to itself"
    assert rejected > N_MUTANTS * 8 // 10, (rejected, accepted)
    assert reasons.get("crc", 0) > 0 and len(reasons) >= 4, reasons


def test_deframer_survives_noise():
    rng = random
    rng.seed(7)
    enc = Encoder(3, 9, cobs=True)
    d = cobs.Deframer()
    good = 0
    sent = 0
    for i in range(300):
        chunk = bytearray(bytes(enc.ack(0, i, 2, 0, i)))
        sent += 1
        r = rng.getrandbits(3)
        if r == 0:  # noise before the frame
            chunk = bytearray(b"\r\x02") + chunk
        elif r == 1:  # noise inside the frame (this frame is lost)
            j = 1 + rng.getrandbits(8) % (len(chunk) - 2)
            chunk = chunk[:j] + bytearray(b"\r\x02") + chunk[j:]
        elif r == 2:  # a random byte anywhere, possibly 0x00
            j = rng.getrandbits(8) % len(chunk)
            chunk[j] = rng.getrandbits(8)
        for seg in d.feed(chunk):
            try:
                f = P.decode(seg)
            except ProtocolError:
                continue
            assert f.type == P.ACK
            good += 1
    assert sent * 6 // 10 <= good <= sent, (good, sent)
