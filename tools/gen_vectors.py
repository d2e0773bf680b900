"""Generate tests/vectors/protocol_vectors.json, the protocol's golden vectors.

The bytes are built here INDEPENDENTLY of shared/protocol.py: payload layouts written out from
the tables of docs/PROTOCOL.md, CPython's struct, zlib.crc32, hmac and a separate COBS
encoder. The generator then checks that shared.protocol.encode() gives the same bytes, so the
file pins the documented format, not whatever the code happens to do.

Usage: python tools/gen_vectors.py [--check]   (--check: exit 1 if the file differs)
"""
import argparse
import hashlib
import hmac
import json
import os
import struct
import sys
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "vectors", "protocol_vectors.json")
TEST_KEY = bytes(range(0xA0, 0xC0))
WIRE_VERSION = 3   # PROTOCOL.md: the version nibble of byte 0  # a published test key; never a real device's
BYTES_FIELDS = ("nonce",)   # 16-byte fields (HELLO, CHALLENGE; WITNESS's nonce is a u32), hex in
#                             the JSON: a string value of these names is hex
DEVICE_NONCE = bytes(range(0x10, 0x20))
HOST_NONCE = bytes(range(0x30, 0x40))
SESSION_INFO_LABEL = b"becomingone session v3"   # PROTOCOL.md 4.1, written out here again

# Layouts as documented (PROTOCOL.md), not imported from the code under test.
DOC = {
    "HELLO": (1, "<8sBBBHHIIHBBBBBHBBBH16s", ["board", "fw_major", "fw_minor", "fw_patch",
                                              "capabilities", "fs_hz", "period_us",
                                              "phase_step", "lag_samples", "adc_bits",
                                              "sum_shift", "pow_bits", "telemetry_every",
                                              "spb_max", "period_min_us", "reset_cause",
                                              "boot_flags", "kairos_decim",
                                              "counts_per_unit_q4", "nonce"]),
    "TELEMETRY": (2, "<IHHiiIIBHhHHHBhhhH", ["beat", "period_us", "lateness_us", "dT_re",
                                             "dT_im", "dE0", "dEL", "n_samples", "coherence",
                                             "pid_error", "pid_output", "threat", "o_weight",
                                             "decision_state", "level", "kurt", "crest",
                                             "anoms"]),
    "WITNESS": (3, "<IBIBHHiBI", ["witness_id", "kind", "beat", "decision", "threat",
                                  "coherence", "value", "pow_bits", "nonce"]),
    "ACK": (4, "<BBI", ["acked_type", "status", "ref"]),
    "CONFIG": (5, None, None),
    "MODEL": (6, "<Ifffff", ["model_version", "bias", "w_level", "w_kurt", "w_crest",
                             "w_anoms"]),
    "TIME_SYNC": (7, "<BQHI", ["mode", "host_t1_us", "rx_era", "rx_off"]),
    "CLEAR": (8, "<BI", ["reason", "ref"]),
    "HEARTBEAT": (9, "<IHHHIBHHHHHHHI", ["beats", "late_p50_us", "late_p99_us", "late_max_us",
                                         "heap_free", "witness_queue", "rx_ok", "rx_crc",
                                         "rx_cobs", "rx_auth", "rx_replay", "rx_other",
                                         "tx_dropped", "samples_lost"]),
    "ERROR": (10, "<BBI16s", ["code", "ref_type", "ref", "text"]),
    "CHALLENGE": (11, "<16s", ["nonce"]),
}

TEL_A = {"beat": 1234, "period_us": 4211, "lateness_us": 37, "dT_re": -1234567,
         "dT_im": 7654321, "dE0": 3000000000, "dEL": 2999999999, "n_samples": 4,
         "coherence": 62259, "pid_error": -517, "pid_output": 39321, "threat": 42316,
         "o_weight": 22938, "decision_state": 0xC3, "level": 1702, "kurt": 420, "crest": 811,
         "anoms": 3}
TEL_B = {"beat": 0, "period_us": 65535, "lateness_us": 65535, "dT_re": -2147483648,
         "dT_im": 2147483647, "dE0": 0, "dEL": 4294967295, "n_samples": 255, "coherence": 0,
         "pid_error": -32768, "pid_output": 65535, "threat": 0, "o_weight": 65535,
         "decision_state": 0x3C, "level": -32768, "kurt": 32767, "crest": -32768,
         "anoms": 65535}
TEL_C = {"beat": 1235, "period_us": 4211, "lateness_us": 0, "dT_re": 0, "dT_im": 0,
         "dE0": 16, "dEL": 0, "n_samples": 4, "coherence": 0, "pid_error": 0,
         "pid_output": 32768, "threat": 26214, "o_weight": 22938, "decision_state": 0,
         "level": 0, "kurt": 0, "crest": 0, "anoms": 0}

CASES = [
    ("hello", "HELLO", 17, 0x2A5C, 0, 0, 1200,
     {"board": "pico", "fw_major": 0, "fw_minor": 3, "fw_patch": 1, "capabilities": 0x02FD,
      "fs_hz": 12000, "period_us": 4211, "phase_step": 0, "lag_samples": 25, "adc_bits": 12,
      "sum_shift": 3, "pow_bits": 12, "telemetry_every": 1, "spb_max": 255,
      "period_min_us": 500, "reset_cause": 3, "boot_flags": 3, "kairos_decim": 48,
      "counts_per_unit_q4": 2048, "nonce": DEVICE_NONCE.hex()}),
    ("hello_keyless", "HELLO", 18, 0x2A5D, 0, 0, 1200,
     {"board": "pico-w", "fw_major": 0, "fw_minor": 3, "fw_patch": 1, "capabilities": 0x02FE,
      "fs_hz": 1000, "period_us": 4211, "phase_step": 0, "lag_samples": 25, "adc_bits": 12,
      "sum_shift": 0, "pow_bits": 16, "telemetry_every": 1, "spb_max": 32,
      "period_min_us": 500, "reset_cause": 1, "boot_flags": 0, "kairos_decim": 4,
      "counts_per_unit_q4": 0, "nonce": bytes(16).hex()}),
    ("telemetry", "TELEMETRY", 17, 0x2A5C, 1, 0, 5411, TEL_A),
    ("telemetry_extremes", "TELEMETRY", 65535, 0xFFFF, 0x3FFFFFFF, 0xFF, 0x3FFFFFFF, TEL_B),
    ("telemetry_batch", "TELEMETRY", 17, 0x2A5C, 2, 1, 12, {"records": [TEL_A, TEL_C]}),
    ("witness", "WITNESS", 17, 0x2A5C, 3, 0, 9000,
     {"witness_id": 7, "kind": 1, "beat": 1234, "decision": 3, "threat": 42316,
      "coherence": 30000, "value": -250, "pow_bits": 16, "nonce": 91823}),
    ("ack_from_device", "ACK", 17, 0x2A5C, 4, 0, 9100, {"acked_type": 5, "status": 0, "ref": 3}),
    ("ack_from_host", "ACK", 0, 0x2A5C, 9, 0, 0, {"acked_type": 3, "status": 0, "ref": 7}),
    ("config", "CONFIG", 0, 0x2A5C, 0, 0, 0,
     {"config_version": 3, "pairs": [[1, 2], [3, 62259], [5, -39322], [2, 18]]}),
    ("config_empty", "CONFIG", 0, 0x2A5C, 1, 0, 0, {"config_version": 4, "pairs": []}),
    ("model", "MODEL", 0, 0x2A5C, 2, 0, 0,
     {"model_version": 2, "bias": -1.5, "w_level": 3.125, "w_kurt": 2.75, "w_crest": 0.0,
      "w_anoms": 0.0}),
    ("model_rounded", "MODEL", 0, 0x2A5C, 3, 0, 0,
     {"model_version": 3, "bias": 0.0, "w_level": 0.0, "w_kurt": 0.0, "w_crest": 0.0,
      "w_anoms": struct.unpack("<f", struct.pack("<f", 0.12))[0]}),
    ("time_sync_request", "TIME_SYNC", 0, 0x2A5C, 4, 0, 0,
     {"mode": 0, "host_t1_us": 1763784000123456, "rx_era": 0, "rx_off": 0}),
    ("time_sync_reply", "TIME_SYNC", 17, 0x2A5C, 5, 0, 9204,
     {"mode": 1, "host_t1_us": 1763784000123456, "rx_era": 0, "rx_off": 9201}),
    ("clear", "CLEAR", 0, 0x2A5C, 5, 0, 0, {"reason": 1, "ref": 7}),
    ("heartbeat", "HEARTBEAT", 17, 0x2A5C, 6, 0, 1000000,
     {"beats": 237, "late_p50_us": 12, "late_p99_us": 410, "late_max_us": 1203,
      "heap_free": 143360, "witness_queue": 2, "rx_ok": 9, "rx_crc": 1, "rx_cobs": 2,
      "rx_auth": 0, "rx_replay": 0, "rx_other": 0, "tx_dropped": 0, "samples_lost": 70000}),
    ("error", "ERROR", 17, 0x2A5C, 7, 0, 1000100,
     {"code": 6, "ref_type": 5, "ref": 3, "text": "unknown key 99"}),
    ("ack_challenge", "ACK", 17, 0x2A5C, 1, 0, 1500, {"acked_type": 11, "status": 0, "ref": 40}),
    ("challenge", "CHALLENGE", 0, 0x2A5C, 40, 0, 0, {"nonce": HOST_NONCE.hex()}),
]
SIGNED_ONLY = ("challenge",)      # a CHALLENGE is always signed (PROTOCOL.md 2.11)


def cobs_reference(data):
    """Textbook COBS (Cheshire & Baker), with our leading and trailing 0x00."""
    out = bytearray()
    block = bytearray()
    for b in data:
        if b == 0:
            out.append(len(block) + 1)
            out += block
            block = bytearray()
        else:
            block.append(b)
            if len(block) == 254:
                out.append(255)
                out += block
                block = bytearray()
    out.append(len(block) + 1)
    out += block
    return b"\x00" + bytes(out) + b"\x00"


def build(type_name, device_id, boot_id, seq, era, off, fields, auth, batch):
    code, fmt, names = DOC[type_name]
    flags = (1 if auth else 0) | (2 if batch else 0)
    head = struct.pack("<BBHHIBI", (WIRE_VERSION << 4) | flags, code, device_id, boot_id, seq, era, off)
    if batch:
        body = bytes([len(fields["records"])]) + b"".join(
            struct.pack(fmt, *[r[n] for n in names]) for r in fields["records"])
    elif type_name == "CONFIG":
        body = struct.pack("<IB", fields["config_version"], len(fields["pairs"])) + b"".join(
            struct.pack("<Bi", k, v) for k, v in fields["pairs"])
    else:
        vals = [fields[n].encode("ascii") if n in ("board", "text") else
                bytes.fromhex(fields[n]) if n in BYTES_FIELDS and isinstance(fields[n], str)
                else fields[n] for n in names]
        body = struct.pack(fmt, *vals)
    frame = head + body
    if auth:
        key = auth if isinstance(auth, bytes) else TEST_KEY
        frame += hmac.new(key, frame, hashlib.sha256).digest()[:8]
    return frame + struct.pack("<I", zlib.crc32(frame))


def hkdf_reference(salt, ikm, info, length):
    """RFC 5869 written out with the standard library's hmac (not shared/hkdf.py)."""
    prk = hmac.new(salt or bytes(32), ikm, hashlib.sha256).digest()
    out, t, i = b"", b"", 1
    while len(out) < length:
        t = hmac.new(prk, t + info + bytes([i]), hashlib.sha256).digest()
        out += t
        i += 1
    return out[:length]


# RFC 5869 Appendix A, test cases 1 and 3 (SHA-256)
RFC5869 = [
    {"ikm": "0b" * 22, "salt": "000102030405060708090a0b0c", "info": "f0f1f2f3f4f5f6f7f8f9",
     "length": 42, "okm": "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
                          "34007208d5b887185865"},
    {"ikm": "0b" * 22, "salt": "", "info": "", "length": 42,
     "okm": "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"},
]


def session_vectors():
    """The handshake of PROTOCOL.md 4.1 with the test key: the session key, and a CHALLENGE and
    the device's ACK tagged with it."""
    info = SESSION_INFO_LABEL + struct.pack("<HH", 17, 0x2A5C)
    sk = hkdf_reference(HOST_NONCE + DEVICE_NONCE, TEST_KEY, info, 32)
    ch = build("CHALLENGE", 0, 0x2A5C, 40, 0, 0, {"nonce": HOST_NONCE.hex()}, sk, False)
    ack = build("ACK", 17, 0x2A5C, 1, 0, 1500, {"acked_type": 11, "status": 0, "ref": 40}, sk,
                False)
    return {"key_hex": TEST_KEY.hex(), "device_id": 17, "boot_id": 0x2A5C,
            "device_nonce": DEVICE_NONCE.hex(), "host_nonce": HOST_NONCE.hex(),
            "info_hex": info.hex(), "session_key": sk.hex(), "challenge_hex": ch.hex(),
            "ack_hex": ack.hex()}


def corrupt_vectors(good_hex):
    """Bad frames with the error reason a decoder must give (no key configured)."""
    g = bytes.fromhex(good_hex)

    def fix(b):
        return b[:-4] + struct.pack("<I", zlib.crc32(b[:-4]))
    return [
        ("short", g[:12], "short"),
        ("bad_crc", g[:-1] + bytes([g[-1] ^ 0x80]), "crc"),
        ("trailing_byte", fix(g[:-4] + b"\x00" + g[-4:]), "length"),
        ("missing_byte", fix(g[:-5] + g[-4:]), "length"),
        ("version_2", fix(bytes([0x20 | (g[0] & 0x0F)]) + g[1:]), "version"),
        ("version_4", fix(bytes([0x40 | (g[0] & 0x0F)]) + g[1:]), "version"),
        ("unknown_type_12", fix(g[:1] + b"\x0c" + g[2:]), "type"),
        ("unsigned_challenge", fix(g[:1] + b"\x0b" + b"\x00\x00" + g[4:15] + bytes(16) + g[-4:]),
         "auth"),
        ("unknown_flag", fix(bytes([g[0] | 0x08]) + g[1:]), "field"),
        ("boot_id_0", fix(g[:4] + b"\x00\x00" + g[6:]), "field"),
        ("seq_2_30", fix(g[:6] + struct.pack("<I", 1 << 30) + g[10:]), "field"),
        ("signed_without_key", fix(bytes([g[0] | 0x01]) + g[1:-4] + bytes(8) + g[-4:]), "auth"),
        ("oversize", fix(g * 5), "oversize"),
    ]


def generate():
    sys.path.insert(0, ROOT)
    from shared import protocol as P
    from shared.auth import Auth
    a = Auth(TEST_KEY)
    vectors = []
    for auth in (False, True):
        for (name, tname, dev, boot, seq, era, off, fields) in CASES:
            if name in SIGNED_ONLY and not auth:
                continue
            batch = "records" in fields
            raw = build(tname, dev, boot, seq, era, off, fields, auth, batch)
            ours = P.encode(P.TYPE_IDS[tname], _bytes_in(fields), dev, boot, seq, era, off,
                            auth=a if auth else None, batch=batch)
            if ours != raw:
                raise SystemExit("shared.protocol.encode disagrees with the documented layout "
                                 "for %s (auth=%s):\n doc  %s\n code %s"
                                 % (name, auth, raw.hex(), ours.hex()))
            vectors.append({"name": name + ("_auth" if auth else ""), "type": tname,
                            "auth": auth, "batch": batch, "device_id": dev, "boot_id": boot,
                            "seq": seq, "time_era": era, "time_off": off, "fields": fields,
                            "hex": raw.hex(), "cobs_hex": cobs_reference(raw).hex()})
    tel = [v for v in vectors if v["name"] == "telemetry"][0]
    bad = [{"name": n, "hex": b.hex(), "reason": r}
           for n, b, r in corrupt_vectors(tel["hex"])]
    from shared import hkdf as H
    for c in RFC5869:
        salt, ikm, info = (bytes.fromhex(c[k]) for k in ("salt", "ikm", "info"))
        if hkdf_reference(salt, ikm, info, c["length"]).hex() != c["okm"] or \
                H.hkdf_sha256(salt, ikm, info, c["length"]).hex() != c["okm"]:
            raise SystemExit("HKDF disagrees with RFC 5869 Appendix A")
    sess = session_vectors()
    if H.session_key(TEST_KEY, HOST_NONCE, DEVICE_NONCE, 17, 0x2A5C).hex() != sess["session_key"]:
        raise SystemExit("shared.hkdf.session_key disagrees with PROTOCOL.md 4.1")
    return {"about": "Golden vectors of the BecomingONE wire protocol v%d (docs/PROTOCOL.md). "
                     % WIRE_VERSION +
                     "Generated by tools/gen_vectors.py from the documented layouts; "
                     "key_hex is a public TEST key used for the *_auth vectors; fields named in "
                     "bytes_fields are hex; session: the handshake of section 4.1.",
            "key_hex": TEST_KEY.hex(), "bytes_fields": list(BYTES_FIELDS), "vectors": vectors,
            "invalid": bad, "hkdf_rfc5869": RFC5869, "session": sess}


def _bytes_in(fields):
    if "records" in fields:
        return fields
    return {k: bytes.fromhex(v) if k in BYTES_FIELDS and isinstance(v, str) else v
            for k, v in fields.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare with the file, write nothing")
    a = ap.parse_args(argv)
    text = json.dumps(generate(), indent=1, sort_keys=False) + "\n"
    if a.check:
        same = os.path.exists(OUT) and open(OUT).read() == text
        print("vectors up to date" if same else "vectors differ: run tools/gen_vectors.py")
        return 0 if same else 1
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        f.write(text)
    print("wrote %s" % os.path.relpath(OUT, ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
