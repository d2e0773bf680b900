"""What a relay reads of a frame it forwards: only the clear header and, for WITNESS and ACK,
the record / acknowledged id (docs/PROTOCOL.md section 1: the header and every payload travel
in the clear; the tag proves them). The relay holds no device key and checks no tag: it checks
the CRC (a frame damaged on a serial line is dropped here rather than buffered) and the version,
and forwards the bytes untouched, so the coordinator's tag, replay window and sequence checks
apply to them exactly as if the device were on its own link.
"""
import struct
import zlib

from shared import wire_format as W

__all__ = ["Peek", "peek", "witness_key", "acked_witness", "CRC_RESIDUE"]

# zlib.crc32 over a whole frame (CRC included) is this constant when the CRC is right
CRC_RESIDUE = 0x2144DF1C
_HEAD = struct.Struct("<BBHHI")          # ver_flags, type, device_id, boot_id, seq
_U32 = struct.Struct("<I")
_ACK = struct.Struct(W.ACK_FMT)          # acked_type, status, ref
_MIN = W.HEADER_LEN + W.CRC_LEN


class Peek:
    __slots__ = ("type", "device_id", "boot_id", "seq")

    def __init__(self, mtype, device_id, boot_id, seq):
        self.type, self.device_id, self.boot_id, self.seq = mtype, device_id, boot_id, seq


def peek(frame):
    """The clear header of a whole, undamaged v3 frame, or None (too short or long, bad CRC,
    another version, an unknown type)."""
    n = len(frame)
    if n < _MIN or n > W.MAX_FRAME or zlib.crc32(frame) != CRC_RESIDUE:
        return None
    vf, mtype, dev, boot, seq = _HEAD.unpack_from(frame, 0)
    if vf >> 4 != W.VERSION or not 1 <= mtype <= W.TYPE_MAX:
        return None
    return Peek(mtype, dev, boot, seq)


def witness_key(frame, p):
    """(boot_id, witness_id) of a device's WITNESS frame."""
    return p.boot_id, _U32.unpack_from(frame, W.HEADER_LEN)[0]


def acked_witness(frame, p):
    """(boot_id, witness_id) a host ACK acknowledges, or None when it acknowledges something
    else (a CONFIG, a MODEL, a frame's seq)."""
    if p.type != W.ACK or len(frame) < W.HEADER_LEN + W.ACK_LEN + W.CRC_LEN:
        return None
    acked_type, _status, ref = _ACK.unpack_from(frame, W.HEADER_LEN)
    return (p.boot_id, ref) if acked_type == W.WITNESS else None
