# Golden vectors (tests/vectors/protocol_vectors.json) on both runtimes: every vector decodes
# to the listed fields, re-encodes to the same bytes with shared.protocol.encode AND with the
# device's Encoder (raw and COBS-framed), and every invalid vector fails with its reason.
import binascii
import json

from shared import cobs
from shared import protocol as P
from shared.auth import Auth
from shared.frame_encoder import Encoder
from shared.wire_errors import ProtocolError


def _load():
    here = __file__
    i = here.rfind("/")
    d = here[:i] if i >= 0 else "."
    with open(d + "/../vectors/protocol_vectors.json") as f:
        return json.load(f)


# Loaded per test and dropped afterwards: the 192K-heap lane runs every module in one process.

def _key(v):
    return Auth(binascii.unhexlify(v["key_hex"]))


def _unhex(s):
    return binascii.unhexlify(s)


def _fields(V, v):
    """A vector's fields with its hex-written byte fields (HELLO/CHALLENGE nonce) as bytes."""
    f = v["fields"]
    if "records" in f:
        return f
    out = {}
    for k in f:
        x = f[k]
        out[k] = _unhex(x) if k in V["bytes_fields"] and isinstance(x, str) else x
    return out


def test_vectors_decode_to_listed_fields():
    V = _load()
    KEY = _key(V)
    assert len(V["vectors"]) >= 30
    for v in V["vectors"]:
        raw = _unhex(v["hex"])
        f = P.decode(raw, auth=KEY if v["auth"] else None)
        assert f.name == v["type"], v["name"]
        assert f.auth == v["auth"] and f.batch == v["batch"], v["name"]
        for k in ("device_id", "boot_id", "seq", "time_era", "time_off"):
            assert getattr(f, k) == v[k], (v["name"], k)
        assert f.fields == _fields(V, v), (v["name"], f.fields)


def test_vectors_reencode_to_same_bytes():
    V = _load()
    KEY = _key(V)
    for v in V["vectors"]:
        b = P.encode(P.TYPE_IDS[v["type"]], _fields(V, v), v["device_id"], v["boot_id"], v["seq"],
                     v["time_era"], v["time_off"], auth=KEY if v["auth"] else None,
                     batch=v["batch"])
        assert b == _unhex(v["hex"]), v["name"]
        assert cobs.encode(b) == _unhex(v["cobs_hex"]), v["name"]
        assert cobs.decode(_unhex(v["cobs_hex"])[1:-1]) == b, v["name"]


def _device_encode(enc, v, V):
    f = _fields(V, v)
    era, off = v["time_era"], v["time_off"]
    t = v["type"]
    if t == "HELLO":
        return enc.hello(era, off, f["board"].encode(), f["fw_major"], f["fw_minor"],
                         f["fw_patch"], f["capabilities"], f["fs_hz"], f["period_us"],
                         f["phase_step"], f["lag_samples"], f["adc_bits"], f["sum_shift"],
                         f["pow_bits"], f["telemetry_every"], f["spb_max"], f["period_min_us"],
                         f["reset_cause"], f["boot_flags"], f["kairos_decim"],
                         f["counts_per_unit_q4"], f["nonce"])
    if t == "TELEMETRY" and v["batch"]:
        for r in f["records"]:
            enc.batch_add(*[r[n] for n in P.TELEMETRY_FIELDS])
        return enc.batch_flush(era, off)
    if t == "TELEMETRY":
        return enc.telemetry(era, off, *[f[n] for n in P.TELEMETRY_FIELDS])
    if t == "WITNESS":
        return enc.witness(era, off, *[f[n] for n in P.WITNESS_FIELDS])
    if t == "ACK":
        return enc.ack(era, off, f["acked_type"], f["status"], f["ref"])
    if t == "HEARTBEAT":
        return enc.heartbeat(era, off, *[f[n] for n in P.HEARTBEAT_FIELDS])
    if t == "ERROR":
        return enc.error(era, off, f["code"], f["ref_type"], f["ref"], f["text"].encode())
    if t == "TIME_SYNC" and f["mode"] == P.SYNC_REPLY:
        return enc.time_sync_reply(era, off, f["host_t1_us"], f["rx_era"], f["rx_off"])
    return None


def test_device_encoder_matches_vectors():
    V = _load()
    KEY = _key(V)
    done = 0
    for v in V["vectors"]:
        if v["device_id"] == 0:
            continue  # host frames: the device only decodes them
        for framed in (False, True):
            enc = Encoder(v["device_id"], v["boot_id"], auth=KEY if v["auth"] else None,
                          cobs=framed)
            enc.seq = v["seq"]
            out = _device_encode(enc, v, V)
            if out is None:
                continue
            want = _unhex(v["cobs_hex"] if framed else v["hex"])
            assert bytes(out) == want, (v["name"], framed)
            assert enc.seq == v["seq"] + 1
            done += 1
    assert done >= 18


def test_invalid_vectors_fail_with_their_reason():
    V = _load()
    assert len(V["invalid"]) >= 10
    for v in V["invalid"]:
        try:
            P.decode(_unhex(v["hex"]))
        except ProtocolError as e:
            assert e.reason == v["reason"], (v["name"], e.reason, str(e))
            continue
        raise AssertionError("invalid vector %s decoded" % v["name"])
