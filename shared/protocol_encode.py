# The generic frame encoder (shared.protocol.encode loads it): host side, tests and golden
# vectors on both runtimes. The device builds its frames with shared/frame_encoder.py, so this
# module is never loaded on a board (every module costs heap there).
import struct

from shared.wire_format import (CONFIG, CONFIG_HEAD_FMT, CONFIG_PAIR_FMT, FLAG_AUTH, FLAG_BATCH,
                                HEADER_FMT, HEADER_LEN, MAX_BATCH, MAX_CONFIG_PAIRS, TELEMETRY,
                                TELEMETRY_LEN, VERSION, SEQ_LIMIT, ERA_LIMIT)
from shared.protocol import (LAYOUTS, TYPE_NAMES, _PAYLOAD_LEN, check_sync_direction,
                             validate_fields, DIRECTION, frame_size)
from shared.auth import TAG_LEN  # noqa: F401
from shared.crc import crc32_store
from shared.wire_errors import FieldError, UnknownTypeError



def _ascii(value, size, name):
    if isinstance(value, str):
        try:
            value = value.encode("ascii")
        except (UnicodeError, ValueError):
            raise FieldError("%s must be ASCII text" % name)
    if not isinstance(value, (bytes, bytearray)):
        raise FieldError("%s must be text of at most %d ASCII bytes" % (name, size))
    if len(value) > size:
        raise FieldError("%s is %d bytes, at most %d allowed" % (name, len(value), size))
    for b in value:
        if b < 0x20 or b > 0x7E:
            raise FieldError("%s must be printable ASCII (0x20..0x7E)" % name)
    return bytes(value)


def _pack_fixed(msg_type, fields, buf, off):
    fmt, names = LAYOUTS[msg_type]
    vals = []
    for nm in names:
        if nm not in fields:
            raise FieldError("%s payload needs field %r" % (TYPE_NAMES[msg_type], nm))
        v = fields[nm]
        if nm == "board":
            v = _ascii(v, 8, nm)
        elif nm == "text":
            v = _ascii(v, 16, nm)
        elif nm == "nonce" and fmt.endswith("16s"):      # HELLO, CHALLENGE: 16 random bytes
            if not isinstance(v, (bytes, bytearray)) or len(v) != 16:
                raise FieldError("%s nonce must be 16 bytes (got %r)" % (TYPE_NAMES[msg_type], v))
            v = bytes(v)
        vals.append(v)
    try:
        struct.pack_into(fmt, buf, off, *vals)
    except (struct.error, OverflowError, TypeError, ValueError) as e:
        raise FieldError("%s payload does not fit its layout %s: %s"
                         % (TYPE_NAMES[msg_type], fmt, e))


def encode_frame(msg_type, fields, device_id, boot_id, seq, time_era=0, time_off=0, auth=None,
                 batch=False):
    """shared.protocol.encode (see there)."""
    if msg_type not in TYPE_NAMES:
        raise UnknownTypeError("message type %r unknown (allowed: 1..11)" % (msg_type,))
    if batch and msg_type != TELEMETRY:
        raise FieldError("BATCH is only defined for TELEMETRY")
    count = None
    if batch:
        recs = fields.get("records") if isinstance(fields, dict) else None
        if not recs or len(recs) > MAX_BATCH:
            raise FieldError("BATCH needs 1..%d records" % MAX_BATCH)
        count = len(recs)
    elif msg_type == CONFIG:
        pairs = fields.get("pairs", [])
        if len(pairs) > MAX_CONFIG_PAIRS:
            raise FieldError("CONFIG carries at most %d pairs (got %d)"
                             % (MAX_CONFIG_PAIRS, len(pairs)))
        count = len(pairs)
    n = frame_size(msg_type, auth is not None, count)
    buf = bytearray(n)
    _check_header_values(msg_type, device_id, boot_id, seq, time_era, time_off)
    flags = (FLAG_AUTH if auth is not None else 0) | (FLAG_BATCH if batch else 0)
    struct.pack_into(HEADER_FMT, buf, 0, (VERSION << 4) | flags, msg_type, device_id, boot_id,
                     seq, time_era, time_off)
    off = HEADER_LEN
    if batch:
        buf[off] = count
        off += 1
        for r in fields["records"]:
            _pack_fixed(TELEMETRY, r, buf, off)
            validate_fields(TELEMETRY, r)
            off += TELEMETRY_LEN
    elif msg_type == CONFIG:
        try:
            struct.pack_into(CONFIG_HEAD_FMT, buf, off, fields["config_version"], count)
            off += 5
            for p in fields["pairs"]:
                struct.pack_into(CONFIG_PAIR_FMT, buf, off, p[0], p[1])
                off += 5
        except (struct.error, OverflowError, TypeError, ValueError, KeyError, IndexError) as e:
            raise FieldError("CONFIG payload invalid (config_version u32, pairs of (key u8, "
                             "value i32)): %r" % (e,))
        validate_fields(CONFIG, fields)
    else:
        _pack_fixed(msg_type, fields, buf, off)
        validate_fields(msg_type, fields)
        check_sync_direction(msg_type, fields, device_id)
        off += _PAYLOAD_LEN[msg_type]
    if auth is not None:
        auth.tag_into(buf, off)
        off += TAG_LEN
    crc32_store(buf, off)
    return bytes(buf)


def _check_header_values(msg_type, device_id, boot_id, seq, time_era, time_off):
    d = DIRECTION[msg_type]
    if not 0 <= device_id <= 0xFFFF:
        raise FieldError("device_id %r outside 0..65535" % (device_id,))
    if d == "d" and device_id == 0:
        raise FieldError("%s is sent by devices only: device_id must be 1..65535, not 0"
                         % TYPE_NAMES[msg_type])
    if d == "h" and device_id != 0:
        raise FieldError("%s is sent by the host only: device_id must be 0 (got %d)"
                         % (TYPE_NAMES[msg_type], device_id))
    if not 1 <= boot_id <= 0xFFFF:
        raise FieldError("boot_id %r outside 1..65535 (0 is not a valid boot id)" % (boot_id,))
    if not 0 <= seq < SEQ_LIMIT:
        raise FieldError("seq %r outside 0..2^30-1 (the device rolls its boot id before 2^30)"
                         % (seq,))
    if not 0 <= time_era < ERA_LIMIT:
        raise FieldError("time_era %r outside 0..255" % (time_era,))
    if not 0 <= time_off < SEQ_LIMIT:
        raise FieldError("time_off %r outside 0..2^30-1" % (time_off,))
