# The device encoder allocates 0 bytes per frame on MicroPython (measured with gc.mem_alloc()
# deltas). On CPython the same code runs and must produce decodable frames; the zero-allocation
# assertion only applies under MicroPython, where gc.mem_alloc exists.
import gc
import sys

from shared import protocol as P
from shared.frame_encoder import Encoder, witness_record_into

MPY = sys.implementation.name == "micropython"
TEL = (100, 4211, 12, -70000, 65000, 123456, 654321, 4, 60000, -1200, 33000, 2000, 22937, 0x41)
ROUNDS = 50


def _measure(fn):
    """Bytes allocated by ROUNDS calls of fn (None on CPython)."""
    fn()  # warm up (first call may intern or grow something once)
    if not MPY:
        for _ in range(ROUNDS):
            fn()
        return None
    gc.collect()
    before = gc.mem_alloc()
    for _ in range(ROUNDS):
        fn()
    return gc.mem_alloc() - before


def _kinds(enc):
    board = b"pico"
    text = b"bad config key"
    rec = bytearray(23)

    def hello():
        enc.hello(0, 1, board, 0, 3, 1, 0x2FD, 1000, 4211, 2147, 10, 12, 0, 16, 1, 32, 500, 1, 0)

    def telemetry():
        enc.telemetry(0, 123456, 100, 4211, 12, -70000, 65000, 123456, 654321, 4, 60000, -1200,
                      33000, 2000, 22937, 0x41)

    def batch():
        enc.batch_add(100, 4211, 12, -70000, 65000, 123456, 654321, 4, 60000, -1200, 33000,
                      2000, 22937, 0x41)
        enc.batch_add(101, 4211, 12, -70000, 65000, 123456, 654321, 4, 60000, -1200, 33000,
                      2000, 22937, 0x41)
        enc.batch_flush(0, 123456)

    def witness():
        witness_record_into(rec, 0, 17, 99, 7, 1, 100, 3, 40000, 30000, -250, 16)
        enc.witness(0, 5, 7, 1, 100, 3, 40000, 30000, -250, 16, 91823)
        enc.witness(0, 5, 7, 1, 100, 3, 40000, 30000, -250, 16, 0x3FFFFFFF, 3)  # nonce 2^32-1

    def ack():
        enc.ack(0, 6, P.CONFIG, P.ACK_OK, 3)

    def heartbeat():
        enc.heartbeat(0, 7, 237, 12, 410, 1203, 143360, 2, 9, 1, 2, 0, 0, 0, 0)

    def error():
        enc.error(0, 8, P.ERR_CONFIG_KEY, P.CONFIG, 3, text)

    def sync():
        enc.time_sync_reply(0, 9, 123456789, 0, 8)

    return (("hello", hello), ("telemetry", telemetry), ("batch", batch), ("witness", witness),
            ("ack", ack), ("heartbeat", heartbeat), ("error", error), ("time_sync", sync))


def test_encoder_allocates_nothing_raw():
    enc = Encoder(17, 99)
    for name, fn in _kinds(enc):
        got = _measure(fn)
        if MPY:
            assert got == 0, "%s allocated %d bytes in %d frames" % (name, got, ROUNDS)
    assert P.decode(bytes(enc.telemetry(0, 1, *TEL))).fields["beat"] == 100


def test_encoder_allocates_nothing_cobs():
    enc = Encoder(17, 99, cobs=True)
    for name, fn in _kinds(enc):
        got = _measure(fn)
        if MPY:
            assert got == 0, "%s (COBS) allocated %d bytes in %d frames" % (name, got, ROUNDS)


def test_seq_is_bounded_and_boot_roll():
    enc = Encoder(17, 99)
    enc.seq = P.SEQ_LIMIT - 1
    enc.ack(0, 0, 2, 0, 0)
    try:
        enc.ack(0, 0, 2, 0, 0)
        raise AssertionError("seq 2^30 must be refused")
    except ValueError:
        pass
    assert enc.needs_new_boot
    enc.set_boot(100)
    assert enc.seq == 0 and not enc.needs_new_boot


def test_witness_nonce_halves():
    enc = Encoder(17, 99)
    for lo30, hi, want in ((91823, 0, 91823), (0x3FFFFFFF, 3, 0xFFFFFFFF), (5, 1, 0x40000005),
                           (0x12345, 2, 0x80012345)):
        f = P.decode(bytes(enc.witness(0, 5, 7, 1, 100, 3, 40000, 30000, -250, 16, lo30, hi)))
        assert f.fields["nonce"] == want, (lo30, hi)
    f = P.decode(bytes(enc.witness(0, 5, 7, 1, 100, 3, 40000, 30000, -250, 16, 0xFFFFFFFF)))
    assert f.fields["nonce"] == 0xFFFFFFFF


def test_error_text_is_sanitised():
    enc = Encoder(17, 99)
    f = P.decode(bytes(enc.error(0, 1, P.ERR_CONFIG_VALUE, P.CONFIG, 3,
                                 b"bad\nvalue \xc2\xb5s and more text")))
    assert f.fields["text"] == "bad?value ??s an"
    f = P.decode(bytes(enc.error(0, 1, P.ERR_CONFIG_VALUE, P.CONFIG, 3, b"ab\x00cd")))
    assert f.fields["text"] == "ab"
