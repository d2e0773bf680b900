"""Cheap screening of what a link received, before any decode (docs/HOST.md "Junk").

Every datagram that cannot be a frame a device sends -- too short, another version, reserved
flag bits, an unknown type or a host-only one, device_id or boot_id 0, a payload length its
type does not have -- is dropped here and counted by the decoder's reason (short, version,
field, type, length). For a recvmmsg DatagramBlock the checks are a few numpy operations over
the whole block (well under a microsecond per datagram); non-TELEMETRY survivors also have
their CRC checked here (few in genuine traffic), TELEMETRY rows get it in the batch decoder.
So junk never reaches the per-frame decoder or the batch path, and never cuts genuine
TELEMETRY into short runs (host/ingest/pipeline.py takes every TELEMETRY row of a block in one
batch decode). The link readers run this (host/coordinator/service.py), so junk costs the
processing thread nothing.

    screen_block(block) -> (DatagramBlock or None, {reason: n})
    screen_frame(data) -> None (plausible) or the reason
    screen_batch(batch) -> (FrameBatch or None, {reason: n})
"""
import zlib

import numpy as np

from becomingone.links.batch import DatagramBlock, FrameList
from shared import protocol as P
from shared.auth import TAG_LEN

__all__ = ["screen_block", "screen_frame", "screen_batch", "REASONS"]

REASONS = ("short", "version", "field", "type", "length", "crc")
_MIN = P.HEADER_LEN + P.CRC_LEN
_CRC_RESIDUE = 0x2144DF1C

# expected payload length by type (-1: not a frame a device sends; -2: TELEMETRY, checked apart)
_PLEN = np.full(256, -1, dtype=np.int64)
for _t, _d in P.DIRECTION.items():
    if _d != "h":
        _PLEN[_t] = P.payload_size(_t)
_PLEN[P.TELEMETRY] = -2
_KNOWN = np.zeros(256, dtype=bool)
_KNOWN[list(P.TYPE_NAMES)] = True


def _reasons(d, lens):
    """Reason code per row (0 = plausible, else 1 + index in REASONS), header checks only."""
    n = len(lens)
    code = np.zeros(n, dtype=np.int8)
    if d.shape[1] < P.HEADER_LEN:
        code[:] = 1 + REASONS.index("short")
        return code
    vf = d[:, 0]
    mt = d[:, 1]
    auth = (vf & P.FLAG_AUTH).astype(np.int64)
    batch = (vf & P.FLAG_BATCH) != 0
    dev = d[:, 2].astype(np.int64) | (d[:, 3].astype(np.int64) << 8)
    boot = d[:, 4].astype(np.int64) | (d[:, 5].astype(np.int64) << 8)
    plen = lens.astype(np.int64) - _MIN - TAG_LEN * auth
    want = _PLEN[mt]
    tel = want == -2
    k = plen - 1
    tel_ok = np.where(batch, (k % P.TELEMETRY_LEN == 0) & (k >= P.TELEMETRY_LEN)
                      & (k <= P.TELEMETRY_LEN * P.MAX_BATCH), plen == P.TELEMETRY_LEN)
    bad_len = np.where(tel, ~tel_ok, plen != want)
    bad_field = ((vf & 0x0C) != 0) | (batch & ~tel) | (dev == 0) | (boot == 0) | \
        (_KNOWN[mt] & (want == -1))
    # first failing check wins, in the decoder's order
    code[bad_len] = 1 + REASONS.index("length")
    code[bad_field] = 1 + REASONS.index("field")
    code[~_KNOWN[mt]] = 1 + REASONS.index("type")
    code[(vf >> 4) != P.VERSION] = 1 + REASONS.index("version")
    code[lens < _MIN] = 1 + REASONS.index("short")
    return code


def screen_block(blk):
    """(the plausible rows of a DatagramBlock, or None; {reason: n} of the rest)."""
    d, lens = blk.data, blk.lens
    code = _reasons(d, lens)
    other = (code == 0) & (d[:, 1] != P.TELEMETRY) if d.shape[1] > 1 else code == 0
    for i in np.flatnonzero(other).tolist():      # non-TELEMETRY: CRC here (few of them)
        if zlib.crc32(d[i, :lens[i]]) != _CRC_RESIDUE:
            code[i] = 1 + REASONS.index("crc")
    bad = code != 0
    if not bad.any():
        return blk, {}
    counts = np.bincount(code[bad], minlength=len(REASONS) + 1)
    rej = {REASONS[i - 1]: int(counts[i]) for i in range(1, len(REASONS) + 1) if counts[i]}
    keep = ~bad
    if not keep.any():
        return None, rej
    return DatagramBlock(d[keep], lens[keep], blk.names[keep]), rej


def screen_frame(data):
    """None when `data` could be a frame a device sends (header, length and, for everything
    but TELEMETRY, the CRC), else the reason to count."""
    n = len(data)
    if n < _MIN:
        return "short"
    vf, mt = data[0], data[1]
    if vf >> 4 != P.VERSION:
        return "version"
    if mt not in P.TYPE_NAMES:
        return "type"
    want = int(_PLEN[mt])
    batch = vf & P.FLAG_BATCH
    if vf & 0x0C or want == -1 or (batch and want != -2) or \
            (data[2] | data[3]) == 0 or (data[4] | data[5]) == 0:
        return "field"
    plen = n - _MIN - (TAG_LEN if vf & P.FLAG_AUTH else 0)
    if want == -2:
        k = plen - 1
        ok = (k % P.TELEMETRY_LEN == 0 and P.TELEMETRY_LEN <= k <= P.TELEMETRY_LEN * P.MAX_BATCH) \
            if batch else plen == P.TELEMETRY_LEN
        return None if ok else "length"
    if plen != want:
        return "length"
    if zlib.crc32(data) != _CRC_RESIDUE:
        return "crc"
    return None


def screen_batch(batch):
    """screen_block for a DatagramBlock, screen_frame per frame for a FrameList."""
    if isinstance(batch, DatagramBlock):
        return screen_block(batch)
    rej = {}
    keep = []
    for item in batch.items():
        r = screen_frame(item[0])
        if r is None:
            keep.append(item)
        else:
            rej[r] = rej.get(r, 0) + 1
    if not rej:
        return batch, rej
    return (FrameList(keep) if keep else None), rej
