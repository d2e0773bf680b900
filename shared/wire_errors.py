# Typed errors of the wire protocol (both runtimes).
#
#   ProtocolError                 base; `.reason` is the counter key a receiver uses
#     FramingError   "cobs"       bad COBS encoding in a byte stream
#     FrameError     "frame"      structurally bad frame
#       ShortFrameError   "short"     fewer bytes than header + CRC (+ tag)
#       OversizeError     "oversize"  more than MAX_FRAME bytes
#       VersionError      "version"   version nibble is not 1
#       UnknownTypeError  "type"      message type not in the catalogue
#       LengthError       "length"    payload length wrong for the type (incl. trailing bytes)
#       FieldError        "field"     a field outside its allowed range
#     CrcError       "crc"        CRC-32 mismatch
#     AuthError      "auth"       bad/missing tag, no key for the device, unsigned when a key is set
#     ReplayError    "replay"     sequence already seen or older than the window
#
# Messages say what was wrong and what is allowed; they never contain key material.


class ProtocolError(Exception):
    reason = "protocol"


class FramingError(ProtocolError):
    reason = "cobs"


class FrameError(ProtocolError):
    reason = "frame"


class ShortFrameError(FrameError):
    reason = "short"


class OversizeError(FrameError):
    reason = "oversize"


class VersionError(FrameError):
    reason = "version"


class UnknownTypeError(FrameError):
    reason = "type"


class LengthError(FrameError):
    reason = "length"


class FieldError(FrameError):
    reason = "field"


class CrcError(ProtocolError):
    reason = "crc"


class AuthError(ProtocolError):
    reason = "auth"


class ReplayError(ProtocolError):
    reason = "replay"


# Every counter key a receiver may report, in a stable order.
REASONS = ("cobs", "short", "oversize", "version", "type", "length", "field",
           "crc", "auth", "replay")
