"""The receive path: a link's FrameBatch (screened by the link reader: host/wire/screen.py) ->
decode -> admission (policy, rate) -> session (handshake, stale boot, sequence) -> typed
events to a FrameSink (docs/HOST.md, "Admission").

Two routes, one set of rules; every other frame of a batch is handled first, in arrival order
(a HELLO or a handshake before the beats that follow it), then every TELEMETRY row in one batch
decode (junk between them never cuts the batch into short runs):
  - unsigned single-beat or BATCH TELEMETRY (the bulk of the traffic) is decoded in batches
    with numpy (becomingone/wire/telemetry.py decode_telemetry_batch), grouped per (device,
    boot), rate limited, de-duplicated by sequence number and handed on as TelemetryRows;
  - every other frame (HELLO, WITNESS, ACK, TIME_SYNC, HEARTBEAT, ERROR, signed frames) goes
    through the per-frame decoder (becomingone/wire/receive.py Receiver: CRC, header, tag,
    payload) and becomes one FrameSink call.
A keyed device's frames are tagged with its session key (host/devices/handshake.py): the
handshake port gives the keys a frame may carry; a HELLO tagged with the device key starts a
handshake, a frame under a pending handshake's key completes it.
Rejections are counted by reason in the Tally (becomingone/util/tally.py).
"""
import abc
import bisect
import time
from collections import namedtuple

import numpy as np

from becomingone.ingest.ratelimit import frame_complexity, variance_cost
from becomingone.links.batch import DatagramBlock
from becomingone.wire.telemetry import decode_telemetry_batch
from shared import protocol as P

__all__ = ["Ingest", "FrameSink", "TelemetryRows", "TelemetryGroup", "now_us"]

_TEL_SINGLE = P.HEADER_LEN + P.TELEMETRY_LEN + P.CRC_LEN
_MIN_FRAME = P.HEADER_LEN + 2       # shorter: not worth a look on the fast path
_AUTH = P.FLAG_AUTH


def now_us():
    """The host's monotonic clock in µs (receive times, TIME_SYNC)."""
    return time.monotonic_ns() // 1000


# one (device, boot)'s admitted rows of a TelemetryRows: beats[start:stop] (some may be
# refused: TelemetryRows.keep), beat numbers first..last, the last admitted row
TelemetryGroup = namedtuple("TelemetryGroup", "session start stop first_beat last_beat last_row")


class TelemetryRows:
    """TELEMETRY rows of one receive batch, decoded (wire/telemetry.py BEAT_DTYPE) and admitted
    per (device, boot) group: beats sorted by (device, boot), group j spans rows
    starts[j]:ends[j] (numpy arrays), groups[j] is its TelemetryGroup (None: the whole group
    was refused), keep the admitted rows, nbeats the admitted groups' rows."""

    __slots__ = ("beats", "keep", "starts", "ends", "groups", "nbeats")

    def __init__(self, beats, keep, starts, ends, groups, nbeats):
        self.beats, self.keep, self.starts, self.ends = beats, keep, starts, ends
        self.groups, self.nbeats = groups, nbeats


class FrameSink(abc.ABC):
    """Where the ingest hands admitted frames, one method per kind (all in the processing
    thread; the session is already updated: link, address, sequence, counters)."""

    @abc.abstractmethod
    def hello(self, session, fields):
        """A HELLO (its fields)."""

    @abc.abstractmethod
    def telemetry(self, session, records):
        """TELEMETRY records of one frame (dicts of wire values)."""

    @abc.abstractmethod
    def telemetry_rows(self, rows):
        """TELEMETRY of many devices at once (TelemetryRows)."""

    @abc.abstractmethod
    def witness(self, session, frame, level):
        """A WITNESS frame; level FULL or OBSERVE (becomingone/ingest/admission.py)."""

    @abc.abstractmethod
    def witness_again(self, session, frame):
        """A WITNESS frame whose sequence number was taken before (refused as a duplicate): a
        relay's probe, or the same bytes resent after their ACK was lost. Answers it again,
        nothing more."""

    @abc.abstractmethod
    def ack(self, session, fields):
        """An ACK of a host frame."""

    @abc.abstractmethod
    def time_sync(self, session, fields, device_time_us, received_us):
        """A TIME_SYNC reply (device_time_us: its header time; received_us: host clock)."""

    @abc.abstractmethod
    def heartbeat(self, session, fields):
        """A HEARTBEAT."""

    @abc.abstractmethod
    def device_error(self, session, fields):
        """An ERROR frame from the device."""


class Ingest:
    """The receive path of one coordinator (processing thread only). Owns nothing but the
    routing; its ports: receiver (per-frame decoder), admission, sessions, tally (counters and
    rejections), sink (FrameSink), handshakes (keyed devices' keys and handshakes:
    host/devices/handshake.py; None: every frame decoded with the receiver's keys). Never
    raises for bad input: every refused frame is counted by reason."""

    def __init__(self, receiver, admission, sessions, tally, sink, handshakes=None):
        self.receiver = receiver
        self.admission = admission
        self.sessions = sessions
        self.tally = tally
        self.sink = sink
        self.handshakes = handshakes

    # ------------------------------------------------------------------ entry point
    def receive(self, link, batch, t_us, parts=None):
        """A FrameBatch from `link` (becomingone/links/batch.py), received at t_us (now_us()).
        parts: a batch merged from reads received at different times, ([rows up to the end of
        each read], [its receive time]): a frame's own read's time is its receive time (a
        TIME_SYNC reply's t4), not the merge's."""
        if isinstance(batch, DatagramBlock):
            self._block(link, batch, t_us, parts)
        else:
            self.frames(link, batch.items(), t_us, parts)

    @staticmethod
    def _row_time(parts, i, t_us):
        """The receive time of row i of a merged batch (module: receive)."""
        if parts is None:
            return t_us
        ends, times = parts
        return times[min(bisect.bisect_right(ends, i), len(times) - 1)]

    def frames(self, link, frames, t_us, parts=None):
        """(data, addr) frames in arrival order: every frame but TELEMETRY takes the per-frame
        path in order, then the TELEMETRY frames are batch-decoded together."""
        self.tally.counts["frames_received"] += len(frames)
        fast, fast_signed, addrs = [], [], {}
        hs = self.handshakes
        for i, item in enumerate(frames):
            data = item[0]
            if len(data) >= _MIN_FRAME and data[1] == P.TELEMETRY:
                (fast_signed if data[0] & _AUTH else fast).append(data)
                addrs[data[2] | data[3] << 8] = item[1]
                continue
            if fast_signed and hs is not None and hs.pending and len(data) >= _MIN_FRAME and \
                    data[1] == P.ACK and (data[2] | data[3] << 8) in hs.pending:
                # a handshake's proof, maybe: the TELEMETRY before it first (see _before_proof)
                self.telemetry_batch(link, fast_signed, addrs, signed=True)
                fast_signed = []
            self._decode(link, item[1], data, self._row_time(parts, i, t_us))
        if fast:
            self.telemetry_batch(link, fast, addrs)
        if fast_signed:
            self.telemetry_batch(link, fast_signed, addrs, signed=True)

    def _decode(self, link, addr, data, t_us):
        rx = self.receiver
        hs = self.handshakes
        cands = hs.candidates(data) if hs is not None else None
        if cands is None:                       # a keyless device (or no handshake port)
            f = rx.decode(data)
            kind = pend = None
        elif not cands:                         # a keyed device with no key for this boot
            self._no_session(link, addr, data)
            return
        else:
            f, kind, pend = rx.decode_first(data, cands)
        if f is None:
            reason = rx.last_error[0] if rx.last_error else "frame"
            if reason == "auth" and cands and self._held(data, cands):
                return
            self.tally.reject(reason)
            return
        self.frame(link, addr, f, len(data), t_us, kind, pend)

    def _held(self, data, cands):
        """A frame that verified under none of its boot's keys while that boot's handshake is
        pending and no session of that boot exists: held as awaiting the handshake if it
        verifies under the device key K (the device's first frames; see _no_session)."""
        if any(kind != "pending" for _a, kind, _p in cands):
            return False
        dev, boot = data[2] | (data[3] << 8), data[4] | (data[5] << 8)
        return self._under_device_key(dev, data) and self.handshakes.hold(dev, boot)

    def _no_session(self, link, addr, data):
        """A keyed device's frame under no key we hold (the host restarted, or the device's
        handshake is pending): a frame that is one in all but its tag is refused as
        "no_session" and the device is asked for a handshake."""
        rx = self.receiver
        if rx.decode(data, auth={}) is not None:   # unsigned, from a device that has a key
            self.tally.reject("auth")
            return
        if rx.last_error and rx.last_error[0] != "auth":
            self.tally.reject(rx.last_error[0])
            return
        dev, boot = data[2] | (data[3] << 8), data[4] | (data[5] << 8)
        if self._pending(dev, boot):
            # the device's first frames, under K, before its CHALLENGE came back: held
            # (frames_awaiting_handshake), not a rejection, unless the handshake never completes
            if self._under_device_key(dev, data) and self.handshakes.hold(dev, boot):
                return
            self.tally.reject("no_session")
            return
        if dev in self.sessions.auths and not self._under_device_key(dev, data):
            # the device holds a session of another boot with us, and this frame verifies under
            # neither that boot's key nor K: a frame of a retired boot, or a forgery (a real
            # device's new boot tags with K until its handshake; a host restart leaves no
            # session at all)
            o = self.sessions.old_boots.get(dev)
            self.tally.reject("stale_boot" if o is not None and boot in o else "auth")
            return
        hs = self.handshakes
        # a frame under K of a boot whose HELLO we have not seen (we opened the port while the
        # device waited for its CHALLENGE, or restarted before the handshake): held until that
        # boot's HELLO, which the request asks for, or refused when none comes
        if (hs.request(link, addr, dev, boot) or hs.awaiting_hello(dev, boot)) and \
                self._under_device_key(dev, data) and hs.hold_before_hello(dev, boot):
            return
        self.tally.reject("no_session")

    def _under_device_key(self, dev, data):
        """True if frame `data` verifies under device `dev`'s own key K (no replay state)."""
        auth = self.admission.device_auth(dev)
        if auth is None:
            return False
        try:
            P.decode(data, auth=auth)
        except Exception:  # noqa: BLE001 - any refusal: not a frame of the device under K
            return False
        return True

    def _rows_under_key(self, dev, boot, rows, boots, arr, datas):
        """The TELEMETRY rows among `rows` (of device `dev`) that are of boot `boot` and verify
        under the device key K; arr: the fixed-size rows as an array, else datas a list."""
        return [i for i in rows[boots[rows] == boot].tolist()
                if self._under_device_key(dev, bytes(arr[i]) if arr is not None else datas[i])]

    def _pending(self, dev, boot):
        pend = self.handshakes.pending.get(dev)
        return bool(pend) and any(k[0] == boot for k in pend)

    def _block(self, link, blk, t_us, parts=None):
        """A DatagramBlock (recvmmsg, screened): the rows that are not TELEMETRY take the
        per-frame path in arrival order, then every TELEMETRY row is cut out as one contiguous
        blob per frame size and batch-decoded."""
        n = len(blk)
        self.tally.counts["frames_received"] += n
        d, lens = blk.data, blk.lens
        if d.shape[1] >= _MIN_FRAME:
            fast = (d[:, 1] == P.TELEMETRY) & (lens >= _MIN_FRAME)
        else:
            fast = np.zeros(n, dtype=bool)
        if fast.all():
            self._fast_rows(link, blk, np.arange(n))
            return
        slow = np.flatnonzero(~fast)
        early = self._before_proof(d, slow, fast)
        if early is not None:
            self._fast_rows(link, blk, early)
            fast[early] = False
        rows = slow.tolist()
        for i, (data, addr) in zip(rows, blk.items(rows)):
            self._decode(link, addr, data, self._row_time(parts, i, t_us))
        if fast.any():
            self._fast_rows(link, blk, np.flatnonzero(fast))

    def _before_proof(self, d, slow, fast):
        """The TELEMETRY rows of a block that must be taken before its other rows: those of a
        device with a pending handshake that arrived before an ACK from it in the block (the
        proof, taken on the per-frame path, would otherwise come first and the device's frames
        under K of before it would fail under the new session key). None when there are none
        (always, but while a handshake is pending)."""
        hs = self.handshakes
        if hs is None or not hs.pending or not len(slow) or d.shape[1] < _MIN_FRAME:
            return None
        acks = slow[d[slow, 1] == P.ACK]
        if not len(acks):
            return None
        adev = d[acks, 2].astype(np.int64) | (d[acks, 3].astype(np.int64) << 8)
        rows = np.arange(len(fast))
        fdev = d[:, 2].astype(np.int64) | (d[:, 3].astype(np.int64) << 8)
        early = np.zeros(len(fast), dtype=bool)
        for dev, row in zip(adev.tolist(), acks.tolist()):
            if dev in hs.pending:
                early |= fast & (fdev == dev) & (rows < row)
        return np.flatnonzero(early) if early.any() else None

    def _fast_rows(self, link, blk, idx_all):
        """TELEMETRY rows: one batch decode per (frame size, signed or not)."""
        d = blk.data
        flens = blk.lens[idx_all].astype(np.int64) * 2 + (d[idx_all, 0] & _AUTH)
        sizes = np.unique(flens)
        for code in sizes.tolist():
            size, signed = code >> 1, code & 1
            idx = idx_all if len(sizes) == 1 else idx_all[flens == code]
            blob = d[idx, :size].tobytes()
            devs = d[idx, 2].astype(np.int64) | (d[idx, 3].astype(np.int64) << 8)
            u, last = np.unique(devs[::-1], return_index=True)
            rows = idx[len(idx) - 1 - last]
            raw = blk.names[rows, :8].tobytes()
            addrs = {dv: raw[8 * j:8 * j + 8] for j, dv in enumerate(u.tolist())}
            # a device seen from two addresses in one block (a forger among them): keep its
            # reply address as it was rather than guess
            nm = blk.names[idx, 2:8].astype(np.uint64)
            # (device, port, IPv4 address) in one u64 key: a 1-D unique, not a row-wise one
            pair = (devs.astype(np.uint64) << np.uint64(48)) | (nm[:, 0] << np.uint64(40)) | \
                (nm[:, 1] << np.uint64(32)) | (nm[:, 2] << np.uint64(24)) | \
                (nm[:, 3] << np.uint64(16)) | (nm[:, 4] << np.uint64(8)) | nm[:, 5]
            pairs = np.unique(pair)
            if len(pairs) != len(u):
                dv, k = np.unique((pairs >> np.uint64(48)).astype(np.int64), return_counts=True)
                for x in dv[k > 1].tolist():
                    addrs.pop(x, None)
            self.telemetry_batch(link, blob, addrs, frame_size=size, raw_addrs=True,
                                 signed=bool(signed))

    def _admit(self, dev, boot, mtype, nbytes, keyed=False, link=None, addr=None):
        lv, reason = self.admission.admit(dev, mtype, nbytes - P.HEADER_LEN - P.CRC_LEN)
        if lv is None:
            self.tally.reject(reason)
            return None, None
        s, reason = self.sessions.lookup(dev, boot, mtype, keyed=keyed)
        if s is None:
            self.tally.reject(reason)
            if reason == "no_hello":
                self._ask_hello(link, addr, dev, boot)
            return None, None
        return lv, s

    def _ask_hello(self, link, addr, dev, boot):
        """A keyless device's frame of a boot with no session (its HELLO was lost, or junk):
        ask the sender for a HELLO (rate limited: handshakes.request)."""
        if self.handshakes is not None:
            self.handshakes.request(link, addr, dev, boot, keyless=True)

    # ------------------------------------------------------------------ per frame
    def frame(self, link, addr, f, nbytes, t_us, kind=None, pending=None):
        """One decoded frame (shared/protocol.py Frame) from `addr` on `link`; kind: the key
        its tag verified with ("session", "pending", "device"; None: unsigned or no handshake
        port), pending: the Pending handshake of kind "pending"."""
        keyed = kind is not None
        if kind == "device":                    # only a HELLO: it asks for a session
            lv, reason = self.admission.admit(f.device_id, f.type,
                                              nbytes - P.HEADER_LEN - P.CRC_LEN)
            if lv is None:
                self.tally.reject(reason)
                return
            self.handshakes.hello(link, addr, f)
            self.tally.counts["frames_accepted"] += 1
            return
        if kind == "pending":                   # the proof: the session is established
            s, opened = self.handshakes.complete(pending)
            if opened or s.hello is None or s.hello.get("nonce") != pending.hello.get("nonce"):
                s.link, s.addr = link, addr
                self.sink.hello(s, pending.hello)
        lv, s = self._admit(f.device_id, f.boot_id, f.type, nbytes, keyed, link, addr)
        if s is None:
            return
        r = s.note_seq(f.seq)
        if r != "new" and r != "reordered":
            self.tally.reject("seq_jump" if r == "jump" else "duplicate")
            if r == "duplicate" and f.type == P.WITNESS:
                self.sink.witness_again(s, f)
            return
        s.frames += 1
        s.bytes += nbytes
        s.last_seen = time.time()
        s.online = True
        s.by_type[f.type] += 1
        s.link, s.addr = link, addr
        t = f.type
        sink = self.sink
        ok = True
        if t == P.TELEMETRY:
            recs = f.fields["records"] if f.batch else [f.fields]
            s.note_telemetry(dict(recs[-1]), f.time_us)
            sink.telemetry(s, recs)
        elif t == P.HELLO:
            sink.hello(s, f.fields)
        elif t == P.WITNESS:
            ok = sink.witness(s, f, lv) is not False
        elif t == P.ACK:
            sink.ack(s, f.fields)
        elif t == P.TIME_SYNC:
            if f.fields["mode"] == P.SYNC_REPLY:
                ok = sink.time_sync(s, f.fields, f.time_us, t_us) is not False
        elif t == P.HEARTBEAT:
            sink.heartbeat(s, f.fields)
        elif t == P.ERROR:
            sink.device_error(s, f.fields)
        if ok:                                  # a refusal was counted as rejected instead
            self.tally.counts["frames_accepted"] += 1

    # ------------------------------------------------------------------ batch telemetry
    def _without_session(self, link, datas, frame_size, addrs, raw_addrs, skeys):
        """Signed TELEMETRY of keyed devices with no session key here (the host restarted, a
        handshake is pending): refused as "no_session" (the device is asked for a handshake),
        the rest returned for the batch decoder."""
        if frame_size:
            arr = np.frombuffer(datas, dtype=np.uint8)[:len(datas) // frame_size * frame_size]
            arr = arr.reshape(-1, frame_size)
            devs = arr[:, 2].astype(np.int64) | (arr[:, 3].astype(np.int64) << 8)
            boots = arr[:, 4].astype(np.int64) | (arr[:, 5].astype(np.int64) << 8)
        else:
            devs = np.fromiter((d[2] | d[3] << 8 for d in datas), dtype=np.int64, count=len(datas))
            boots = np.fromiter((d[4] | d[5] << 8 for d in datas), dtype=np.int64,
                                count=len(datas))
        u = np.unique(devs).tolist()
        has = self.admission.has_key
        missing = [d for d in u if d not in skeys and has(d)]
        pending = self.handshakes.pending
        # devices with a session of one boot and a handshake pending for another (a reboot)
        other = [d for d in u if d in skeys and d in pending] if pending else []
        if not missing and not other:
            return datas
        drop = np.isin(devs, missing)
        refused = int(drop.sum())
        cur = self.sessions.current
        for d in other:
            rows = np.flatnonzero(devs == d)
            s = cur.get(d)
            for b in set(boots[rows].tolist()) - {s.boot_id if s is not None else None}:
                if not self._pending(d, b):
                    continue                    # the decoder refuses them ("auth")
                held = self._rows_under_key(d, b, rows, boots, arr if frame_size else None, datas)
                if held and self.handshakes.hold(d, b, len(held)):
                    drop[held] = True
        if not drop.any():
            return datas
        hs = self.handshakes
        for d in missing:
            rows = np.flatnonzero(devs == d)
            b = int(boots[rows[-1]])
            if self._pending(d, b):
                # rows under K of the pending boot: held before the handshake (see _no_session)
                held = len(self._rows_under_key(d, b, rows, boots, arr if frame_size else None,
                                                datas))
                if held and hs.hold(d, b, held):
                    refused -= held
                continue
            ad = addrs.get(d)
            if ad is not None and raw_addrs:
                ad = DatagramBlock.addr(ad)
            if hs.request(link, ad, d, b) or hs.awaiting_hello(d, b):
                # rows under K of that boot: held before its HELLO (see _no_session)
                held = len(self._rows_under_key(d, b, rows, boots, arr if frame_size else None,
                                                datas))
                if held and hs.hold_before_hello(d, b, held):
                    refused -= held
        if refused:
            self.tally.reject("no_session", refused)
        if frame_size:
            return arr[~drop].tobytes()
        return [x for x, k in zip(datas, drop.tolist()) if not k]

    def telemetry_batch(self, link, datas, addrs, frame_size=None, raw_addrs=False,
                        signed=False):
        """Decoded TELEMETRY rows, grouped per (device, boot) with one stable sort; per-group
        work is scalar Python (a few µs), per-row work is numpy. signed: the frames carry AUTH
        tags, checked against the keystore (a device without a key is refused as "auth")."""
        tally = self.tally
        adm = self.admission
        keyed = adm.auths
        if signed and not keyed:
            n = len(datas) // frame_size if frame_size else len(datas)
            tally.reject("auth", n)
            return
        skeys = self.sessions.auths if self.handshakes is not None else keyed
        if signed and self.handshakes is not None:
            datas = self._without_session(link, datas, frame_size, addrs, raw_addrs, skeys)
            if not len(datas):
                return
        res = decode_telemetry_batch(datas, frame_size=frame_size, keys=skeys if signed else None)
        for reason, n in res.rejects.items():
            if n:
                tally.reject(reason, n)
        beats = res.beats
        n = len(beats)
        if not n:
            return
        key = (beats["device_id"].astype(np.int64) << 16) | beats["boot_id"]
        if n > 1 and not np.all(key[1:] >= key[:-1]):
            order = np.argsort(key, kind="stable")
            beats = beats[order]
            key = key[order]
        cut = np.flatnonzero(key[1:] != key[:-1]) + 1
        starts = np.concatenate(([0], cut))
        ends = np.concatenate((cut, [n]))
        first = beats["index"] == 0
        seq = beats["seq"].astype(np.int64)
        cnt = beats["count"]
        # frames per group, and whether a group's seqs strictly increase frame to frame
        nfr = np.add.reduceat(first.astype(np.int64), starts)
        if n > 1:
            d = np.diff(seq)
            badrow = np.zeros(n, dtype=np.int64)
            badrow[1:] = (d < 0) | ((d == 0) & first[1:])
            badrow[starts] = 0
            mono = np.add.reduceat(badrow, starts) == 0
        else:
            mono = np.ones(1, dtype=bool)
        single = bool(np.all(cnt == 1))
        G = len(starts)
        st, en = starts.tolist(), ends.tolist()
        g_dev = (key[starts] >> 16).tolist()
        g_boot = (key[starts] & 0xFFFF).tolist()
        g_nf = nfr.tolist()
        g_fs, g_ls = seq[starts].tolist(), seq[ends - 1].tolist()
        g_mono = mono.tolist()
        g_beat = beats["beat"][ends - 1].tolist()
        g_first = beats["beat"][starts].tolist()
        keep = np.ones(n, dtype=bool)
        if signed:
            keyed = ()                          # tags verified by the decoder
        rate = adm.rate
        rate_on = rate.enabled
        buckets = rate.buckets
        tmono = time.monotonic()
        cost1 = variance_cost(frame_complexity(P.TELEMETRY, P.TELEMETRY_LEN))
        open_all = adm.policy == "accept"
        current = self.sessions.current
        lookup = self.sessions.lookup
        now = time.time()
        reject = tally.reject
        TEL = P.TELEMETRY
        tl = P.TELEMETRY_LEN
        accepted = 0
        nbeats = 0
        groups = [None] * G
        seq_l = first_l = None                  # seq (and first) as lists, made when needed
        for g in range(G):
            dev, a, b, nf = g_dev[g], st[g], en[g], g_nf[g]
            if dev in keyed:                    # a keyed device must sign: refused
                reject("auth", nf)
                keep[a:b] = False
                continue
            if not open_all and adm.level(dev) is None:
                reject("unknown_device", nf)
                adm.rejected["unknown_device"] += nf
                keep[a:b] = False
                continue
            if not rate_on:
                k = nf
            elif single:
                bk = buckets.get(dev) or rate.bucket(dev, tmono)
                k = bk.request_n(cost1, nf, tmono)
            else:
                fr = first[a:b]
                cc = cnt[a:b][fr].astype(np.int64)
                k = rate.allow_many(dev, np.full(nf, TEL), np.where(cc > 1, 1 + tl * cc, tl))
            s = current.get(dev)
            if s is None or s.boot_id != g_boot[g]:
                s, reason = lookup(dev, g_boot[g], TEL, keyed=signed)
                if s is None:
                    reject(reason, nf)
                    keep[a:b] = False
                    if reason == "no_hello":
                        ad = addrs.get(dev)
                        self._ask_hello(link, DatagramBlock.addr(ad) if ad is not None and
                                        raw_addrs else ad, dev, g_boot[g])
                    continue
            if k < nf:
                rate.note_refused(dev)
                reject("rate_limited", nf - k)
                adm.rejected["rate_limited"] += nf - k
                fno = np.cumsum(first[a:b]) - 1
                keep[a:b] &= fno < k
                nf = k
                if not nf:
                    continue
                fast_ok = False
            else:
                fast_ok = g_mono[g] and s.note_seq_run(g_fs[g], g_ls[g], nf)
                if not fast_ok and g_mono[g] and g_ls[g] - g_fs[g] + 1 > nf:
                    # increasing with holes (frames lost, or shed under overload): one pass
                    if seq_l is None:
                        seq_l = seq.tolist()
                        first_l = None if single else first.tolist()
                    fast_ok = s.note_seq_sparse(
                        seq_l[a:b] if single else [q for q, f in zip(seq_l[a:b], first_l[a:b]) if f])
            if not fast_ok:                     # frame by frame: dups, reorder, holes, jumps
                fr = first[a:b]
                rows_keep = keep[a:b]
                fidx = np.flatnonzero(fr & rows_keep)
                res_seq = [s.note_seq(q, now) for q in seq[a:b][fidx].tolist()]
                ok = [r == "new" or r == "reordered" for r in res_seq]
                ndup = len(ok) - sum(ok)
                if ndup:
                    njump = res_seq.count("jump")
                    if njump:
                        reject("seq_jump", njump)
                    if ndup - njump:
                        reject("duplicate", ndup - njump)
                    fno = np.cumsum(fr) - 1
                    okf = np.zeros(int(fr.sum()), dtype=bool)
                    okf[(np.cumsum(fr) - 1)[fidx]] = ok
                    keep[a:b] &= okf[fno]
                    nf -= ndup
                    if not nf:
                        continue
                last_row = int(np.flatnonzero(keep[a:b])[-1]) + a
            else:
                last_row = b - 1
            s.note_telemetry_row(beats, last_row)
            s.frames += nf
            s.bytes += nf * _TEL_SINGLE
            s.by_type[TEL] += nf
            s.last_seen = now
            s.online = True
            s.link = link
            ad = addrs.get(dev)
            if ad is not None:
                if raw_addrs:
                    if ad != s.raw_addr:
                        s.raw_addr = ad
                        s.addr = DatagramBlock.addr(ad)
                else:
                    s.addr = ad
            accepted += nf
            nbeats += b - a
            groups[g] = TelemetryGroup(s, a, b, g_first[g], g_beat[g], last_row)
        tally.counts["frames_accepted"] += accepted
        if nbeats:
            self.sink.telemetry_rows(TelemetryRows(beats, keep, starts, ends, groups, nbeats))
