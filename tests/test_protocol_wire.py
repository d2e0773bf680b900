"""Host receive path (host/wire/telemetry.py): counters, auth/replay order, numpy batch decode."""
import hmac
import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest

from becomingone.wire.receive import Receiver
from becomingone.wire.telemetry import BEAT_DTYPE, decode_telemetry_batch
from shared import protocol as P
from shared.auth import Auth, ReplayGuard, hmac_sha256
from shared.frame_encoder import Encoder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEY = bytes(range(100, 132))
TEL = (100, 4211, 12, -70000, 65000, 123456, 654321, 4, 60000, -1200, 33000, 2000, 22937, 0x49,
       -300, 420, 811, 7)


def _tel(i):
    t = list(TEL)
    t[0] = i
    t[3] = -i
    return t


def test_hmac_matches_cpython_for_many_lengths():
    for n in (0, 1, 55, 56, 63, 64, 65, 127, 128, 129, 1000):
        msg = os.urandom(n)
        k = os.urandom(32)
        assert hmac_sha256(k, msg) == hmac.new(k, msg, hashlib.sha256).digest()


def test_receiver_counts_every_reason_and_never_raises():
    rx = Receiver(keys={9: KEY})
    signed = Encoder(9, 5, auth=Auth(KEY), cobs=True)
    plain = Encoder(4, 6, cobs=True)
    stream = b"\r\x02"  # mpremote's interrupt bytes: a junk segment
    stream += bytes(signed.telemetry(0, 1, *TEL))
    f2 = bytes(signed.telemetry(0, 2, *TEL))
    stream += f2 + f2  # replay
    stream += bytes(plain.telemetry(0, 3, *TEL))
    wrong_key = Encoder(9, 5, auth=Auth(bytes(32)), cobs=True)
    wrong_key.seq = 10
    stream += bytes(wrong_key.telemetry(0, 4, *TEL))  # bad tag
    unsigned9 = Encoder(9, 5, cobs=True)
    unsigned9.seq = 11
    stream += bytes(unsigned9.telemetry(0, 5, *TEL))  # unsigned from a keyed device
    mid = bytes(plain.ack(0, 6, 2, 0, 0))
    stream += mid[:10] + b"\r\x02" + mid[10:]  # stray bytes inside a frame
    stream += b"\x00" + b"\x07" * 400 + b"\x00"  # oversize segment
    stream += bytes(plain.heartbeat(0, 7, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13))
    frames = []
    for i in range(0, len(stream), 7):
        frames += rx.feed(stream[i:i + 7])
    assert [f.type for f in frames] == [P.TELEMETRY, P.TELEMETRY, P.TELEMETRY, P.HEARTBEAT]
    c = rx.counters
    assert c["ok"] == 4 and c["replay"] == 1 and c["auth"] == 2 and c["oversize"] == 1
    assert c["cobs"] + c["crc"] + c["short"] + c["length"] >= 2
    assert c["internal"] == 0
    assert KEY.hex() not in repr(rx) and KEY.hex() not in str(rx.last_error)


def test_tag_checked_before_replay_state():
    """A forged frame with a future seq must not advance the window (pymavlink's flaw)."""
    rx = Receiver(keys={9: KEY})
    forger = Encoder(9, 5, auth=Auth(bytes(32)))
    forger.seq = 1000
    assert rx.datagram(bytes(forger.telemetry(0, 0, *TEL))) is None
    good = Encoder(9, 5, auth=Auth(KEY))
    assert rx.datagram(bytes(good.telemetry(0, 0, *TEL))) is not None  # seq 0 still fine


def test_datagram_garbage_counted():
    rx = Receiver()
    for junk in (b"", b"\x00", os.urandom(19), os.urandom(300), b"\x10" * 60):
        assert rx.datagram(junk) is None
    assert rx.counters["ok"] == 0 and rx.rejected == 5 and rx.counters["internal"] == 0


def _per_frame_rows(frames):
    rows = []
    for b in frames:
        try:
            f = P.decode(b)
        except Exception:
            continue
        if f.type != P.TELEMETRY:
            continue
        recs = f.fields["records"] if f.batch else [f.fields]
        for i, r in enumerate(recs):
            rows.append((f.device_id, f.boot_id, f.seq, f.time_us, i, len(recs))
                        + tuple(r[n] for n in P.TELEMETRY_FIELDS))
    return rows


def test_batch_decode_equals_per_frame_decode():
    enc = Encoder(7, 99)
    frames = [bytes(enc.telemetry(i % 3, 1000 + i, *_tel(i))) for i in range(200)]
    for k in range(1, P.MAX_BATCH + 1):
        for j in range(k):
            enc.batch_add(*_tel(500 + j))
        frames.insert(10 * k, bytes(enc.batch_flush(1, 77)))
    bad = bytearray(frames[5])
    bad[40] ^= 0xFF
    frames[5] = bytes(bad)
    frames.append(P.encode(P.ACK, {"acked_type": 2, "status": 0, "ref": 1}, 7, 99, 1))
    frames.append(b"\x01\x02")
    res = decode_telemetry_batch(frames)
    want = _per_frame_rows(frames)
    assert res.beats.dtype == BEAT_DTYPE
    assert [tuple(r) for r in res.beats.tolist()] == want
    assert res.rejects == {"crc": 1, "not_telemetry": 1, "short": 1}
    assert res.frames_ok == 199 + P.MAX_BATCH


def test_batch_decode_blob_and_replay_and_auth():
    enc = Encoder(3, 4)
    frames = [bytes(enc.telemetry(0, i, *_tel(i))) for i in range(50)]
    blob = b"".join(frames + frames[:5]) + b"\x01\x02\x03"
    g = ReplayGuard()
    res = decode_telemetry_batch(blob, frame_size=P.frame_size(P.TELEMETRY), replay=g)
    assert len(res.beats) == 50 and res.rejects == {"length": 1, "replay": 5}
    assert np.array_equal(res.beats["beat"], np.arange(50))
    a = Auth(KEY)
    senc = Encoder(3, 4, auth=a)
    sframes = [bytes(senc.telemetry(0, i, *_tel(i))) for i in range(20)]
    forged = bytearray(sframes[3])
    forged[-6] ^= 1
    from shared.crc import crc32_store
    crc32_store(forged, len(forged) - 4)
    sframes[3] = bytes(forged)
    res = decode_telemetry_batch(sframes, keys={3: KEY})
    assert len(res.beats) == 19 and res.rejects == {"auth": 1}
    res = decode_telemetry_batch(sframes)  # no keys: signed frames are not accepted
    assert len(res.beats) == 0 and res.rejects.get("auth") == 20


def test_golden_vector_file_is_current():
    p = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "gen_vectors.py"),
                        "--check"], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr


def test_host_seq_after_restart_stays_above():
    from becomingone.devices.sessions import host_seq_after
    t = 1763784000.0
    s = host_seq_after(None, t)
    seqs = [s]
    for i in range(100):  # a burst faster than the clock runs ahead
        seqs.append(host_seq_after(seqs[-1], t + i * 0.001))
    assert all(b == a + 1 for a, b in zip(seqs, seqs[1:]))
    restarted = host_seq_after(None, t + 20.0)  # 20 s later, previous seq forgotten
    assert restarted > seqs[-1] and restarted < P.SEQ_LIMIT


def test_witness_record_works_with_pow():
    from shared import pow as pow_
    from shared.frame_encoder import witness_record_into
    f = {"witness_id": 7, "kind": 1, "beat": 1234, "decision": 3, "threat": 42316,
         "coherence": 30000, "value": -250, "pow_bits": 10, "nonce": 0}
    rec = P.witness_record(17, 0x2A5C, f)
    assert len(rec) == 23 and rec[:4] == bytes.fromhex("11005c2a")
    buf = bytearray(23)
    witness_record_into(buf, 0, 17, 0x2A5C, 7, 1, 1234, 3, 42316, 30000, -250, 10)
    assert bytes(buf) == rec
    f["nonce"] = pow_.mint(rec, 10)
    frame = Encoder(17, 0x2A5C).witness(0, 1, *[f[n] for n in P.WITNESS_FIELDS])
    got = P.decode(bytes(frame))
    assert pow_.verify(P.witness_record(got.device_id, got.boot_id, got.fields),
                       got.fields["nonce"], got.fields["pow_bits"])
    other = P.witness_record(18, 0x2A5C, got.fields)  # another device cannot reuse the stamp
    assert not pow_.verify(other, got.fields["nonce"], 10)  # fixed inputs: deterministic


def test_telemetry_period_saturates_and_hello_gives_the_exact_one():
    from becomingone.wire.telemetry import telemetry_period_us
    from shared.frame_encoder import Encoder
    enc = Encoder(17, 0x2A5C)
    args = (3, 0, 10, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0)
    for period, wire in ((4211, 4211), (65534, 65534), (65535, 65535), (100000, 65535),
                         (2**29, 65535)):
        f = P.decode(bytes(enc.telemetry(0, 1, args[0], period, *args[2:])))
        assert f.fields["period_us"] == wire
        assert telemetry_period_us(wire, {"period_us": period}) == period
    assert telemetry_period_us(4211, {"period_us": 9999}) == 4211   # not saturated: as sent
    assert telemetry_period_us(65535, None) == 65535                 # no HELLO: a lower bound
    res = decode_telemetry_batch([bytes(enc.telemetry(0, 2, 5, 100000, *args[2:]))])
    assert res.beats["period_us"][0] == 65535


def test_header_era_u8_and_n_samples_u8_bounds():
    from shared.frame_encoder import Encoder
    from shared.wire_errors import FieldError
    fields = {"reason": 1, "ref": 0}
    assert P.decode(P.encode(P.CLEAR, fields, 0, 5, 0, 255, 7)).time_era == 255
    with pytest.raises(FieldError, match="time_era 256"):
        P.encode(P.CLEAR, fields, 0, 5, 0, 256, 7)
    enc = Encoder(17, 5)
    f = P.decode(bytes(enc.telemetry(255, 9, 1, 4211, 0, 0, 0, 0, 0, 255, 0, 0, 0, 0, 0, 0)))
    assert f.time_era == 255 and f.fields["n_samples"] == 255
    with pytest.raises(ValueError, match="era > 255"):
        enc.telemetry(256, 9, 1, 4211, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0)
    from shared.frame_encoder import SEQ_ROLL
    enc.seq = SEQ_ROLL
    assert enc.needs_new_boot
    enc.set_boot(6)
    assert not enc.needs_new_boot and enc.seq == 0
