"""The receive path: a link's FrameBatch -> decode -> admission (policy, rate) -> session
(stale boot, sequence) -> typed events to a FrameSink (docs/HOST.md, "Admission").

Two routes, one set of rules:
  - unsigned single-beat or BATCH TELEMETRY (the bulk of the traffic) is decoded in batches
    with numpy (becomingone/wire/telemetry.py decode_telemetry_batch), grouped per (device,
    boot), rate limited, de-duplicated by sequence number and handed on as TelemetryRows;
  - every other frame (HELLO, WITNESS, ACK, TIME_SYNC, HEARTBEAT, ERROR, signed frames) goes
    through the per-frame decoder (becomingone/wire/receive.py Receiver: CRC, header, tag,
    payload) and becomes one FrameSink call.
Rejections are counted by reason in the Tally (becomingone/util/tally.py).
"""
import abc
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
    routing; its ports: receiver (per-frame decoder, its `auth` map), admission, sessions,
    tally (counters and rejections), sink (FrameSink). Never raises for bad input: every
    refused frame is counted by reason."""

    def __init__(self, receiver, admission, sessions, tally, sink):
        self.receiver = receiver
        self.admission = admission
        self.sessions = sessions
        self.tally = tally
        self.sink = sink

    # ------------------------------------------------------------------ entry point
    def receive(self, link, batch, t_us):
        """A FrameBatch from `link` (becomingone/links/batch.py), received at t_us (now_us())."""
        if isinstance(batch, DatagramBlock):
            self._block(link, batch, t_us)
        else:
            self.frames(link, batch.items(), t_us)

    def frames(self, link, frames, t_us):
        """(data, addr) frames in arrival order: runs of TELEMETRY are batch-decoded, other
        frames take the per-frame path before the telemetry that follows them (a HELLO
        before its device's first beats)."""
        self.tally.counts["frames_received"] += len(frames)
        fast, fast_signed, addrs = [], [], {}
        for item in frames:
            data = item[0]
            if len(data) >= _MIN_FRAME and data[1] == P.TELEMETRY:
                (fast_signed if data[0] & _AUTH else fast).append(data)
                addrs[data[2] | data[3] << 8] = item[1]
                continue
            if fast or fast_signed:
                self._telemetry_run(link, fast, fast_signed, addrs)
                fast, fast_signed, addrs = [], [], {}
            self._decode(link, item[1], data, t_us)
        if fast or fast_signed:
            self._telemetry_run(link, fast, fast_signed, addrs)

    def _decode(self, link, addr, data, t_us):
        rx = self.receiver
        f = rx.decode(data)
        if f is None:
            self.tally.reject(rx.last_error[0] if rx.last_error else "frame")
            return
        self.frame(link, addr, f, len(data), t_us)

    def _telemetry_run(self, link, fast, fast_signed, addrs):
        if fast:
            self.telemetry_batch(link, fast, addrs)
        if fast_signed:
            self.telemetry_batch(link, fast_signed, addrs, signed=True)

    def _block(self, link, blk, t_us):
        """A DatagramBlock (recvmmsg). Runs of unsigned TELEMETRY rows are cut out as one
        contiguous blob per frame size and batch-decoded; other rows take the per-frame path;
        runs are processed in arrival order (a HELLO before the telemetry that follows it)."""
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
        cuts = (np.flatnonzero(np.diff(fast.view(np.int8))) + 1).tolist()
        for a, b in zip([0] + cuts, cuts + [n]):
            if fast[a]:
                self._fast_rows(link, blk, np.arange(a, b))
                continue
            for data, addr in blk.items(range(a, b)):
                self._decode(link, addr, data, t_us)

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
            nm = blk.names[idx, 2:8].astype(np.int64)
            where = (nm[:, 0] << 40) | (nm[:, 1] << 32) | (nm[:, 2] << 24) | (nm[:, 3] << 16) | \
                (nm[:, 4] << 8) | nm[:, 5]
            pairs = np.unique(np.stack((devs, where), axis=1), axis=0)
            if len(pairs) != len(u):
                dv, k = np.unique(pairs[:, 0], return_counts=True)
                for x in dv[k > 1].tolist():
                    addrs.pop(x, None)
            self.telemetry_batch(link, blob, addrs, frame_size=size, raw_addrs=True,
                                 signed=bool(signed))

    def _admit(self, dev, boot, mtype, nbytes):
        lv, reason = self.admission.admit(dev, mtype, nbytes - P.HEADER_LEN - P.CRC_LEN)
        if lv is None:
            self.tally.reject(reason)
            return None, None
        s, reason = self.sessions.lookup(dev, boot, mtype)
        if s is None:
            self.tally.reject(reason)
            return None, None
        return lv, s

    # ------------------------------------------------------------------ per frame
    def frame(self, link, addr, f, nbytes, t_us):
        """One decoded frame (shared/protocol.py Frame) from `addr` on `link`."""
        lv, s = self._admit(f.device_id, f.boot_id, f.type, nbytes)
        if s is None:
            return
        r = s.note_seq(f.seq)
        if r == "duplicate" or r == "old_seq":
            self.tally.reject("duplicate")
            return
        s.frames += 1
        s.bytes += nbytes
        s.last_seen = time.time()
        s.online = True
        s.by_type[f.type] += 1
        s.link, s.addr = link, addr
        t = f.type
        sink = self.sink
        if t == P.TELEMETRY:
            recs = f.fields["records"] if f.batch else [f.fields]
            s.note_telemetry(dict(recs[-1]))
            sink.telemetry(s, recs)
        elif t == P.HELLO:
            sink.hello(s, f.fields)
        elif t == P.WITNESS:
            sink.witness(s, f, lv)
        elif t == P.ACK:
            sink.ack(s, f.fields)
        elif t == P.TIME_SYNC:
            if f.fields["mode"] == P.SYNC_REPLY:
                sink.time_sync(s, f.fields, f.time_us, t_us)
        elif t == P.HEARTBEAT:
            sink.heartbeat(s, f.fields)
        elif t == P.ERROR:
            sink.device_error(s, f.fields)
        self.tally.counts["frames_accepted"] += 1

    # ------------------------------------------------------------------ batch telemetry
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
        res = decode_telemetry_batch(datas, frame_size=frame_size, keys=keyed if signed else None)
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
        rej = tally.rejected
        TEL = P.TELEMETRY
        tl = P.TELEMETRY_LEN
        accepted = 0
        nbeats = 0
        groups = [None] * G
        for g in range(G):
            dev, a, b, nf = g_dev[g], st[g], en[g], g_nf[g]
            if dev in keyed:                    # a keyed device must sign: refused
                rej["auth"] += nf
                keep[a:b] = False
                continue
            if not open_all and adm.level(dev) is None:
                rej["unknown_device"] += nf
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
                s, reason = lookup(dev, g_boot[g], TEL)
                if s is None:
                    rej[reason] += nf
                    keep[a:b] = False
                    continue
            if k < nf:
                rej["rate_limited"] += nf - k
                adm.rejected["rate_limited"] += nf - k
                fno = np.cumsum(first[a:b]) - 1
                keep[a:b] &= fno < k
                nf = k
                if not nf:
                    continue
                fast_ok = False
            else:
                fast_ok = g_mono[g] and s.note_seq_run(g_fs[g], g_ls[g], nf)
            if not fast_ok:                     # frame by frame: dups, reorder, holes
                fr = first[a:b]
                rows_keep = keep[a:b]
                fidx = np.flatnonzero(fr & rows_keep)
                ok = [s.note_seq(q) in ("new", "reordered") for q in seq[a:b][fidx].tolist()]
                ndup = len(ok) - sum(ok)
                if ndup:
                    rej["duplicate"] += ndup
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
