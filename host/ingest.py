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

from host.devconfig import config_key_of
from host.links.udp import DatagramBlock
from host.ratelimit import frame_complexity, variance_cost
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
        """(data, addr) frames in arrival order: runs of TELEMETRY are batch-decoded, other
        frames take the per-frame path before the telemetry that follows them (a HELLO
        before its device's first beats)."""
        c = self.c
        c.counters["frames_received"] += len(frames)
        fast, fast_signed, addrs = [], [], {}
        for item in frames:
            data = item[0]
            if len(data) > 16 and data[1] == 2:
                (fast_signed if data[0] & 1 else fast).append(data)
                addrs[data[2] | data[3] << 8] = item[1]
                continue
            if fast or fast_signed:
                self._telemetry_run(link, fast, fast_signed, addrs)
                fast, fast_signed, addrs = [], [], {}
            f = c.receiver.decode(data)
            if f is None:
                reason = c.receiver.last_error[0] if c.receiver.last_error else "frame"
                c.reject(reason)
                continue
            self.frame(link, item[1], f, len(data), t_us)
        if fast or fast_signed:
            self._telemetry_run(link, fast, fast_signed, addrs)

    def _telemetry_run(self, link, fast, fast_signed, addrs):
        if fast:
            self.telemetry_batch(link, fast, addrs)
        if fast_signed:
            self.telemetry_batch(link, fast_signed, addrs, signed=True)

    def block(self, link, blk, t_us):
        """A DatagramBlock (recvmmsg). Runs of unsigned TELEMETRY rows are cut out as one
        contiguous blob per frame size and batch-decoded; other rows take the per-frame path;
        runs are processed in arrival order (a HELLO before the telemetry that follows it)."""
        c = self.c
        n = len(blk)
        c.counters["frames_received"] += n
        d, lens = blk.data, blk.lens
        if d.shape[1] > 16:
            fast = (d[:, 1] == 2) & (lens > 16)
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
        """TELEMETRY rows: one batch decode per (frame size, signed or not)."""
        d = blk.data
        flens = blk.lens[idx_all].astype(np.int64) * 2 + (d[idx_all, 0] & 1)
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
            if f.fields["ref_type"] == P.CONFIG:     # the device refused a CONFIG
                c.devconfig.on_ack(s.device_id, f.fields["ref"], P.ACK_BAD_VALUE,
                                   key=config_key_of(f.fields["text"]))
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
            for r in recs if idx >= 0 else ():
                c.master.ingest(idx, r["beat"], r["dT_re"], r["dT_im"], r["dE0"], r["dEL"],
                                r["n_samples"], 1)
        s.last_telemetry = dict(recs[-1])
        if c.tel_history is not None and c.tel_history.every_record:
            c.tel_history.records(s, recs)
        c.counters["beats"] += len(recs)
        c.on_beats(s, recs[-1]["beat"], len(recs), recs[0]["beat"])

    # ------------------------------------------------------------------ batch telemetry
    def telemetry_batch(self, link, datas, addrs, frame_size=None, raw_addrs=False,
                        signed=False):
        """Decoded TELEMETRY rows, grouped per (device, boot) with one stable sort; per-group
        work is scalar Python (a few µs), per-row work is numpy. signed: the frames carry AUTH
        tags, checked against the keystore (a device without a key is refused as "auth")."""
        c = self.c
        keyed = c.admission.auths
        if signed and not keyed:
            n = len(datas) // frame_size if frame_size else len(datas)
            c.reject("auth", n)
            return
        res = decode_telemetry_batch(datas, frame_size=frame_size, keys=keyed if signed else None)
        for reason, n in res.rejects.items():
            if n:
                c.reject(reason, n)
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
        midx = [-1] * G
        if signed:
            keyed = ()                          # tags verified by the decoder
        adm = c.admission
        rate = adm.rate
        rate_on = rate.enabled
        buckets = rate.buckets
        tmono = time.monotonic()
        cost1 = variance_cost(frame_complexity(P.TELEMETRY, P.TELEMETRY_LEN))
        open_all = adm.policy == "accept"
        current = c.sessions.current
        lookup = c.sessions.lookup
        master = c.master
        pulse = c.pulse_every > 0
        now = time.time()
        rej = c.rejected
        TEL = P.TELEMETRY
        tl = P.TELEMETRY_LEN
        accepted = 0
        nbeats = 0
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
                s._tel = (beats, int(np.flatnonzero(keep[a:b])[-1]) + a)
            else:
                s._tel = (beats, b - 1)
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
            if master is not None:
                midx[g] = s.midx if s.mboot == s.boot_id else c.master_index(s)
            accepted += nf
            nrows = b - a
            nbeats += nrows
            if pulse:
                c.on_beats(s, g_beat[g], nrows, g_first[g])
        c.counters["frames_accepted"] += accepted
        c.counters["beats"] += nbeats
        th = c.tel_history
        if th is not None and th.every_record and nbeats:   # memory.telemetry_interval: 0
            th.beats(beats if keep.all() else beats[keep])
        if c.master is not None and nbeats:
            idx = np.repeat(np.asarray(midx, dtype=np.int64), ends - starts)
            keep &= idx >= 0
            if keep.all():
                c.master.ingest_records(idx, beats)
            else:
                c.master.ingest_records(idx[keep], beats[keep])
