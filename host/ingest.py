"""The coordinator's receive path: frames from links -> decode -> admission -> session ->
Master / ledger / devconfig / time sync (docs/HOST.md, "Ingest path").

Two routes, one set of rules:
  - unsigned single-beat or BATCH TELEMETRY (the bulk of the traffic) is decoded in batches
    with numpy (host/wire.py decode_telemetry_batch), grouped per (device, boot), rate
    limited, de-duplicated by sequence number and handed to the Master in one call;
  - every other frame (HELLO, WITNESS, ACK, TIME_SYNC, HEARTBEAT, ERROR, signed frames) goes
    through the per-frame decoder (host/wire.py Receiver: CRC, header, tag, payload).
Rejections are counted by reason in `Coordinator.rejected`.
"""
import time

import numpy as np

from host.admission import FULL
from host.wire import decode_telemetry_batch
from shared import protocol as P

__all__ = ["Ingest"]

_TEL_SINGLE = P.HEADER_LEN + P.TELEMETRY_LEN + P.CRC_LEN


def _now_us():
    return time.monotonic_ns() // 1000


class Ingest:
    def __init__(self, coord):
        self.c = coord

    # ------------------------------------------------------------------ entry point
    def frames(self, link, frames, t_us):
        c = self.c
        c.counters["frames_received"] += len(frames)
        fast, slow, addrs = [], [], {}
        for item in frames:
            data = item[0]
            if len(data) > 16 and data[1] == 2 and not data[0] & 1:
                fast.append(data)
                addrs[data[2] | data[3] << 8] = item[1]
            else:
                slow.append(item)
        if fast:
            self.telemetry_batch(link, fast, addrs)
        for data, addr in slow:
            f = c.receiver.decode(data)
            if f is None:
                reason = c.receiver.last_error[0] if c.receiver.last_error else "frame"
                c.reject(reason)
                continue
            self.frame(link, addr, f, len(data), t_us)

    def block(self, link, blk, t_us):
        """A DatagramBlock (recvmmsg). Runs of unsigned TELEMETRY rows are cut out as one
        contiguous blob per frame size and batch-decoded; other rows take the per-frame path;
        runs are processed in arrival order (a HELLO before the telemetry that follows it)."""
        c = self.c
        n = len(blk)
        c.counters["frames_received"] += n
        d, lens = blk.data, blk.lens
        if d.shape[1] > 16:
            fast = (d[:, 1] == 2) & ((d[:, 0] & 1) == 0) & (lens > 16)
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
                f = c.receiver.decode(data)
                if f is None:
                    c.reject(c.receiver.last_error[0] if c.receiver.last_error else "frame")
                    continue
                self.frame(link, addr, f, len(data), t_us)

    def _fast_rows(self, link, blk, idx_all):
        d = blk.data
        flens = blk.lens[idx_all]
        sizes = np.unique(flens)
        for size in sizes.tolist():
            idx = idx_all if len(sizes) == 1 else idx_all[flens == size]
            blob = d[idx, :size].tobytes()
            devs = d[idx, 2].astype(np.int64) | (d[idx, 3].astype(np.int64) << 8)
            u, last = np.unique(devs[::-1], return_index=True)
            rows = idx[len(idx) - 1 - last]
            addrs = {int(dv): blk.addr(blk.names[r]) for dv, r in zip(u.tolist(), rows.tolist())}
            self.telemetry_batch(link, blob, addrs, frame_size=size)

    def _admit(self, dev, boot, mtype, nbytes):
        c = self.c
        lv, reason = c.admission.admit(dev, mtype, nbytes - P.HEADER_LEN - P.CRC_LEN)
        if lv is None:
            c.reject(reason)
            return None, None
        s, reason = c.sessions.lookup(dev, boot, mtype)
        if s is None:
            c.reject(reason)
            return None, None
        return lv, s

    # ------------------------------------------------------------------ per frame
    def frame(self, link, addr, f, nbytes, t_us):
        c = self.c
        lv, s = self._admit(f.device_id, f.boot_id, f.type, nbytes)
        if s is None:
            return
        r = s.note_seq(f.seq)
        if r == "duplicate" or r == "old_seq":
            c.reject("duplicate")
            return
        s.frames += 1
        s.bytes += nbytes
        s.last_seen = time.time()
        s.online = True
        s.by_type[f.type] += 1
        s.link, s.addr = link, addr
        t = f.type
        if t == P.TELEMETRY:
            recs = f.fields["records"] if f.batch else [f.fields]
            self._telemetry_records(s, recs)
        elif t == P.HELLO:
            self._hello(s, f)
        elif t == P.WITNESS:
            c.on_witness(s, f, lv)
        elif t == P.ACK:
            self._ack(s, f)
        elif t == P.TIME_SYNC:
            if f.fields["mode"] == P.SYNC_REPLY:
                fl = f.fields
                t1 = fl["rx_era"] * P.SEQ_LIMIT + fl["rx_off"]
                try:
                    s.clock.add_exchange(fl["host_t1_us"], t1, f.time_us, t_us)
                except ValueError:
                    c.reject("time_sync")
        elif t == P.HEARTBEAT:
            s.extra["heartbeat"] = dict(f.fields)
        elif t == P.ERROR:
            c.counters["device_errors"] += 1
            s.extra["last_error"] = dict(f.fields)
        c.counters["frames_accepted"] += 1

    def _hello(self, s, f):
        c = self.c
        first = s.hello is None
        c.sessions.hello(s, f.fields)
        h = f.fields
        c.open_master_stream(s)
        if first:
            c.on_hello(s)
        c.counters["hellos"] += 1
        _ = h

    def _ack(self, s, f):
        c = self.c
        fl = f.fields
        if fl["acked_type"] == P.CONFIG:
            c.devconfig.on_ack(s.device_id, fl["ref"], fl["status"])
        else:
            c.counters["acks_%s" % P.TYPE_NAMES.get(fl["acked_type"], "other").lower()] += 1

    def _telemetry_records(self, s, recs):
        c = self.c
        if c.master is not None:
            idx = c.master_index(s)
            for r in recs:
                c.master.ingest(idx, r["beat"], r["dT_re"], r["dT_im"], r["dE0"], r["dEL"],
                                r["n_samples"], 1)
        s.last_telemetry = dict(recs[-1])
        c.counters["beats"] += len(recs)
        c.on_beats(s, recs[-1]["beat"], len(recs), None)

    # ------------------------------------------------------------------ batch telemetry
    def telemetry_batch(self, link, datas, addrs, frame_size=None):
        c = self.c
        res = decode_telemetry_batch(datas, frame_size=frame_size)
        for reason, n in res.rejects.items():
            if n:
                c.reject(reason, n)
        beats = res.beats
        if not len(beats):
            return
        keyed = c.admission.auths
        key = (beats["device_id"].astype(np.uint32) << 16) | beats["boot_id"]
        order = np.argsort(key, kind="stable")
        ks = key[order]
        cuts = np.flatnonzero(np.diff(ks)) + 1
        starts = np.concatenate(([0], cuts))
        ends = np.concatenate((cuts, [len(ks)]))
        take_idx, take_rows = [], []
        now = time.time()
        for a, b in zip(starts.tolist(), ends.tolist()):
            rows = beats[order[a:b]]
            dev = int(rows["device_id"][0])
            boot = int(rows["boot_id"][0])
            first = rows["index"] == 0
            nframes = int(first.sum())
            if dev in keyed:                   # a keyed device must sign: refused
                c.reject("auth", nframes)
                continue
            if c.admission.level(dev) is None:
                c.reject("unknown_device", nframes)
                c.admission.rejected["unknown_device"] += nframes
                continue
            counts = rows["count"][first]
            plens = np.where(counts > 1, 1 + P.TELEMETRY_LEN * counts.astype(np.int64),
                             P.TELEMETRY_LEN)
            k = c.admission.rate.allow_many(dev, np.full(nframes, P.TELEMETRY), plens)
            if k < nframes:
                c.reject("rate_limited", nframes - k)
                c.admission.rejected["rate_limited"] += nframes - k
                fno = np.cumsum(first) - 1
                rows = rows[fno < k]
                first = first[fno < k]
                nframes = k
                if not nframes:
                    continue
            s, reason = c.sessions.lookup(dev, boot, P.TELEMETRY)
            if s is None:
                c.reject(reason, nframes)
                continue
            seqs = rows["seq"][first].astype(np.int64)
            if not (nframes == 1 or np.all(np.diff(seqs) > 0)) or \
                    not s.note_seq_run(int(seqs[0]), int(seqs[-1]), nframes):
                keep_f = np.array([s.note_seq(q) in ("new", "reordered") for q in seqs.tolist()])
                ndup = nframes - int(keep_f.sum())
                if ndup:
                    c.reject("duplicate", ndup)
                    fno = np.cumsum(first) - 1
                    rows = rows[keep_f[fno]]
                    nframes -= ndup
                    if not nframes:
                        continue
            s.frames += nframes
            s.bytes += int(nframes * _TEL_SINGLE)
            s.by_type[P.TELEMETRY] += nframes
            s.last_seen = now
            s.online = True
            s.link = link
            ad = addrs.get(dev)
            if ad is not None:
                s.addr = ad
            if c.master is not None:
                take_idx.append(np.full(len(rows), c.master_index(s), dtype=np.int64))
                take_rows.append(rows)
            s.last_telemetry = rows[-1]
            c.counters["beats"] += len(rows)
            c.counters["frames_accepted"] += nframes
            c.on_beats(s, int(rows["beat"][-1]), len(rows), rows)
        if take_rows:
            rows = take_rows[0] if len(take_rows) == 1 else np.concatenate(take_rows)
            idx = take_idx[0] if len(take_idx) == 1 else np.concatenate(take_idx)
            c.master.ingest_records(idx, rows)
