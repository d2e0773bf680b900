# The checks of the wire, in one place for both runtimes: what every frame passes before its
# payload is read (check_frame), and the values of the payloads a host sends (the device reads
# those without shared/protocol.py; the host's decoder calls the same functions). Every failure
# raises a shared.wire_errors error saying what was wrong and what is allowed.
#
# check_frame(data, auth=None) -> (ver_flags, type, device_id, boot_id, seq, time_era, time_off,
#                                  payload_end)
# check_len(what, payload_len, want)
# check_ack(acked_type, status); check_config(count, payload_len); check_config_key(key)
# check_model(values); check_time_sync(mode, device_id); check_clear(reason)
import struct

from shared.crc import crc32_check
from shared.wire_errors import (AuthError, CrcError, FieldError, LengthError, OversizeError,
                                ShortFrameError, UnknownTypeError, VersionError)
from shared.wire_format import (VERSION, FLAG_AUTH, FLAGS_KNOWN, HEADER_LEN, CRC_LEN, TAG_LEN,
                                MAX_FRAME, HEADER_HALVES, TYPE_MAX, MAX_CONFIG_PAIRS,
                                CONFIG_HEAD_LEN, CONFIG_PAIR_LEN, CHALLENGE, sent_by_host)
from shared.protocol_codes import (ACK_STATUS_MAX, CLEAR_REASON_MAX, SYNC_REQUEST, SYNC_REPLY)



def _key_for(auth, device_id):
    if auth is None:
        return None
    if hasattr(auth, "verify"):     # an Auth
        return auth
    return auth.get(device_id)      # a mapping device_id -> Auth


def check_frame(data, auth=None):
    """Length, CRC, version, flags, type, tag (auth: None, an Auth, or a mapping device_id ->
    Auth: a frame from a device with a key must be signed, a signed frame needs a key), seq and
    time ranges, boot id, and who may send the type. Returns the header and the payload end."""
    n = len(data)
    if n < HEADER_LEN + CRC_LEN:
        raise ShortFrameError("frame is %d bytes, at least %d needed" % (n, HEADER_LEN + CRC_LEN))
    if n > MAX_FRAME:
        raise OversizeError("frame is %d bytes, at most %d allowed" % (n, MAX_FRAME))
    if not crc32_check(data, n - CRC_LEN):
        raise CrcError("CRC-32 mismatch over %d bytes" % (n - CRC_LEN))
    (vf, mt, device_id, boot_id, seq_lo, seq_hi, era, off_lo,
     off_hi) = struct.unpack_from(HEADER_HALVES, data, 0)
    if vf >> 4 != VERSION:
        raise VersionError("protocol version %d unsupported (this side speaks %d)"
                           % (vf >> 4, VERSION))
    flags = vf & 0x0F
    if flags & ~FLAGS_KNOWN:
        raise FieldError("unknown flag bits 0x%x (known: AUTH 0x1, BATCH 0x2)"
                         % (flags & ~FLAGS_KNOWN))
    if not 1 <= mt <= TYPE_MAX:
        raise UnknownTypeError("message type %d unknown (allowed: 1..%d)" % (mt, TYPE_MAX))
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
    h = sent_by_host(mt)
    if (h == 0 and device_id == 0) or (h == 1 and device_id != 0):
        raise FieldError("type %d with device_id %d: %s" % (
            mt, device_id, "device frames need 1..65535" if h == 0
            else "host frames carry device_id 0"))
    return (vf, mt, device_id, boot_id, seq_lo | (seq_hi << 16), era, off_lo | (off_hi << 16),
            end)


def check_len(what, payload_len, want):
    """A fixed payload has exactly its length (trailing bytes are an error, never ignored)."""
    if payload_len != want:
        raise LengthError("%s payload is %d bytes, %d expected" % (what, payload_len, want))


def _range(name, v, lo, hi):
    if not lo <= v <= hi:
        raise FieldError("%s = %r outside %d..%d" % (name, v, lo, hi))


def check_ack(acked_type, status):
    _range("acked_type", acked_type, 1, TYPE_MAX)
    _range("status", status, 0, ACK_STATUS_MAX)


def check_config(count, payload_len):
    """A CONFIG payload of payload_len bytes announcing count pairs."""
    if count > MAX_CONFIG_PAIRS:
        raise FieldError("CONFIG count %d, at most %d" % (count, MAX_CONFIG_PAIRS))
    want = CONFIG_HEAD_LEN + CONFIG_PAIR_LEN * count
    if payload_len != want:
        raise LengthError("CONFIG payload is %d bytes, %d expected for %d pairs"
                          % (payload_len, want, count))


def check_config_key(key):
    _range("config key", key, 1, 255)


_MODEL_NAMES = "bias w_level w_kurt w_crest w_anoms"


def check_model(values):
    """The five MODEL weights (bias, w_level, w_kurt, w_crest, w_anoms) must be finite."""
    for i in range(5):
        v = values[i]
        if v - v != 0:  # NaN or infinity
            raise FieldError("MODEL %s must be a finite number (got %r)"
                             % (_MODEL_NAMES.split()[i], v))


def check_time_sync(mode, device_id):
    _range("mode", mode, SYNC_REQUEST, SYNC_REPLY)
    if (mode == SYNC_REQUEST) != (device_id == 0):
        raise FieldError("TIME_SYNC %s with device_id %d: requests come from the host (0), "
                         "replies from a device (1..65535)"
                         % ("request" if mode == SYNC_REQUEST else "reply", device_id))


def check_clear(reason):
    _range("reason", reason, 1, CLEAR_REASON_MAX)
