# The BecomingONE wire protocol: catalogue, generic encode, the one decoder (both runtimes).
# docs/PROTOCOL.md is the byte-exact reference; shared/frame_encoder.py is the device's
# allocation-free encoder, which must produce the same bytes as encode() here.
#
# encode(msg_type, fields, device_id, boot_id, seq, time_era=0, time_off=0, auth=None,
#        batch=False) -> bytes
# decode(data, auth=None, replay=None) -> Frame      (raises a shared.wire_errors error)
# frame_size(msg_type, auth=False, count=None) -> int
import struct

from shared.auth import Auth, TAG_LEN
from shared.crc import crc32_check, crc32_store
from shared.wire_errors import (AuthError, CrcError, FieldError, LengthError, OversizeError,
                                ReplayError, ShortFrameError, UnknownTypeError, VersionError)

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

VERSION = const(3)            # 3: session handshake (HELLO nonce, CHALLENGE, per-session keys:
#                               PROTOCOL.md section 10); 2: TELEMETRY features, HELLO limits
#                               (section 9)
FLAG_AUTH = const(0x01)
FLAG_BATCH = const(0x02)
_FLAGS_KNOWN = const(0x03)

HEADER_LEN = const(15)
CRC_LEN = const(4)
MAX_FRAME = const(254)        # so COBS adds exactly one byte (see shared/cobs.py)
SEQ_LIMIT = const(0x40000000)  # seq and time_off are < 2^30
ERA_LIMIT = const(256)       # time_era is a u8: device time < 2^38 us (76.4 h) per boot
# TELEMETRY period_us (u16) saturates at 65535, the exact period is then HELLO's; TELEMETRY
# n_samples is a u8 (0..255). No module-level names for these: every global costs device heap.
MAX_BATCH = const(5)          # 15 + 1 + 5*44 + 8 + 4 = 248 <= MAX_FRAME
MAX_CONFIG_PAIRS = const(32)  # 15 + 5 + 32*5 + 8 + 4 = 192

HELLO = const(1)
TELEMETRY = const(2)
WITNESS = const(3)
ACK = const(4)
CONFIG = const(5)
MODEL = const(6)
TIME_SYNC = const(7)
CLEAR = const(8)
HEARTBEAT = const(9)
ERROR = const(10)
CHALLENGE = const(11)         # host -> device: its nonce; tagged with the new session key

TYPE_NAMES = {HELLO: "HELLO", TELEMETRY: "TELEMETRY", WITNESS: "WITNESS", ACK: "ACK",
              CONFIG: "CONFIG", MODEL: "MODEL", TIME_SYNC: "TIME_SYNC", CLEAR: "CLEAR",
              HEARTBEAT: "HEARTBEAT", ERROR: "ERROR", CHALLENGE: "CHALLENGE"}
TYPE_IDS = {}
for _k in TYPE_NAMES:
    TYPE_IDS[TYPE_NAMES[_k]] = _k

# Who may send a type: "d" device (device_id 1..65535), "h" host (device_id 0), "b" both.
DIRECTION = {HELLO: "d", TELEMETRY: "d", WITNESS: "d", HEARTBEAT: "d", CONFIG: "h",
             MODEL: "h", CLEAR: "h", ACK: "b", ERROR: "b", TIME_SYNC: "b", CHALLENGE: "h"}

# Header: ver_flags, type, device_id, boot_id, seq, time_era, time_off
HEADER_FMT = "<BBHHIBI"
_HEADER_HALVES = "<BBHHHHBHH"  # the same 15 bytes with seq/time_off as u16 halves (no bigints)

# Fixed payloads: (struct format, field names). Strings ("Ns") are ASCII, NUL padded.
TELEMETRY_FMT = "<IHHiiIIBHhHHHBhhhH"
TELEMETRY_FIELDS = ("beat", "period_us", "lateness_us", "dT_re", "dT_im", "dE0", "dEL",
                    "n_samples", "coherence", "pid_error", "pid_output", "threat", "o_weight",
                    "decision_state", "level", "kurt", "crest", "anoms")
TELEMETRY_LEN = const(44)
HELLO_FMT = "<8sBBBHHIIHBBBBBHBBBH16s"
HELLO_FIELDS = ("board", "fw_major", "fw_minor", "fw_patch", "capabilities", "fs_hz",
                "period_us", "phase_step", "lag_samples", "adc_bits", "sum_shift", "pow_bits",
                "telemetry_every", "spb_max", "period_min_us", "reset_cause", "boot_flags",
                "kairos_decim", "counts_per_unit_q4", "nonce")
HELLO_LEN = const(53)
WITNESS_FMT = "<IBIBHHiBI"
WITNESS_FIELDS = ("witness_id", "kind", "beat", "decision", "threat", "coherence", "value",
                  "pow_bits", "nonce")
WITNESS_RECORD_FMT = "<HHIBIBHHiB"  # device_id, boot_id, then the witness body without nonce
ACK_FMT = "<BBI"
ACK_FIELDS = ("acked_type", "status", "ref")
MODEL_FMT = "<Ifffff"
MODEL_FIELDS = ("model_version", "bias", "w_level", "w_kurt", "w_crest", "w_anoms")
TIME_SYNC_FMT = "<BQHI"
TIME_SYNC_FIELDS = ("mode", "host_t1_us", "rx_era", "rx_off")
CLEAR_FMT = "<BI"
CLEAR_FIELDS = ("reason", "ref")
HEARTBEAT_FMT = "<IHHHIBHHHHHHHI"
HEARTBEAT_FIELDS = ("beats", "late_p50_us", "late_p99_us", "late_max_us", "heap_free",
                    "witness_queue", "rx_ok", "rx_crc", "rx_cobs", "rx_auth", "rx_replay",
                    "rx_other", "tx_dropped", "samples_lost")
ERROR_FMT = "<BBI16s"
ERROR_FIELDS = ("code", "ref_type", "ref", "text")
CONFIG_HEAD_FMT = "<IB"   # config_version, count; then count x "<Bi" (key id, value)
CONFIG_PAIR_FMT = "<Bi"

LAYOUTS = {HELLO: (HELLO_FMT, HELLO_FIELDS), TELEMETRY: (TELEMETRY_FMT, TELEMETRY_FIELDS),
           WITNESS: (WITNESS_FMT, WITNESS_FIELDS), ACK: (ACK_FMT, ACK_FIELDS),
           MODEL: (MODEL_FMT, MODEL_FIELDS), TIME_SYNC: (TIME_SYNC_FMT, TIME_SYNC_FIELDS),
           CLEAR: (CLEAR_FMT, CLEAR_FIELDS), HEARTBEAT: (HEARTBEAT_FMT, HEARTBEAT_FIELDS),
           ERROR: (ERROR_FMT, ERROR_FIELDS), CHALLENGE: ("<16s", ("nonce",))}

# Code tables (capabilities, decisions, witness kinds, ACK status, CLEAR reasons, ERROR codes,
# CONFIG keys) live in shared/protocol_codes.py and are re-exported here.
from shared.protocol_codes import *  # noqa: E402,F401,F403

_PAYLOAD_LEN = {}
for _k in LAYOUTS:
    _PAYLOAD_LEN[_k] = struct.calcsize(LAYOUTS[_k][0])


def payload_size(msg_type, count=None):
    """Payload bytes of a type; count = beats (TELEMETRY with BATCH) or pairs (CONFIG)."""
    if msg_type == CONFIG:
        return 5 + 5 * (count or 0)
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
    """Semantic checks shared by encode and decode (what the tables in PROTOCOL.md allow)."""
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
        _range("acked_type", f["acked_type"], 1, CHALLENGE)
        _range("status", f["status"], 0, ACK_STATUS_MAX)
    elif msg_type == CONFIG:
        for p in f["pairs"]:
            _range("config key", p[0], 1, 255)
    elif msg_type == MODEL:
        for nm in ("bias", "w_level", "w_kurt", "w_crest", "w_anoms"):
            v = f[nm]
            if v - v != 0:  # NaN or infinity
                raise FieldError("MODEL %s must be a finite number (got %r)" % (nm, v))
    elif msg_type == TIME_SYNC:
        _range("mode", f["mode"], SYNC_REQUEST, SYNC_REPLY)
    elif msg_type == CLEAR:
        _range("reason", f["reason"], 1, CLEAR_REASON_MAX)
    elif msg_type == ERROR:
        _range("code", f["code"], 1, ERR_CODE_MAX)
        _range("ref_type", f["ref_type"], 0, CHALLENGE)


def check_sync_direction(msg_type, f, device_id):
    if msg_type == TIME_SYNC and (f["mode"] == SYNC_REQUEST) != (device_id == 0):
        raise FieldError("TIME_SYNC %s with device_id %d: requests come from the host (0), "
                         "replies from a device (1..65535)"
                         % ("request" if f["mode"] == SYNC_REQUEST else "reply", device_id))


# ---------------------------------------------------------------- decoding (both sides)

def _key_for(auth, device_id):
    if auth is None:
        return None
    if isinstance(auth, Auth):
        return auth
    return auth.get(device_id)  # a mapping device_id -> Auth


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
    n = len(data)
    if n < HEADER_LEN + CRC_LEN:
        raise ShortFrameError("frame is %d bytes, at least %d needed" % (n, HEADER_LEN + CRC_LEN))
    if n > MAX_FRAME:
        raise OversizeError("frame is %d bytes, at most %d allowed" % (n, MAX_FRAME))
    if not crc32_check(data, n - CRC_LEN):
        raise CrcError("CRC-32 mismatch over %d bytes" % (n - CRC_LEN))
    (vf, mt, device_id, boot_id, seq_lo, seq_hi, era, off_lo,
     off_hi) = struct.unpack_from(_HEADER_HALVES, data, 0)
    if vf >> 4 != VERSION:
        raise VersionError("protocol version %d unsupported (this side speaks %d)"
                           % (vf >> 4, VERSION))
    flags = vf & 0x0F
    if flags & ~_FLAGS_KNOWN:
        raise FieldError("unknown flag bits 0x%x (known: AUTH 0x1, BATCH 0x2)"
                         % (flags & ~_FLAGS_KNOWN))
    if mt not in TYPE_NAMES:
        raise UnknownTypeError("message type %d unknown (allowed: 1..11)" % mt)
    end = n - CRC_LEN
    key = _key_for(auth, device_id)
    if flags & FLAG_AUTH:
        if end - TAG_LEN < HEADER_LEN:
            raise ShortFrameError("AUTH frame is %d bytes, at least %d needed"
                                  % (n, HEADER_LEN + TAG_LEN + CRC_LEN))
        end -= TAG_LEN
        if key is None:
            raise AuthError("frame from device %d is signed but no key is configured for it"
                            % device_id)
        if not key.verify(data, end):
            raise AuthError("bad authentication tag (device %d)" % device_id)
    elif key is not None:
        raise AuthError("unsigned frame from device %d, which has a key: signing required"
                        % device_id)
    elif mt == CHALLENGE:
        raise AuthError("unsigned CHALLENGE: a CHALLENGE is always signed")
    if seq_hi >= 0x4000 or off_hi >= 0x4000:
        raise FieldError("seq and time_off must be < 2^30")
    if boot_id == 0:
        raise FieldError("boot_id 0 is not valid (1..65535)")
    d = DIRECTION[mt]
    if (d == "d" and device_id == 0) or (d == "h" and device_id != 0):
        raise FieldError("%s with device_id %d: %s" % (
            TYPE_NAMES[mt], device_id, "device frames need 1..65535" if d == "d"
            else "host frames carry device_id 0"))
    seq = seq_lo | (seq_hi << 16)
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
        if plen < 5:
            raise LengthError("CONFIG payload is %d bytes, at least 5 needed" % plen)
        version, count = struct.unpack_from(CONFIG_HEAD_FMT, data, p)
        if count > MAX_CONFIG_PAIRS:
            raise FieldError("CONFIG count %d, at most %d" % (count, MAX_CONFIG_PAIRS))
        if plen != 5 + 5 * count:
            raise LengthError("CONFIG payload is %d bytes, %d expected for %d pairs"
                              % (plen, 5 + 5 * count, count))
        pairs = []
        for i in range(count):
            k, v = struct.unpack_from(CONFIG_PAIR_FMT, data, p + 5 + 5 * i)
            pairs.append([k, v])
        fields = {"config_version": version, "pairs": pairs}
        validate_fields(CONFIG, fields)
    else:
        want = _PAYLOAD_LEN[mt]
        if plen != want:
            raise LengthError("%s payload is %d bytes, %d expected"
                              % (TYPE_NAMES[mt], plen, want))
        fields = _unpack_fixed(mt, data, p)
        validate_fields(mt, fields)
        check_sync_direction(mt, fields, device_id)
    if replay is not None:
        replay.accept(device_id, boot_id, seq)
    return Frame(vf, mt, device_id, boot_id, seq, era, off_lo | (off_hi << 16), fields)


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
