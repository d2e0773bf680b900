# The BecomingONE wire protocol, host side and tests: the catalogue (field names, type names),
# the generic decoder and encoder (both runtimes). docs/PROTOCOL.md is the byte-exact
# reference. The layouts and constants are shared/wire_format.py, the checks every frame and
# every host payload pass shared/wire_check.py, the code tables shared/protocol_codes.py: all
# re-exported here. The device reads those three modules directly and never loads this one;
# shared/frame_encoder.py is its allocation-free encoder, which must produce the same bytes as
# encode() here.
#
# encode(msg_type, fields, device_id, boot_id, seq, time_era=0, time_off=0, auth=None,
#        batch=False) -> bytes
# decode(data, auth=None, replay=None) -> Frame      (raises a shared.wire_errors error)
# frame_size(msg_type, auth=False, count=None) -> int
import struct

from shared.wire_errors import FieldError, LengthError, ReplayError
from shared.wire_format import *  # noqa: F401,F403
from shared.wire_format import (HELLO, TELEMETRY, WITNESS, ACK, CONFIG, MODEL, TIME_SYNC, CLEAR,
                                HEARTBEAT, ERROR, CHALLENGE, FLAG_AUTH, FLAG_BATCH, HEADER_LEN, CRC_LEN,
                                TAG_LEN, SEQ_LIMIT, MAX_BATCH, HELLO_FMT, TELEMETRY_FMT,
                                TELEMETRY_LEN, WITNESS_FMT, WITNESS_RECORD_FMT, ACK_FMT,
                                MODEL_FMT, TIME_SYNC_FMT, CLEAR_FMT, HEARTBEAT_FMT, ERROR_FMT,
                                CONFIG_HEAD_FMT, CONFIG_PAIR_FMT, CONFIG_HEAD_LEN,
                                CONFIG_PAIR_LEN, CHALLENGE_FMT, TYPE_MAX, sent_by_host)
from shared.wire_check import (check_frame, check_len, check_ack, check_config,
                               check_config_key, check_model, check_time_sync, check_clear)
# Code tables (capabilities, decisions, witness kinds, ACK status, CLEAR reasons, ERROR codes,
# CONFIG keys) live in shared/protocol_codes.py and are re-exported here.
from shared.protocol_codes import *  # noqa: F401,F403
from shared.protocol_codes import (DECISION_MASK, DECISION_QUARANTINE, RESET_CAUSE_MAX,
                                   BOOT_FLAGS_KNOWN, WITNESS_KIND_MAX, ERR_CODE_MAX, CONFIG_KEYS,
                                   SYNC_REQUEST, SYNC_REPLY)

TYPE_NAMES = {HELLO: "HELLO", TELEMETRY: "TELEMETRY", WITNESS: "WITNESS", ACK: "ACK",
              CONFIG: "CONFIG", MODEL: "MODEL", TIME_SYNC: "TIME_SYNC", CLEAR: "CLEAR",
              HEARTBEAT: "HEARTBEAT", ERROR: "ERROR", CHALLENGE: "CHALLENGE"}
TYPE_IDS = {}
for _k in TYPE_NAMES:
    TYPE_IDS[TYPE_NAMES[_k]] = _k

# Who may send a type: "d" device (device_id 1..65535), "h" host (device_id 0), "b" both.
DIRECTION = {}
for _k in TYPE_NAMES:
    DIRECTION[_k] = "dhb"[sent_by_host(_k)]

# Field names of the fixed payloads, in wire order (wire_format.py has their struct formats)
TELEMETRY_FIELDS = ("beat", "period_us", "lateness_us", "dT_re", "dT_im", "dE0", "dEL",
                    "n_samples", "coherence", "pid_error", "pid_output", "threat", "o_weight",
                    "decision_state", "level", "kurt", "crest", "anoms")
HELLO_FIELDS = ("board", "fw_major", "fw_minor", "fw_patch", "capabilities", "fs_hz",
                "period_us", "phase_step", "lag_samples", "adc_bits", "sum_shift", "pow_bits",
                "telemetry_every", "spb_max", "period_min_us", "reset_cause", "boot_flags",
                "kairos_decim", "counts_per_unit_q4", "nonce")
WITNESS_FIELDS = ("witness_id", "kind", "beat", "decision", "threat", "coherence", "value",
                  "pow_bits", "nonce")
ACK_FIELDS = ("acked_type", "status", "ref")
MODEL_FIELDS = ("model_version", "bias", "w_level", "w_kurt", "w_crest", "w_anoms")
TIME_SYNC_FIELDS = ("mode", "host_t1_us", "rx_era", "rx_off")
CLEAR_FIELDS = ("reason", "ref")
HEARTBEAT_FIELDS = ("beats", "late_p50_us", "late_p99_us", "late_max_us", "heap_free",
                    "witness_queue", "rx_ok", "rx_crc", "rx_cobs", "rx_auth", "rx_replay",
                    "rx_other", "tx_dropped", "samples_lost")
ERROR_FIELDS = ("code", "ref_type", "ref", "text")
CHALLENGE_FIELDS = ("nonce",)

LAYOUTS = {HELLO: (HELLO_FMT, HELLO_FIELDS), TELEMETRY: (TELEMETRY_FMT, TELEMETRY_FIELDS),
           WITNESS: (WITNESS_FMT, WITNESS_FIELDS), ACK: (ACK_FMT, ACK_FIELDS),
           MODEL: (MODEL_FMT, MODEL_FIELDS), TIME_SYNC: (TIME_SYNC_FMT, TIME_SYNC_FIELDS),
           CLEAR: (CLEAR_FMT, CLEAR_FIELDS), HEARTBEAT: (HEARTBEAT_FMT, HEARTBEAT_FIELDS),
           ERROR: (ERROR_FMT, ERROR_FIELDS), CHALLENGE: (CHALLENGE_FMT, CHALLENGE_FIELDS)}

_PAYLOAD_LEN = {}
for _k in LAYOUTS:
    _PAYLOAD_LEN[_k] = struct.calcsize(LAYOUTS[_k][0])


def payload_size(msg_type, count=None):
    """Payload bytes of a type; count = beats (TELEMETRY with BATCH) or pairs (CONFIG)."""
    if msg_type == CONFIG:
        return CONFIG_HEAD_LEN + CONFIG_PAIR_LEN * (count or 0)
    if msg_type == TELEMETRY and count is not None:
        return 1 + TELEMETRY_LEN * count
    return _PAYLOAD_LEN[msg_type]


def frame_size(msg_type, auth=False, count=None):
    return HEADER_LEN + payload_size(msg_type, count) + (TAG_LEN if auth else 0) + CRC_LEN


class Frame:
    """A decoded frame: header fields as attributes, payload as the dict `fields`
    (BATCH TELEMETRY: fields = {"records": [dict, ...]}, oldest beat first)."""

    def __init__(self, ver_flags, msg_type, device_id, boot_id, seq, time_era, time_off, fields):
        self.version = ver_flags >> 4
        self.flags = ver_flags & 0x0F
        self.type = msg_type
        self.device_id = device_id
        self.boot_id = boot_id
        self.seq = seq
        self.time_era = time_era
        self.time_off = time_off
        self.fields = fields

    @property
    def name(self):
        return TYPE_NAMES[self.type]

    @property
    def auth(self):
        return bool(self.flags & FLAG_AUTH)

    @property
    def batch(self):
        return bool(self.flags & FLAG_BATCH)

    @property
    def time_us(self):
        """Device time in µs since boot (era * 2^30 + off); host side (may be a bigint)."""
        return self.time_era * SEQ_LIMIT + self.time_off

    def header(self):
        return {"type": TYPE_NAMES[self.type], "auth": self.auth, "batch": self.batch,
                "device_id": self.device_id, "boot_id": self.boot_id, "seq": self.seq,
                "time_era": self.time_era, "time_off": self.time_off}

    def __repr__(self):
        return "<Frame %s dev=%d boot=%d seq=%d>" % (self.name, self.device_id, self.boot_id,
                                                      self.seq)


# ---------------------------------------------------------------- encoding (generic)

def encode(msg_type, fields, device_id, boot_id, seq, time_era=0, time_off=0, auth=None,
           batch=False):
    """Build one frame (host side and tests; the device encodes with shared/frame_encoder.py).
    `fields` is the payload dict (BATCH: {"records": [...]}, CONFIG: {"config_version": v,
    "pairs": [[key, value], ...]}). `auth` is an Auth or None."""
    # imported here: the device never builds frames this way, and on a Pico every loaded
    # module costs heap (shared/protocol_encode.py holds the generic encoder)
    from shared.protocol_encode import encode_frame
    return encode_frame(msg_type, fields, device_id, boot_id, seq, time_era, time_off, auth,
                        batch)


# ---------------------------------------------------------------- validation (both ways)

def _range(name, v, lo, hi):
    if not lo <= v <= hi:
        raise FieldError("%s = %r outside %d..%d" % (name, v, lo, hi))


def validate_fields(msg_type, f):
    """Semantic checks shared by encode and decode (what the tables in PROTOCOL.md allow); the
    payloads a host sends are checked by shared/wire_check.py, as the device checks them."""
    if msg_type == TELEMETRY:
        s = f["decision_state"]
        if (s & DECISION_MASK) > DECISION_QUARANTINE:
            raise FieldError("decision_state 0x%02x: low 3 bits must be 0..4" % s)
    elif msg_type == HELLO:
        _range("adc_bits", f["adc_bits"], 1, 16)
        _range("fs_hz", f["fs_hz"], 1, 0xFFFF)
        _range("period_us", f["period_us"], 1, 0xFFFFFFFF)
        _range("phase_step", f["phase_step"], 0, SEQ_LIMIT - 1)
        _range("pow_bits", f["pow_bits"], 0, 32)
        _range("telemetry_every", f["telemetry_every"], 1, 255)
        _range("kairos_decim", f["kairos_decim"], 1, 255)
        _range("spb_max", f["spb_max"], 1, 255)
        _range("period_min_us", f["period_min_us"], 1, 0xFFFF)
        _range("reset_cause", f["reset_cause"], 0, RESET_CAUSE_MAX)
        if f["boot_flags"] & ~BOOT_FLAGS_KNOWN:
            raise FieldError("boot_flags 0x%02x: only bits 0-1 are defined" % f["boot_flags"])
    elif msg_type == HEARTBEAT:
        _range("samples_lost", f["samples_lost"], 0, SEQ_LIMIT - 1)
    elif msg_type == WITNESS:
        _range("kind", f["kind"], 1, WITNESS_KIND_MAX)
        _range("decision", f["decision"], 0, DECISION_QUARANTINE)
        _range("pow_bits", f["pow_bits"], 0, 32)
    elif msg_type == ACK:
        check_ack(f["acked_type"], f["status"])
    elif msg_type == CONFIG:
        for p in f["pairs"]:
            check_config_key(p[0])
    elif msg_type == MODEL:
        check_model([f[nm] for nm in MODEL_FIELDS[1:]])
    elif msg_type == TIME_SYNC:
        _range("mode", f["mode"], SYNC_REQUEST, SYNC_REPLY)
    elif msg_type == CLEAR:
        check_clear(f["reason"])
    elif msg_type == ERROR:
        _range("code", f["code"], 1, ERR_CODE_MAX)
        _range("ref_type", f["ref_type"], 0, TYPE_MAX)


def check_sync_direction(msg_type, f, device_id):
    if msg_type == TIME_SYNC:
        check_time_sync(f["mode"], device_id)


# ---------------------------------------------------------------- decoding (both sides)

def _text(raw, name):
    end = len(raw)
    while end and raw[end - 1] == 0:
        end -= 1
    for i in range(end):
        b = raw[i]
        if b < 0x20 or b > 0x7E:
            raise FieldError("%s byte %d is 0x%02x: printable ASCII 0x20..0x7E, then NUL "
                             "padding, allowed" % (name, i, b))
    return bytes(raw[:end]).decode("ascii")


def _unpack_fixed(msg_type, data, off):
    fmt, names = LAYOUTS[msg_type]
    f = dict(zip(names, struct.unpack_from(fmt, data, off)))
    if msg_type == HELLO:
        f["board"] = _text(f["board"], "board")
    elif msg_type == ERROR:
        f["text"] = _text(f["text"], "text")
    return f


def decode(data, auth=None, replay=None):
    """Decode one frame (no COBS; one datagram or one deframed segment).
    auth: None, an Auth, or a mapping device_id -> Auth. When a key is known for the frame's
    device_id the frame must carry a valid tag; a tagged frame needs a known key.
    replay: None or a ReplayGuard, checked after the tag and updated only once the whole frame
    decoded. Raises a ProtocolError subclass on any bad input."""
    vf, mt, device_id, boot_id, seq, era, off, end = check_frame(data, auth)
    flags = vf & 0x0F
    if replay is not None and not replay.check(device_id, boot_id, seq):
        raise ReplayError("seq %d of device %d boot %d already seen or older than the window"
                          % (seq, device_id, boot_id))
    plen = end - HEADER_LEN
    p = HEADER_LEN
    if flags & FLAG_BATCH:
        if mt != TELEMETRY:
            raise FieldError("BATCH flag on %s (only TELEMETRY batches)" % TYPE_NAMES[mt])
        if plen < 1:
            raise LengthError("BATCH payload is empty (needs a count byte)")
        count = data[p]
        if not 1 <= count <= MAX_BATCH:
            raise FieldError("BATCH count %d outside 1..%d" % (count, MAX_BATCH))
        if plen != 1 + TELEMETRY_LEN * count:
            raise LengthError("BATCH payload is %d bytes, %d expected for %d records"
                              % (plen, 1 + TELEMETRY_LEN * count, count))
        recs = []
        for i in range(count):
            r = _unpack_fixed(TELEMETRY, data, p + 1 + i * TELEMETRY_LEN)
            validate_fields(TELEMETRY, r)
            recs.append(r)
        fields = {"records": recs}
    elif mt == CONFIG:
        if plen < CONFIG_HEAD_LEN:
            raise LengthError("CONFIG payload is %d bytes, at least %d needed"
                              % (plen, CONFIG_HEAD_LEN))
        version, count = struct.unpack_from(CONFIG_HEAD_FMT, data, p)
        check_config(count, plen)
        pairs = []
        for i in range(count):
            k, v = struct.unpack_from(CONFIG_PAIR_FMT, data,
                                      p + CONFIG_HEAD_LEN + CONFIG_PAIR_LEN * i)
            pairs.append([k, v])
        fields = {"config_version": version, "pairs": pairs}
        validate_fields(CONFIG, fields)
    else:
        check_len(TYPE_NAMES[mt], plen, _PAYLOAD_LEN[mt])
        fields = _unpack_fixed(mt, data, p)
        validate_fields(mt, fields)
        check_sync_direction(mt, fields, device_id)
    if replay is not None:
        replay.accept(device_id, boot_id, seq)
    return Frame(vf, mt, device_id, boot_id, seq, era, off, fields)


def witness_record(device_id, boot_id, f):
    """The bytes the WITNESS proof of work covers: device_id u16 | boot_id u16 | witness body
    without the nonce (PROTOCOL.md, "WITNESS")."""
    return struct.pack(WITNESS_RECORD_FMT, device_id, boot_id, f["witness_id"], f["kind"],
                       f["beat"], f["decision"], f["threat"], f["coherence"], f["value"],
                       f["pow_bits"])


def config_value(key_id, value):
    """A CONFIG value as a number: ints as is, q16 keys as value / 65536 (host side)."""
    k = CONFIG_KEYS.get(key_id)
    if k is None:
        raise FieldError("config key %d unknown (known: %s)"
                         % (key_id, ", ".join(str(i) for i in sorted(CONFIG_KEYS))))
    return value / 65536 if k[1] == "q16" else value
