# Protocol behaviour on both runtimes (pytest on CPython, tests/mpy_runner.py on MicroPython).
from shared import protocol as P
from shared import cobs
from shared.auth import Auth, ReplayGuard, ReplayWindow, hmac_sha256
from shared.frame_encoder import Encoder, witness_record_into
from shared.wire_errors import (AuthError, CrcError, FieldError, FramingError, LengthError,
                                OversizeError, ProtocolError, ReplayError, ShortFrameError,
                                UnknownTypeError, VersionError)
from shared.crc import crc32_store

KEY = bytes(range(1, 33))
TEL = (100, 4211, 12, -70000, 65000, 123456, 654321, 4, 60000, -1200, 33000, 2000, 22937, 0x49,
       -300, 420, 811, 7)


def _raises(cls, fn, *a, **kw):
    try:
        fn(*a, **kw)
    except cls as e:
        return e
    except Exception as e:  # noqa: BLE001 - report the wrong type
        raise AssertionError("expected %s, got %s: %s" % (cls.__name__, type(e).__name__, e))
    raise AssertionError("expected %s, nothing raised" % cls.__name__)


def _refix_crc(b, auth=None):
    b = bytearray(b)
    end = len(b) - 4
    if auth is not None:
        auth.tag_into(b, end - 8)
    crc32_store(b, end)
    return bytes(b)


def test_telemetry_roundtrip_and_size():
    enc = Encoder(7, 0x1234)
    b = bytes(enc.telemetry(2, 77, *TEL))
    assert len(b) == 63 == P.frame_size(P.TELEMETRY)
    f = P.decode(b)
    assert f.type == P.TELEMETRY and f.device_id == 7 and f.boot_id == 0x1234
    assert f.seq == 0 and f.time_era == 2 and f.time_off == 77
    for i in range(len(P.TELEMETRY_FIELDS)):
        assert f.fields[P.TELEMETRY_FIELDS[i]] == TEL[i]
    assert P.encode(P.TELEMETRY, f.fields, 7, 0x1234, 0, 2, 77) == b
    assert enc.seq == 1


def test_lateness_saturates():
    enc = Encoder(1, 1)
    t = list(TEL)
    t[2] = 100000
    f = P.decode(bytes(enc.telemetry(0, 0, *t)))
    assert f.fields["lateness_us"] == 65535


def test_batch_roundtrip():
    enc = Encoder(3, 9, batch_max=3)
    for i in range(3):
        t = list(TEL)
        t[0] = 100 + i
        assert enc.batch_add(*t) == i + 1
    b = bytes(enc.batch_flush(0, 5))
    assert len(b) == P.frame_size(P.TELEMETRY, count=3)
    f = P.decode(b)
    assert f.batch and [r["beat"] for r in f.fields["records"]] == [100, 101, 102]
    assert P.encode(P.TELEMETRY, f.fields, 3, 9, 0, 0, 5, batch=True) == b
    assert enc.batch_flush(0, 6) is None


def test_every_device_kind_roundtrips_with_auth_and_cobs():
    a = Auth(KEY)
    enc = Encoder(42, 777, auth=a, cobs=True)
    outs = [bytes(enc.hello(0, 1, b"pico-w", 1, 2, 3, 0x7F, 1000, 4211, 8947849, 10, 12, 0, 16,
                            1, 32, 500, 2, 3)),
            bytes(enc.telemetry(0, 2, *TEL)),
            bytes(enc.witness(0, 3, 9, P.WITNESS_DECISION, 100, 3, 40000, 30000, -7, 16, 99)),
            bytes(enc.ack(0, 4, P.CONFIG, P.ACK_OK, 5)),
            bytes(enc.heartbeat(0, 5, 1000, 30, 400, 900, 150000, 2, 10, 0, 1, 0, 0, 0, 0)),
            bytes(enc.error(0, 6, P.ERR_CONFIG_KEY, P.CONFIG, 5, b"bad key 99")),
            bytes(enc.time_sync_reply(0, 7, 1700000000123456, 0, 6))]
    d = cobs.Deframer()
    frames = d.feed(b"".join(outs))
    assert len(frames) == len(outs)
    types = [P.HELLO, P.TELEMETRY, P.WITNESS, P.ACK, P.HEARTBEAT, P.ERROR, P.TIME_SYNC]
    g = ReplayGuard()
    for i in range(len(frames)):
        f = P.decode(frames[i], auth=a, replay=g)
        assert f.type == types[i] and f.auth and f.seq == i
        assert P.encode(f.type, f.fields, 42, 777, i, 0, i + 1, auth=a) == frames[i]
    assert P.decode(frames[0], auth=a).fields["board"] == "pico-w"
    assert P.decode(frames[5], auth=a).fields["text"] == "bad key 99"
    assert P.decode(frames[6], auth=a).fields["host_t1_us"] == 1700000000123456


def test_host_frames():
    a = Auth(KEY)
    c = P.encode(P.CONFIG, {"config_version": 3, "pairs": [[1, 2], [3, 62259]]}, 0, 5, 0,
                 auth=a)
    f = P.decode(c, auth=a)
    assert f.fields == {"config_version": 3, "pairs": [[1, 2], [3, 62259]]}
    mf = {"model_version": 2, "bias": -1.5, "w_level": 3.125, "w_kurt": 2.75, "w_crest": 0.0,
          "w_anoms": 0.125}
    m = P.decode(P.encode(P.MODEL, mf, 0, 5, 1))
    assert m.fields == mf
    _raises(FieldError, P.encode, P.CONFIG, {"config_version": 1, "pairs": []}, 4, 5, 0)
    _raises(FieldError, P.encode, P.TELEMETRY, {}, 0, 5, 0)
    req = {"mode": P.SYNC_REQUEST, "host_t1_us": 5, "rx_era": 0, "rx_off": 0}
    assert P.decode(P.encode(P.TIME_SYNC, req, 0, 5, 0)).fields["mode"] == P.SYNC_REQUEST
    _raises(FieldError, P.encode, P.TIME_SYNC, req, 3, 5, 0)  # a request from a device
    rep = {"mode": P.SYNC_REPLY, "host_t1_us": 5, "rx_era": 0, "rx_off": 0}
    _raises(FieldError, P.encode, P.TIME_SYNC, rep, 0, 5, 0)  # a reply from the host


def test_errors_are_typed():
    enc = Encoder(7, 8)
    good = bytes(enc.telemetry(0, 0, *TEL))
    _raises(ShortFrameError, P.decode, good[:10])
    _raises(OversizeError, P.decode, good * 5)
    bad = bytearray(good)
    bad[20] ^= 1
    _raises(CrcError, P.decode, bytes(bad))
    _raises(CrcError, P.decode, good + b"\x00")
    _raises(VersionError, P.decode, _refix_crc(b"\x10" + good[1:]))
    _raises(UnknownTypeError, P.decode, _refix_crc(good[:1] + b"\x0c" + good[2:]))
    _raises(LengthError, P.decode, _refix_crc(good[:-4] + b"\x00" + good[-4:]))
    _raises(LengthError, P.decode, _refix_crc(good[:-5] + good[-4:]))
    # a telemetry frame declaring device 0 (host) is not allowed
    _raises(FieldError, P.decode, _refix_crc(good[:2] + b"\x00\x00" + good[4:]))
    e = _raises(ProtocolError, P.decode, good[:10])
    assert e.reason == "short"


def test_auth_rules_and_replay_order():
    a = Auth(KEY)
    other = Auth(bytes(32))
    enc = Encoder(9, 10, auth=a)
    f0 = bytes(enc.telemetry(0, 0, *TEL))
    f1 = bytes(enc.telemetry(0, 1, *TEL))
    g = ReplayGuard()
    _raises(AuthError, P.decode, f0)                      # signed, no key
    _raises(AuthError, P.decode, f0, auth=other, replay=g)  # wrong key
    # the failed tag must not have touched the replay state
    assert g.check(9, 10, 0)
    P.decode(f1, auth={9: a}, replay=g)
    P.decode(f0, auth={9: a}, replay=g)                   # out of order but inside the window
    _raises(ReplayError, P.decode, f0, auth={9: a}, replay=g)
    _raises(ReplayError, P.decode, f1, auth={9: a}, replay=g)
    plain = bytes(Encoder(9, 10).telemetry(0, 0, *TEL))
    _raises(AuthError, P.decode, plain, auth={9: a})      # unsigned but key configured
    forged = bytearray(f1)
    forged[-5] ^= 0x01  # flip a tag bit, fix CRC
    _raises(AuthError, P.decode, _refix_crc(bytes(forged)), auth=a)
    assert "0102" not in repr(a) and "Auth" in repr(a)


def test_replay_window_bitmap():
    w = ReplayWindow(64)
    for s in (5, 3, 70, 10):
        assert w.check(s)
        w.accept(s)
    for s in (70, 10):  # seen
        assert not w.check(s)
    assert not w.check(6) and not w.check(5)  # 64 and 65 behind: outside the 64-wide window
    assert w.check(69) and w.check(7) and w.check(71) and w.check(11)
    w.accept(1000)
    assert not w.check(70) and w.check(999) and not w.check(1000)
    w.accept(999)
    assert not w.check(999) and w.check(998)
    for s in range(1001, 1200):
        w.accept(s)
    assert not w.check(1100) and w.check(1200) and not w.check(1135)
    _raises(ValueError, ReplayWindow, 12)


def test_replay_guard_is_per_device_and_boot():
    g = ReplayGuard(size=64, max_streams=2)
    g.accept(1, 1, 5)
    assert not g.check(1, 1, 5) and g.check(1, 2, 5) and g.check(2, 1, 5)
    g.accept(1, 2, 5)
    g.accept(2, 1, 5)  # evicts the least recently used stream (1, 1)
    assert g.check(1, 1, 5) and not g.check(2, 1, 5)


def test_hmac_matches_cpython_vector():
    # expected value computed with CPython: hmac.new(bytes(range(1, 33)), b"BecomingONE",
    # hashlib.sha256).hexdigest()
    import binascii
    d = hmac_sha256(KEY, b"BecomingONE")
    assert binascii.hexlify(d) == (b"19544c1dd24464a639db522f17e8251d"
                                   b"2a1999a42ecbca625341af414e77a36a")
    _raises(ValueError, Auth, b"short")


def test_cobs_stray_bytes_survived():
    enc = Encoder(1, 2, cobs=True)
    fr = bytes(enc.telemetry(0, 0, *TEL))
    d = cobs.Deframer()
    got = d.feed(b"\r\x02" + fr + b"noise\xff\x01" + fr[:20] + b"\r\x02" + fr[20:] + fr)
    assert len(got) >= 2
    assert P.decode(got[0]).seq == 0
    assert P.decode(got[-1]).seq == 0
    bad = 0
    for g in got:
        try:
            P.decode(g)
        except ProtocolError:
            bad += 1
    assert bad == len(got) - 2
    assert d.errors["cobs"] + bad >= 1
    _raises(FramingError, cobs.decode, b"\x05ab")
    assert cobs.decode(cobs.encode(b"\x00\x00")[1:-1]) == b"\x00\x00"


def test_witness_record_bytes():
    buf = bytearray(23)
    witness_record_into(buf, 0, 42, 777, 9, 1, 100, 3, 40000, 30000, -7, 16)
    f = {"witness_id": 9, "kind": 1, "beat": 100, "decision": 3, "threat": 40000,
         "coherence": 30000, "value": -7, "pow_bits": 16, "nonce": 5}
    assert bytes(buf) == P.witness_record(42, 777, f)


def test_crc32_store_and_check_match_binascii():
    import binascii
    import random
    from shared.crc import crc32_check
    b = bytearray(b"123456789\x00\x00\x00\x00")
    crc32_store(b, 9)
    assert bytes(b[9:]) == b"\x26\x39\xf4\xcb"  # 0xCBF43926 little-endian
    random.seed(5)
    for n in (0, 1, 3, 4, 55, 63, 250):
        d = bytearray(n + 4)
        for i in range(n):
            d[i] = random.getrandbits(8)
        crc32_store(d, n)
        assert int.from_bytes(bytes(d[n:]), "little") == binascii.crc32(bytes(d[:n])), n
        assert crc32_check(d, n) and crc32_check(bytes(d), n)
        d[n + 3] ^= 0x10
        assert not crc32_check(d, n) and not crc32_check(bytes(d), n)
    longer = bytearray(70)  # check a CRC in the middle of a larger buffer
    crc32_store(longer, 20)
    assert crc32_check(longer, 20)
