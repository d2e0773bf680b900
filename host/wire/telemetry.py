"""TELEMETRY on the host: decode_telemetry_batch, the numpy dtypes of its rows, and a record in
physical units (decode_telemetry).

decode_telemetry_batch: many TELEMETRY frames at once (a list of datagrams, or one blob of
fixed-size frames) into a numpy structured array, one row per beat, CRC checked per frame,
rejects counted by reason. For ingest and analysis; the live path uses Receiver.
"""
import zlib

import numpy as np

from becomingone.wire.receive import as_auth_map
from shared import protocol as P
from shared.auth import TAG_LEN, Auth
from shared.wire_errors import ProtocolError

__all__ = ["decode_telemetry_batch", "decode_telemetry", "BatchResult", "TELEMETRY_DTYPE",
           "BEAT_DTYPE", "RECORD_DTYPE", "telemetry_period_us"]

_PAYLOAD_DTYPE = [("beat", "<u4"), ("period_us", "<u2"), ("lateness_us", "<u2"),
                  ("dT_re", "<i4"), ("dT_im", "<i4"), ("dE0", "<u4"), ("dEL", "<u4"),
                  ("n_samples", "u1"), ("coherence", "<u2"), ("pid_error", "<i2"),
                  ("pid_output", "<u2"), ("threat", "<u2"), ("o_weight", "<u2"),
                  ("decision_state", "u1"), ("level", "<i2"), ("kurt", "<i2"), ("crest", "<i2"),
                  ("anoms", "<u2")]
_HEADER_DTYPE = [("ver_flags", "u1"), ("type", "u1"), ("device_id", "<u2"), ("boot_id", "<u2"),
                 ("seq", "<u4"), ("time_era", "u1"), ("time_off", "<u4")]
RECORD_DTYPE = np.dtype(_PAYLOAD_DTYPE)
# One single-beat TELEMETRY frame without AUTH, byte for byte (63 bytes).
TELEMETRY_DTYPE = np.dtype(_HEADER_DTYPE + _PAYLOAD_DTYPE + [("crc", "<u4")])
# One row per beat in the batch decoder's output.
BEAT_DTYPE = np.dtype([("device_id", "<u2"), ("boot_id", "<u2"), ("seq", "<u4"),
                       ("time_us", "<u8"), ("index", "u1"), ("count", "u1")] + _PAYLOAD_DTYPE)
assert RECORD_DTYPE.itemsize == P.TELEMETRY_LEN
assert TELEMETRY_DTYPE.itemsize == P.frame_size(P.TELEMETRY)


def telemetry_period_us(period_us, hello=None):
    """The beat period of a TELEMETRY record in µs. The record's u16 period_us saturates at
    65535 (PROTOCOL.md 2.2): then the exact period is the u32 period_us of the boot's HELLO
    (the device re-sends HELLO whenever its period changes). Without a HELLO the saturated
    value is returned as is (a lower bound)."""
    p = int(period_us)
    if p >= 0xFFFF and hello:
        hp = hello.get("period_us") if hasattr(hello, "get") else None
        if hp:
            return int(hp)
    return p


def decode_telemetry(rec, hello=None):
    """A TELEMETRY record (a dict of wire values) in physical units (docs/PROTOCOL.md scales):
    Q16 -> /65536, pid_error Q15 -> /32768, the Q8 features in octaves, the decision and state
    bits named; None if no record."""
    if not rec:
        return None
    st = int(rec["decision_state"])
    code = st & P.DECISION_MASK
    lv = int(rec.get("level", -8192))
    return {"beat": int(rec["beat"]), "period_us": telemetry_period_us(rec["period_us"], hello),
            "lateness_us": int(rec["lateness_us"]), "coherence": int(rec["coherence"]) / 65536.0,
            "pid_error": int(rec["pid_error"]) / 32768.0, "pid_output": int(rec["pid_output"]) / 65536.0,
            "threat": int(rec["threat"]) / 65536.0, "o_weight": int(rec["o_weight"]) / 65536.0,
            "decision": P.DECISION_NAMES[code] if code < len(P.DECISION_NAMES) else "INVALID",
            "decision_code": code, "collapse": bool(st & P.STATE_COLLAPSE),
            "quarantined": bool(st & P.STATE_QUARANTINE_LATCHED),
            "coherence_lost": bool(st & P.STATE_COHERENCE_LOST),
            "sensor_fault": bool(st & P.STATE_SENSOR_FAULT),
            "lag_locked": bool(st & P.STATE_LAG_LOCKED),
            # features: log2 of rms(y) in sensor units (None when the window has no energy),
            # of the kurtosis and of the crest factor of y; anomalies in the window
            "level": None if lv <= -8192 else lv / 256.0, "kurt": int(rec.get("kurt", 0)) / 256.0,
            "crest": int(rec.get("crest", 0)) / 256.0, "anoms": int(rec.get("anoms", 0))}


class BatchResult:
    """beats: numpy array of BEAT_DTYPE (one row per beat, in input order);
    rejects: {reason: count}; frames_ok: number of frames accepted."""

    def __init__(self, beats, rejects, frames_ok):
        self.beats = beats
        self.rejects = rejects
        self.frames_ok = frames_ok

    def __repr__(self):
        return "<BatchResult beats=%d frames_ok=%d rejects=%r>" % (
            len(self.beats), self.frames_ok, {k: v for k, v in self.rejects.items() if v})


def _frame_dtype(count, auth):
    fields = list(_HEADER_DTYPE)
    if count is not None:
        fields.append(("count", "u1"))
        fields.append(("records", RECORD_DTYPE, (count,)))
    else:
        fields += _PAYLOAD_DTYPE
    if auth:
        fields.append(("tag", "V8"))
    fields.append(("crc", "<u4"))
    return np.dtype(fields)


# decision_state bits that must be zero (none since wire v2: bits 3-5 are state flags)
_STATE_RESERVED = 0xFF & ~(P.DECISION_MASK | P.STATE_COLLAPSE | P.STATE_QUARANTINE_LATCHED |
                           P.STATE_COHERENCE_LOST | P.STATE_SENSOR_FAULT | P.STATE_LAG_LOCKED)
_CRC_RESIDUE = 0x2144DF1C  # CRC-32 of (message + its own CRC, little-endian): any valid frame


def _crc_ok_rows(raw, n, size, frame_list=None):
    """Boolean array: CRC-32 of each size-byte frame in raw is right. Uses the CRC residue (a
    frame with its CRC appended has the constant CRC 0x2144DF1C), so zlib runs over whole frames
    in one C-level map with no slicing when the frames are given as a list."""
    crc = zlib.crc32
    if frame_list is None:  # numpy void scalars expose their bytes without a Python slice
        frame_list = np.frombuffer(raw, dtype="V%d" % size, count=n)
    return np.fromiter(map(crc, frame_list), dtype=np.uint32, count=n) == _CRC_RESIDUE


def _reject(rejects, reason, n=1):
    if n:
        rejects[reason] = rejects.get(reason, 0) + int(n)


def _check_group(arr, raw, size, count, auth_map, rejects, frame_list=None):
    """Vectorised header checks + per-frame CRC (and tag) for frames of one size/shape.
    Returns the boolean mask of accepted frames."""
    n = len(arr)
    end = size - 4
    crc_ok = _crc_ok_rows(raw, n, size, frame_list)
    _reject(rejects, "crc", n - int(crc_ok.sum()))
    ok = crc_ok
    vf = arr["ver_flags"]
    bad = ok & ((vf >> 4) != P.VERSION)
    _reject(rejects, "version", bad.sum())
    ok = ok & ~bad
    want_flags = (P.FLAG_AUTH if auth_map is not None else 0) | (P.FLAG_BATCH if count else 0)
    bad = ok & (((vf & 0x0F) != want_flags) | (arr["type"] != P.TELEMETRY))
    # A frame of another type/flags that happens to have this size: decoded on the slow path
    ok_other = bad
    ok = ok & ~bad
    bad = ok & ((arr["seq"] >= P.SEQ_LIMIT) | (arr["time_off"] >= P.SEQ_LIMIT) |
                (arr["boot_id"] == 0) | (arr["device_id"] == 0))
    if count:
        bad |= ok & (arr["count"] != count)
        ds = arr["records"]["decision_state"]
        bad |= ok & np.any(((ds & P.DECISION_MASK) > P.DECISION_QUARANTINE) |
                           ((ds & _STATE_RESERVED) != 0), axis=1)
    else:
        ds = arr["decision_state"]
        bad |= ok & (((ds & P.DECISION_MASK) > P.DECISION_QUARANTINE) | ((ds & _STATE_RESERVED) != 0))
    _reject(rejects, "field", bad.sum())
    ok = ok & ~bad
    if auth_map is not None:
        idx = np.flatnonzero(ok)
        if len(idx):
            good = _tags_ok(auth_map, arr["device_id"][idx].tolist(), raw, idx, size, end - TAG_LEN)
            nbad = len(idx) - int(good.sum())
            if nbad:
                ok[idx[~good]] = False
                _reject(rejects, "auth", nbad)
    return ok, ok_other


def _tags_ok(auth_map, devs, raw, idx, size, body):
    """Boolean array: the AUTH tag of frame idx[j] of `raw` (bytes: frames of `size` bytes, tag
    at body..body+8) is the truncated HMAC-SHA256 of its first `body` bytes under the key of
    devs[j] (auth_map: {device: Auth}; no key: False). One pass over the frames with each key's
    pads already absorbed (shared/auth.py Auth: a tag costs two hash-state copies, ~0.8 us);
    the tags are compared as one numpy array (a whole batch at once: no early exit per byte)."""
    raw = bytes(raw)
    n = len(devs)
    pairs = {}
    missing = []
    for d in set(devs):
        a = auth_map.get(d)
        if a is not None and getattr(a, "_hi", None) is not None:
            pairs[d] = (a._hi, a._ho)
        else:
            pairs[d] = a                    # None (no key) or an Auth without hash states
    out = []
    app = out.append
    none = bytes(32)
    for j, (dev, off) in enumerate(zip(devs, (idx * size).tolist())):
        p = pairs[dev]
        if type(p) is not tuple:
            if p is None:
                missing.append(j)
                app(none)
            else:
                app(bytes(p._digest(raw[off:off + body], body)) + bytes(32 - TAG_LEN))
            continue
        i = p[0].copy()
        i.update(raw[off:off + body])
        o = p[1].copy()
        o.update(i.digest())
        app(o.digest())
    got = np.frombuffer(b"".join(out), dtype=np.uint8).reshape(n, 32)[:, :TAG_LEN]
    u8 = np.frombuffer(raw, dtype=np.uint8).reshape(-1, size)
    want = u8[idx, body:body + TAG_LEN]
    good = (got == want).all(axis=1)
    if missing:
        good[missing] = False
    return good


def decode_telemetry_batch(frames, frame_size=None, keys=None, replay=None):
    """Decode many TELEMETRY frames (single-beat or BATCH) into one numpy array.

    frames: a list/iterable of frames (bytes, one per datagram or deframed segment), or one
            bytes-like blob of frames of `frame_size` bytes each (then frame_size is required).
    keys:   None (frames must be unsigned) or {device_id: key | Auth} (frames must be signed).
    replay: None, or a ReplayGuard applied in input order after all other checks.
    Frames that are not TELEMETRY, or fail a check, are counted in rejects by reason.
    """
    if isinstance(keys, dict) and all(type(v) is Auth for v in keys.values()):
        auth_map = keys                 # the sessions' keys as they are: no copy per batch
    else:
        auth_map = as_auth_map(keys)
    tag = TAG_LEN if auth_map is not None else 0
    rejects = {}
    groups = {}  # size -> (frames joined, input indices or None)
    same_list = None  # the input list when all its frames have one size
    if isinstance(frames, (bytes, bytearray, memoryview)):
        if not frame_size:
            raise ValueError("a blob of frames needs frame_size (bytes per frame)")
        blob = bytes(frames)
        whole = len(blob) // frame_size
        if len(blob) % frame_size:
            _reject(rejects, "length")
        if whole:
            groups[frame_size] = (blob[:whole * frame_size], None)
    else:
        if not isinstance(frames, (list, tuple)):
            frames = list(frames)
        lens = np.fromiter(map(len, frames), dtype=np.int64, count=len(frames))
        sizes = np.unique(lens)
        if len(sizes) == 1:  # the common case: all frames alike, one C-speed join
            groups[int(sizes[0])] = (b"".join(frames), None)
            same_list = frames
        else:
            for size in sizes.tolist():
                idx = np.flatnonzero(lens == size)
                groups[size] = (b"".join([frames[i] for i in idx.tolist()]), idx)
    single = P.HEADER_LEN + P.TELEMETRY_LEN + tag + P.CRC_LEN
    parts = []  # (input order key, beats array)
    frames_ok = 0
    for size, (raw, idx) in groups.items():
        if size < P.HEADER_LEN + P.CRC_LEN or size > P.MAX_FRAME:
            _reject(rejects, "short" if size < P.HEADER_LEN + P.CRC_LEN else "oversize",
                    len(idx) if idx is not None else
                    (len(frames) if not isinstance(frames, (bytes, bytearray, memoryview))
                     else len(raw) // size if size else 1))
            continue
        nfr = len(raw) // size
        if size == single:
            count = None
        else:
            c, rem = divmod(size - P.HEADER_LEN - 1 - tag - P.CRC_LEN, P.TELEMETRY_LEN)
            if rem or not 1 <= c <= P.MAX_BATCH:
                # not a TELEMETRY shape: decode one by one for an exact reason
                for i in range(nfr):
                    _slow_reject(raw[i * size:(i + 1) * size], auth_map, rejects)
                continue
            count = c
        arr = np.frombuffer(raw, dtype=_frame_dtype(count, tag), count=nfr)
        ok, other = _check_group(arr, raw, size, count, auth_map, rejects, same_list)
        for i in np.flatnonzero(other):
            _slow_reject(raw[i * size:(i + 1) * size], auth_map, rejects)
        all_ok = bool(ok.all())
        sel = arr if all_ok else arr[ok]
        frames_ok += len(sel)
        c = count or 1
        beats = np.empty(len(sel) * c, dtype=BEAT_DTYPE)
        t_us = (sel["time_era"].astype(np.uint64) * np.uint64(P.SEQ_LIMIT)
                + sel["time_off"].astype(np.uint64))
        if count is None:  # one beat per frame: plain column copies
            for nm in ("device_id", "boot_id", "seq"):
                beats[nm] = sel[nm]
            beats["time_us"] = t_us
            beats["index"] = 0
            for nm, _ in _PAYLOAD_DTYPE:
                beats[nm] = sel[nm]
        else:
            for nm in ("device_id", "boot_id", "seq"):
                beats[nm] = np.repeat(sel[nm], c)
            beats["time_us"] = np.repeat(t_us, c)
            beats["index"] = np.tile(np.arange(c, dtype=np.uint8), len(sel))
            recs = sel["records"]
            for nm, _ in _PAYLOAD_DTYPE:
                beats[nm] = recs[nm].reshape(-1)
        beats["count"] = c
        order = (np.flatnonzero(ok) if idx is None else np.asarray(idx)[ok])
        parts.append((np.repeat(order, c), beats))
    if not parts:
        return BatchResult(np.empty(0, dtype=BEAT_DTYPE), rejects, 0)
    if len(parts) == 1:  # one shape: already in input order
        beats = parts[0][1]
    else:
        order = np.concatenate([p[0] for p in parts])
        beats = np.concatenate([p[1] for p in parts])[np.argsort(order, kind="stable")]
    if replay is not None:
        keep = np.ones(len(beats), dtype=bool)
        last = None
        rows = zip(beats["device_id"].tolist(), beats["boot_id"].tolist(),
                   beats["seq"].tolist())
        for i, key in enumerate(rows):
            if key == last:  # later beats of the same BATCH frame
                keep[i] = keep[i - 1]
                continue
            last = key
            if replay.check(*key):
                replay.accept(*key)
            else:
                keep[i] = False
                _reject(rejects, "replay")
                frames_ok -= 1
        beats = beats[keep]
    return BatchResult(beats, rejects, frames_ok)


def _slow_reject(frame, auth_map, rejects):
    """Count a frame the vector path does not take, by the exact reason the decoder gives."""
    try:
        f = P.decode(frame, auth=auth_map)
    except ProtocolError as e:
        _reject(rejects, e.reason)
        return
    _reject(rejects, "not_telemetry" if f.type != P.TELEMETRY else "shape")
