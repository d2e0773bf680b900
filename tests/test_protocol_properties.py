"""Property-based tests of the wire protocol (hypothesis, CPython)."""
import struct

from hypothesis import given, settings, strategies as st

from becomingone.wire.receive import Receiver
from shared import cobs
from shared import protocol as P
from shared.auth import Auth, ReplayWindow
from shared.wire_errors import ProtocolError

KEY = Auth(bytes(range(32)))

_RANGES = {"B": (0, 0xFF), "H": (0, 0xFFFF), "I": (0, 0xFFFFFFFF), "h": (-0x8000, 0x7FFF),
           "i": (-0x80000000, 0x7FFFFFFF), "Q": (0, 0xFFFFFFFFFFFFFFFF)}
# per-field constraints the tables of PROTOCOL.md impose beyond the struct type
_SPECIAL = {
    P.TELEMETRY: {"decision_state": st.sampled_from([d | m for d in range(5)
                                                     for m in range(0, 0x100, 0x08)])},
    P.HELLO: {"adc_bits": st.integers(1, 16), "fs_hz": st.integers(1, 0xFFFF),
              "period_us": st.integers(1, 0xFFFFFFFF), "phase_step": st.integers(0, 2**30 - 1),
              "pow_bits": st.integers(0, 32), "telemetry_every": st.integers(1, 255),
              "spb_max": st.integers(1, 255), "period_min_us": st.integers(1, 0xFFFF),
              "reset_cause": st.integers(0, P.RESET_CAUSE_MAX),
              "boot_flags": st.integers(0, P.BOOT_FLAGS_KNOWN),
              "kairos_decim": st.integers(1, 255),
              "board": st.text("abcdefghijklmnopqrstuvwxyz0123456789-_", max_size=8),
              "nonce": st.binary(min_size=16, max_size=16)},
    P.CHALLENGE: {"nonce": st.binary(min_size=16, max_size=16)},
    P.WITNESS: {"kind": st.integers(1, P.WITNESS_KIND_MAX), "decision": st.integers(0, 4),
                "pow_bits": st.integers(0, 32)},
    P.ACK: {"acked_type": st.integers(1, P.CHALLENGE), "status": st.integers(0, P.ACK_STATUS_MAX)},
    P.TIME_SYNC: {"mode": st.integers(0, 1)},
    P.CLEAR: {"reason": st.integers(1, P.CLEAR_REASON_MAX)},
    P.HEARTBEAT: {"samples_lost": st.integers(0, 2**30 - 1)},
    P.ERROR: {"code": st.integers(1, P.ERR_CODE_MAX), "ref_type": st.integers(0, P.CHALLENGE),
              "text": st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ abc:=0123456789", max_size=16)},
    P.MODEL: {nm: st.floats(width=32, allow_nan=False, allow_infinity=False)
              for nm in ("bias", "w_level", "w_kurt", "w_crest", "w_anoms")},
}


def _fields_strategy(t):
    fmt, names = P.LAYOUTS[t]
    # one struct code per field ("8s"/"16s" count as one; _SPECIAL gives their strategy)
    per = []
    i = 1
    while i < len(fmt):
        j = i
        while fmt[j].isdigit():
            j += 1
        per.append(fmt[j])
        i = j + 1
    strategies = {}
    for nm, c in zip(names, per):
        if nm in _SPECIAL.get(t, {}):
            strategies[nm] = _SPECIAL[t][nm]
        else:
            lo, hi = _RANGES[c]
            strategies[nm] = st.integers(lo, hi)
    return st.fixed_dictionaries(strategies)


@st.composite
def frames(draw):
    t = draw(st.sampled_from(sorted(P.TYPE_NAMES)))
    batch = False
    if t == P.CONFIG:
        fields = {"config_version": draw(st.integers(0, 0xFFFFFFFF))}
        pairs = draw(st.lists(st.tuples(st.integers(1, 255), st.integers(-2**31, 2**31 - 1)),
                              max_size=P.MAX_CONFIG_PAIRS))
        fields["pairs"] = [[k, v] for k, v in pairs]
    elif t == P.TELEMETRY and draw(st.booleans()):
        batch = True
        fields = {"records": draw(st.lists(_fields_strategy(P.TELEMETRY), min_size=1,
                                           max_size=P.MAX_BATCH))}
    else:
        fields = draw(_fields_strategy(t))
    d = P.DIRECTION[t]
    dev = 0 if d == "h" else draw(st.integers(1, 0xFFFF)) if d == "d" else draw(
        st.integers(0, 0xFFFF))
    if t == P.TIME_SYNC:
        dev = 0 if fields["mode"] == P.SYNC_REQUEST else draw(st.integers(1, 0xFFFF))
    hdr = (dev, draw(st.integers(1, 0xFFFF)), draw(st.integers(0, 2**30 - 1)),
           draw(st.integers(0, 0xFF)), draw(st.integers(0, 2**30 - 1)))
    auth = draw(st.booleans()) or t == P.CHALLENGE     # a CHALLENGE is always signed
    return t, fields, hdr, auth, batch


@settings(max_examples=400, deadline=None)
@given(frames())
def test_roundtrip_every_type(fr):
    t, fields, hdr, auth, batch = fr
    a = KEY if auth else None
    b = P.encode(t, fields, *hdr, auth=a, batch=batch)
    assert len(b) <= P.MAX_FRAME
    f = P.decode(b, auth=a)
    assert (f.type, f.device_id, f.boot_id, f.seq, f.time_era, f.time_off) == (t,) + hdr
    assert f.auth == auth and f.batch == batch
    assert P.encode(t, f.fields, *hdr, auth=a, batch=batch) == b
    assert cobs.decode(cobs.encode(b)[1:-1]) == b


def _mutate(data, draw):
    b = bytearray(data)
    kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "extend"]))
    if kind in ("flip", "set", "delete") and not b:
        kind = "extend"
    if kind == "flip":
        i = draw(st.integers(0, len(b) - 1))
        b[i] ^= 1 << draw(st.integers(0, 7))
    elif kind == "set":
        i = draw(st.integers(0, len(b) - 1))
        b[i] = draw(st.integers(0, 255))
    elif kind == "insert":
        i = draw(st.integers(0, len(b)))
        b[i:i] = draw(st.binary(min_size=1, max_size=4))
    elif kind == "delete":
        i = draw(st.integers(0, len(b) - 1))
        del b[i:i + draw(st.integers(1, 4))]
    elif kind == "truncate":
        del b[draw(st.integers(0, len(b))):]
    else:
        b += draw(st.binary(min_size=1, max_size=300))
    return bytes(b)


@settings(max_examples=600, deadline=None)
@given(frames(), st.data())
def test_mutation_rejected_or_valid(fr, data):
    t, fields, hdr, auth, batch = fr
    a = KEY if auth else None
    good = P.encode(t, fields, *hdr, auth=a, batch=batch)
    bad = _mutate(good, data.draw)
    try:
        f = P.decode(bad, auth=a)
    except ProtocolError:
        return
    # accepted: then it must be a valid frame that re-encodes to exactly these bytes
    again = P.encode(f.type, f.fields, f.device_id, f.boot_id, f.seq, f.time_era, f.time_off,
                     auth=a if f.auth else None, batch=f.batch)
    assert again == bad


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_never_escape(blob):
    rx = Receiver(keys={5: bytes(32)})
    rx.feed(blob)
    rx.datagram(blob)
    assert rx.counters["internal"] == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 600), max_size=200), st.sampled_from([8, 16, 64, 256]))
def test_replay_window_matches_set_model(seqs, size):
    w = ReplayWindow(size)
    seen = set()
    highest = -1
    for s in seqs:
        expect = s not in seen and s > highest - size
        assert w.check(s) == expect, (s, highest)
        if expect:
            w.accept(s)
            seen.add(s)
            highest = max(highest, s)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=254), min_size=1, max_size=6), st.binary(max_size=20),
       st.data())
def test_cobs_stream_with_noise(payloads, noise, data):
    stream = bytearray()
    for p in payloads:
        if data.draw(st.booleans()):
            stream += noise  # stray bytes between frames
        stream += cobs.encode(p)
    d = cobs.Deframer()
    chunks = []
    i = 0
    while i < len(stream):  # arbitrary chunking
        n = data.draw(st.integers(1, 64))
        chunks.append(bytes(stream[i:i + n]))
        i += n
    got = []
    for c in chunks:
        got += d.feed(c)
    # every real payload comes out intact and in order; noise segments come out as extras
    it = iter(got)
    for p in payloads:
        if p == b"":
            continue  # an empty frame is an empty segment, which the deframer skips
        assert any(g == p for g in it)


def test_model_rejects_non_finite():
    import pytest
    from shared.wire_errors import FieldError
    names = ("bias", "w_level", "w_kurt", "w_crest", "w_anoms")
    ok = dict({nm: 0.5 for nm in names}, model_version=1)
    from shared.crc import crc32_store
    for i, nm in enumerate(names):
        for bad in (float("nan"), float("inf"), -float("inf")):
            with pytest.raises(FieldError, match=nm):
                P.encode(P.MODEL, dict(ok, **{nm: bad}), 0, 5, 0)
        good = bytearray(P.encode(P.MODEL, ok, 0, 5, 0))
        struct.pack_into("<f", good, P.HEADER_LEN + 4 + 4 * i, float("nan"))
        crc32_store(good, len(good) - 4)
        with pytest.raises(FieldError, match=nm):
            P.decode(bytes(good))


def test_seq_field_written_as_u32():
    b = P.encode(P.ACK, {"acked_type": 2, "status": 0, "ref": 0}, 5, 6, 2**30 - 1)
    assert struct.unpack_from("<I", b, 6)[0] == 2**30 - 1
