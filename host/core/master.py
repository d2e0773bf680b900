"""The Master: long-window KAIROS integration of every device's per-beat partials (SPEC 4.2).

Public API
----------
    m = Master(windows=(10, 60, 600, 3600), tau_max=3600.0, fine_span=2.0, beat_s=T_Lambda, capacity=8)
        beat_s: the nominal beat (sizes the rings; streams may have beats down to beat_s/4)
    m = Master.from_config(cfg)                       # master.windows x kairos.tau_scale, tau_max, fine_span
    idx = m.open_stream(device_id, boot_id, fs_hz, period_us, sum_shift=0, phase_step=0,
                        lag_samples=1)                 # on HELLO; a new boot id = a new stream
    m.ingest_batch(idx, beat, dT_re, dT_im, dE0, dEL, n_samples=None, nbeats=None, boot=None)
        numpy arrays (one row per TELEMETRY record, any order, several devices mixed) -> rows taken
    m.ingest_records(idx, rec, boot=None)               # a structured array with TELEMETRY field names
    m.ingest(idx, beat, dT_re, dT_im, dE0, dEL, n_samples=0, nbeats=1) -> bool   # one record
    m.windows(device_id) -> [ {window, T_hat (complex), C, coverage, fill, ready, beats, seconds,
                               span_beats, first_beat, last_beat, T (complex), E0, EL, sums}, ... ]
        sums = the exact integer totals (dT_re, dT_im, dE0, dEL, n_samples, beats present)
    m.window(device_id, seconds) -> the same dict for any window <= tau_max (O(1))
    m.query(idx_array, seconds) -> dict of arrays over the streams idx_array (vectorised)
    m.query_windows(seconds_list) -> as query_all, for these windows in this order
    m.query_all() -> dict of numpy arrays shaped (devices, windows): "T_hat", "C", "coverage",
                     "fill", "ready", "beats", "seconds", "span_beats", "first_beat", "last_beat"
                     (-1: no data),
                     "T", "E0", "EL", "sums" (devices, windows, 6), plus "device_id", "window"
    m.index_of(device_id) -> int or None;  m.stream(device_id) -> dict (boot, params, counters)
    m.device_ids() -> list;  m.window_seconds -> tuple of floats
    partial_scales(fs_hz, sum_shift=0) -> (t_scale, e_scale)
    window_fill(seconds_held, window_s) -> fill;  MIN_FILL = 0.9

Device time.  A window of W seconds is first located as W / period beats (the device's
period from HELLO); when those beats hold more than W (1 + SPAN_TOL) seconds of samples (beats
that ran long or were skipped under overload, records that sum several beats) it is shortened
to W seconds of samples (at most SPAN_STEPS steps); when they hold less (lost frames, a dead
sensor) the beat clock stands and the window is less full.  Exact while the device's samples per
beat are steady over the window; across a change (an overload that ends in a dead sensor) the
window is an estimate between the two clocks.

Fill: windows that exist.  A window of W seconds *exists* once it holds at least MIN_FILL (90 %)
of its span in device time: fill = min(1, seconds / W), where seconds = the KAIROS samples the
window holds / f_k (the device's sampler is its clock: f_k = f_s / kairos_decim, from HELLO), and
the caller counts only samples of a working sensor (core/feed.py: a beat the device flags as a
sensor fault, stuck or dead, holds none).  So a window 3 s after boot is 30 % full whatever its
beat count, lost frames and a dead or stuck sensor empty it, and `ready` (fill >= MIN_FILL) is
what every consumer checks before it evaluates C: the sync layer, witnessing, memory, status,
the API and the dashboard (they show fill, and C only when ready).  Coverage (beats present /
beats in the range) stays as the frame-loss measure.

Exactness.  Every partial is an integer.  Per device and per stream the Master keeps cumulative
prefix sums of (dT_re, dT_im, dE0, dEL, n_samples, beats present) as int64 in rings; a window is
prefix[now] - prefix[start - 1], an exact integer (int64 arithmetic wraps modulo 2^64 and the
difference of two wrapped prefixes is still exact while the true window sum is below 2^63, i.e.
forever for 3600 s of u32 partials), converted once to float64 (exact below 2^53) and scaled by
f_s and the device's shifts.  So a window equals the float64 sum of its partials exactly, at any
age of the stream, and a query costs O(1) per window.

Rings.  Level 0 holds one prefix per beat for the last `fine_span` seconds; level j holds one
prefix per block of 8^j beats, with the same number of slots, up to the level that covers
`tau_max` for beats down to beat_s/4 (memory per device = levels x slots x 48 bytes: 6 x 485 x 48
= 137 KB at the defaults).  A window shorter than the level-0 span is exact to the beat; a longer
one starts on the nearest block boundary of the finest level that still holds it, so its length
is within 4/(slots-2) (< 1 %) of the asked length; the dict reports the beat range actually summed
(`first_beat`, `last_beat`), `span_beats` and `seconds`, and the sums over that range are exact.

Windows end at the device's latest beat (not the wall clock): a silent device's windows freeze;
`last_beat` and the stream's `last_rx` tell the caller how old they are.  Coverage = beats present
/ beats in the range (lost frames are gaps in the beat index).  Records whose beat is not newer
than the stream's latest beat (late or duplicate) are dropped and counted (`late`, `dup`); records
of a previous boot id (when `boot` is given) are dropped and counted (`stale`).  Beats are u32 on
the wire; a device rolls to a new boot id (a new stream here) long before its counter could wrap
(docs/PROTOCOL.md), so a wrap inside one stream would show up as `late` records.

Physical values (SPEC 4.2): with d in ADC counts, T = f_s * sum(d d_L e^{i w t}) and
E0 = f_s * sum(d^2); the device sends each term rounded and divided by 2^sum_shift (the Q14
phasor is already divided out), hence T = t_scale * dT, E = e_scale * dE with
t_scale = e_scale = f_s * 2^sum_shift.  C = |T|^2/(E0 EL) and
T_hat = T/sqrt(E0 EL) are scale-free; C = 0 and T_hat = 0 when E0*EL = 0.  C is not clipped: with a
quantized phasor it can exceed 1 by a few 2^-14 at most.
"""
import time

import numpy as np

RATIO = 8                # block size ratio between ring levels
MIN_FILL = 0.9           # a window exists (is evaluated) once it holds this much of its span
SPAN_TOL = 0.02          # a window holding more than (1 + this) x its span is shortened ...
SPAN_STEPS = 2           # ... in at most this many steps (device time, see query)
NF = 6                   # prefix fields
F_TRE, F_TIM, F_E0, F_EL, F_N, F_BEATS = range(NF)
_KEY_SHIFT = 40          # sort key = device index << 40 | beat  (beats are u32 on the wire)


def partial_scales(fs_hz, sum_shift=0):
    """(t_scale, e_scale): multiply the integer partials by these to get T and E0/EL (SPEC 4.2).
    The device's partials are sums of d*d_L*cos/sin and d^2 in counts^2, each term rounded and
    divided by 2^sum_shift (shared/kairos.py, docs/DEVICE.md); d_phys = d * f_s, so
    T = f_s * 2^sum_shift * dT and E = f_s * 2^sum_shift * dE."""
    e = float(fs_hz) * float(2 ** int(sum_shift))
    return e, e


def window_fill(seconds_held, window_s):
    """The fill of a window of window_s seconds that holds seconds_held seconds of device time
    (module docstring, "Fill"): min(1, held / window), 0 for an empty window. Works on numpy
    arrays too."""
    return np.minimum(1.0, np.maximum(0.0, np.asarray(seconds_held, dtype=np.float64))
                      / np.asarray(window_s, dtype=np.float64))


class Master:
    """The Master's long windows (module docstring): owns every device stream's prefix-sum
    rings and answers window queries in O(1). Raises ValueError for bad windows or stream
    parameters, KeyError for a device without a stream."""
    def __init__(self, windows=(10.0, 60.0, 600.0, 3600.0), tau_max=3600.0, fine_span=2.0,
                 beat_s=0.004210526315789474, capacity=8):
        windows = tuple(sorted(float(w) for w in windows))
        if not windows or windows[0] <= 0:
            raise ValueError("windows must be positive seconds, got %r" % (windows,))
        if windows[-1] > tau_max + 1e-9:
            raise ValueError("window %r s is longer than tau_max %r s" % (windows[-1], tau_max))
        if fine_span <= 0 or beat_s <= 0:
            raise ValueError("fine_span and beat_s must be > 0")
        self.window_seconds = windows
        self.tau_max = float(tau_max)
        self.fine_span = float(fine_span)
        # ring geometry, shared by every stream: level-0 slots for fine_span at the nominal beat;
        # enough levels to reach tau_max for beats down to a quarter of the nominal one
        self.min_beat_s = float(beat_s) / 4.0
        self.slots = int(np.ceil(self.fine_span / float(beat_s))) + RATIO + 2
        need = int(np.ceil(self.tau_max / self.min_beat_s)) + 2
        blocks = [1]
        while blocks[-1] * (self.slots - 2) < need:
            blocks.append(blocks[-1] * RATIO)
        self.blocks = tuple(blocks)
        self._cap = 0
        self._n = 0
        self._ids = {}            # device_id -> index
        self._alloc(max(1, int(capacity)))

    @classmethod
    def from_config(cls, cfg):
        return cls(windows=cfg.window_seconds(), tau_max=cfg.master.tau_max,
                   fine_span=cfg.master.fine_span, beat_s=cfg.beat_period())

    # ---------------------------------------------------------------- storage
    _PER_DEV = (("dev_id", np.int64, -1), ("boot", np.int64, -1), ("first", np.int64, 0),
                ("last", np.int64, -1), ("fs", np.float64, 1.0), ("beat_s", np.float64, 1.0),
                ("t_scale", np.float64, 1.0), ("e_scale", np.float64, 1.0), ("late", np.int64, 0),
                ("dup", np.int64, 0), ("stale", np.int64, 0), ("last_rx", np.float64, 0.0))

    def _alloc(self, cap):
        old = self._cap
        for name, dt, fill in self._PER_DEV:
            b = np.full(cap, fill, dtype=dt)
            if old:
                b[:old] = getattr(self, name)[:old]
            setattr(self, name, b)
        c = np.zeros((cap, NF), dtype=np.int64)
        r = [np.zeros((cap, self.slots, NF), dtype=np.int64) for _ in self.blocks]
        if old:
            c[:old] = self.carry[:old]
            for a, b in zip(r, self.rings):
                a[:old] = b[:old]
            self.params.extend([None] * (cap - old))
        else:
            self.params = [None] * cap
        self.carry, self.rings = c, r
        self._cap = cap

    def ring_bytes(self):
        """Bytes of ring storage per device stream."""
        return len(self.blocks) * self.slots * NF * 8

    # ---------------------------------------------------------------- streams
    def open_stream(self, device_id, boot_id, fs_hz, period_us, sum_shift=0, phase_step=0,
                    lag_samples=1):
        """Start (or restart, on a new boot id) the stream of a device; returns its index.
        Opening the same (device, boot, parameters) again keeps the stream (a repeated HELLO);
        the same boot with only a new period_us keeps it too (windows then convert seconds to
        beats with the new period); any other parameter change (fs, sum_shift, phase_step,
        lag) restarts the stream, since the partials change meaning."""
        device_id, boot_id = int(device_id), int(boot_id)
        if fs_hz <= 0 or period_us <= 0:
            raise ValueError("fs_hz and period_us must be > 0 (got %r, %r)" % (fs_hz, period_us))
        beat_s = float(period_us) * 1e-6
        if beat_s < self.min_beat_s * (1 - 1e-9):
            raise ValueError("device %d: beat period %r us is shorter than the Master's rings allow "
                             "(>= %.0f us; set pulse.* so the nominal beat is at most 4x longer)"
                             % (device_id, period_us, self.min_beat_s * 1e6))
        params = dict(fs_hz=float(fs_hz), period_us=float(period_us), sum_shift=int(sum_shift),
                      phase_step=int(phase_step), lag_samples=int(lag_samples))
        i = self._ids.get(device_id)
        if i is not None and self.boot[i] == boot_id:
            if self.params[i] == params:
                return i
            same = {k: v for k, v in params.items() if k != "period_us"}
            if {k: v for k, v in self.params[i].items() if k != "period_us"} == same:
                # only the beat period changed (a CONFIG of period_us): the partials keep their
                # meaning, so the stream goes on; windows convert seconds with the new period
                self.params[i] = params
                self.beat_s[i] = beat_s
                return i
        if i is None:
            if self._n == self._cap:
                self._alloc(self._cap * 2)
            i = self._n
            self._n += 1
            self._ids[device_id] = i
        for r in self.rings:
            r[i] = 0
        self.params[i] = params
        self.dev_id[i] = device_id
        self.boot[i] = boot_id
        self.first[i] = 0
        self.last[i] = -1
        self.carry[i] = 0
        self.fs[i] = fs_hz
        self.beat_s[i] = beat_s
        self.t_scale[i], self.e_scale[i] = partial_scales(fs_hz, sum_shift)
        self.late[i] = self.dup[i] = self.stale[i] = 0
        self.last_rx[i] = 0.0
        return i

    def index_of(self, device_id):
        return self._ids.get(int(device_id))

    def device_ids(self):
        return [int(x) for x in self.dev_id[:self._n]]

    def stream(self, device_id):
        i = self._need(device_id)
        has = self.last[i] >= self.first[i]
        present = int(self.carry[i, F_BEATS]) if has else 0
        span = int(self.last[i] - self.first[i] + 1) if has else 0
        return dict(device_id=int(device_id), boot_id=int(self.boot[i]), params=dict(self.params[i]),
                    first_beat=int(self.first[i]) if has else None,
                    last_beat=int(self.last[i]) if has else None,
                    beats=present, lost=span - present, late=int(self.late[i]), dup=int(self.dup[i]),
                    stale=int(self.stale[i]), last_rx=float(self.last_rx[i]))

    def _need(self, device_id):
        i = self._ids.get(int(device_id))
        if i is None:
            raise KeyError("device %r has no stream in the Master (no HELLO yet)" % (device_id,))
        return i

    # ---------------------------------------------------------------- ingest
    def ingest(self, idx, beat, dT_re, dT_im, dE0, dEL, n_samples=0, nbeats=1):
        """One TELEMETRY record of stream `idx`; False if dropped (late or duplicate)."""
        i, beat = int(idx), int(beat)
        last = int(self.last[i])
        if beat == last + 1 and nbeats == 1 and last >= int(self.first[i]):
            # fast path: the next beat, no gap; level j gets a prefix when a block completes
            row = self.carry[i]
            row += (dT_re, dT_im, dE0, dEL, n_samples, 1)
            slots = self.slots
            self.rings[0][i, beat % slots] = row
            b1 = beat + 1
            for j in range(1, len(self.blocks)):
                block = self.blocks[j]
                if b1 % block:
                    break
                self.rings[j][i, (b1 // block - 1) % slots] = row
            self.last[i] = beat
            self.last_rx[i] = time.time()
            return True
        if last >= int(self.first[i]):
            if beat <= last:
                if beat == last:
                    self.dup[i] += 1
                else:
                    self.late[i] += 1
                return False
        else:                                       # first record of the stream
            self.first[i] = beat - int(nbeats) + 1
            last = beat - int(nbeats)
        prev = self.carry[i].copy()
        new = prev + np.array((dT_re, dT_im, dE0, dEL, n_samples, nbeats), dtype=np.int64)
        slots = self.slots
        for block, ring in zip(self.blocks, self.rings):
            # blocks whose end lies in (last, beat]: the one ending at `beat` holds `new`, the
            # others (a gap) hold `prev`
            k_lo = (last + 1) // block
            k_hi = (beat + 1) // block - 1
            if k_hi < k_lo:
                break                               # coarser levels cannot complete either
            k0 = max(k_lo, k_hi - slots + 1)
            if (k_hi + 1) * block - 1 == beat:
                ring[i, k_hi % slots] = new
                k_hi -= 1
            for k in range(k0, k_hi + 1):
                ring[i, k % slots] = prev
        self.carry[i] = new
        self.last[i] = beat
        self.last_rx[i] = time.time()
        return True

    def ingest_records(self, idx, rec, boot=None):
        """A structured array with TELEMETRY fields (beat, dT_re, dT_im, dE0, dEL, n_samples)."""
        nb = rec["nbeats"] if "nbeats" in (rec.dtype.names or ()) else None
        return self.ingest_batch(idx, rec["beat"], rec["dT_re"], rec["dT_im"], rec["dE0"], rec["dEL"],
                                 rec["n_samples"], nb, boot)

    def ingest_batch(self, idx, beat, dT_re, dT_im, dE0, dEL, n_samples=None, nbeats=None, boot=None):
        """Rows of several streams at once (any order); returns the number of rows taken."""
        beat = np.asarray(beat, dtype=np.int64).ravel()
        m = beat.shape[0]
        if m == 0:
            return 0
        idx = np.asarray(idx, dtype=np.int64).ravel()
        if idx.shape[0] == 1 and m > 1:
            idx = np.full(m, idx[0], dtype=np.int64)
        if idx.shape[0] != m:
            raise ValueError("idx and beat differ in length (%d, %d)" % (idx.shape[0], m))
        if np.any((idx < 0) | (idx >= self._n)):
            raise IndexError("stream index outside 0..%d" % (self._n - 1))
        if np.any((beat < 0) | (beat >= (1 << _KEY_SHIFT))):
            raise ValueError("beat outside 0..2^40-1")
        parts = np.empty((m, NF), dtype=np.int64)
        parts[:, F_TRE] = dT_re
        parts[:, F_TIM] = dT_im
        parts[:, F_E0] = dE0
        parts[:, F_EL] = dEL
        parts[:, F_N] = 0 if n_samples is None else n_samples
        parts[:, F_BEATS] = 1 if nbeats is None else nbeats
        keep = np.ones(m, dtype=bool)
        if boot is not None:
            boot = np.asarray(boot, dtype=np.int64).ravel()
            bad = boot != self.boot[idx]
            if bad.any():
                np.add.at(self.stale, idx[bad], 1)
                keep &= ~bad
        # the first record of a fresh stream fixes its first beat
        fresh = keep & (self.last[idx] < self.first[idx])
        if fresh.any():
            rows = np.flatnonzero(fresh)
            order = np.lexsort((beat[rows], idx[rows]))
            rows = rows[order]
            firstrow = np.ones(rows.shape[0], dtype=bool)
            firstrow[1:] = idx[rows[1:]] != idx[rows[:-1]]
            rows = rows[firstrow]
            d = idx[rows]
            self.first[d] = beat[rows] - parts[rows, F_BEATS] + 1
            self.last[d] = self.first[d] - 1
        old_last = self.last[idx]
        late = keep & (beat <= old_last)
        if late.any():
            is_dup = late & (beat == old_last)
            np.add.at(self.dup, idx[is_dup], 1)
            np.add.at(self.late, idx[late & ~is_dup], 1)
            keep &= ~late
        if not keep.all():
            idx, beat, parts = idx[keep], beat[keep], parts[keep]
        if idx.shape[0] == 0:
            return 0
        key = (idx << _KEY_SHIFT) | beat
        order = np.argsort(key, kind="stable")
        key, idx, beat, parts = key[order], idx[order], beat[order], parts[order]
        d = np.ones(key.shape[0], dtype=bool)
        d[1:] = key[1:] != key[:-1]
        if not d.all():
            np.add.at(self.dup, idx[~d], 1)
            key, idx, beat, parts = key[d], idx[d], beat[d], parts[d]
        n = key.shape[0]
        seg = np.ones(n, dtype=bool)
        seg[1:] = idx[1:] != idx[:-1]
        seg_start = np.flatnonzero(seg)
        seg_dev = idx[seg_start]
        seg_len = np.diff(np.append(seg_start, n))
        seg_end = seg_start + seg_len - 1
        cs = np.cumsum(parts, axis=0)              # int64, wraps modulo 2^64 (see docstring)
        excl = np.zeros((seg_start.shape[0], NF), dtype=np.int64)
        excl[1:] = cs[seg_start[1:] - 1]
        cum = cs + np.repeat(self.carry[seg_dev] - excl, seg_len, axis=0)
        seg_last = beat[seg_end]
        seg_old = self.last[seg_dev]
        slots = self.slots
        segs = np.arange(seg_start.shape[0])
        for block, ring in zip(self.blocks, self.rings):
            k_lo = (seg_old + 1) // block
            k_hi = (seg_last + 1) // block - 1
            k0 = np.maximum(k_lo, k_hi - slots + 1)
            cnt = np.maximum(k_hi - k0 + 1, 0)
            tot = int(cnt.sum())
            if tot == 0:
                break                               # coarser levels complete no block either
            rep_seg = np.repeat(segs, cnt)
            offs = np.arange(tot) - np.repeat(np.cumsum(cnt) - cnt, cnt)
            k = np.repeat(k0, cnt) + offs
            dev = seg_dev[rep_seg]
            # prefix at the block's last beat: the newest row of this batch at or before it
            pos = np.searchsorted(key, (dev << _KEY_SHIFT) | ((k + 1) * block - 1), side="right") - 1
            ok = pos >= seg_start[rep_seg]
            vals = self.carry[dev]
            vals[ok] = cum[pos[ok]]
            ring[dev, k % slots] = vals
        self.carry[seg_dev] = cum[seg_end]
        self.last[seg_dev] = seg_last
        self.last_rx[seg_dev] = time.time()
        return n

    # ---------------------------------------------------------------- queries
    def _locate(self, idx, nb):
        """Vectorised O(1) window location: (top, base, start, now) for streams idx (m,) and
        window lengths nb (m,) in beats; base rows are zero where the window reaches the
        stream's first beat."""
        now = self.last[idx]
        first = self.first[idx]
        slots = self.slots
        top = self.rings[0][idx, now % slots]
        base = np.zeros_like(top)
        start = first.copy()
        start_exact = now - nb + 1
        done = start_exact <= first
        for block, ring in zip(self.blocks, self.rings):
            if done.all():
                break
            kb = (start_exact + block // 2) // block
            st = kb * block
            k = kb - 1
            kdone = (now + 1) // block - 1
            young = ~done & (st <= first)
            ok = ~done & ~young & (kdone - k <= slots - 1) & (k <= kdone)
            if ok.any():
                base[ok] = ring[idx[ok], k[ok] % slots]
                start[ok] = st[ok]
            done |= young | ok
        if not done.all():  # pragma: no cover - the coarsest level reaches tau_max by construction
            raise AssertionError("window longer than the Master's rings")
        return top, base, start, now

    def _finish(self, idx, diff_i, start, now, seconds):
        diff = diff_i.astype(np.float64)
        ts = self.t_scale[idx]
        es = self.e_scale[idx]
        T = (diff[..., F_TRE] + 1j * diff[..., F_TIM]) * ts
        E0 = diff[..., F_E0] * es
        EL = diff[..., F_EL] * es
        den = E0 * EL
        pos = den > 0
        safe = np.where(pos, den, 1.0)
        C = np.where(pos, (T.real * T.real + T.imag * T.imag) / safe, 0.0)
        T_hat = np.where(pos, T / np.sqrt(safe), 0j)
        has = self.last[idx] >= self.first[idx]
        span = np.where(has, now - start + 1, 0)
        beats = diff_i[..., F_BEATS]
        cov = np.where(span > 0, beats / np.maximum(span, 1), 0.0)
        held = np.where(has, diff[..., F_N] / self.fs[idx], 0.0)
        fill = window_fill(held, seconds)
        return dict(T_hat=T_hat, C=C, coverage=cov, fill=fill, ready=fill >= MIN_FILL,
                    beats=np.where(has, beats, 0), seconds=held, span_beats=span,
                    first_beat=np.where(has, start, -1), last_beat=np.where(has, now, -1),
                    T=T, E0=E0, EL=EL, sums=diff_i)

    def query(self, idx, seconds):
        """Window of `seconds` for streams idx (array): dict of arrays (see query_all)."""
        idx = np.asarray(idx, dtype=np.int64).ravel()
        if not 0 < seconds <= self.tau_max + 1e-9:
            raise ValueError("window %r s outside (0, tau_max=%r]" % (seconds, self.tau_max))
        nb = np.maximum(1, np.rint(seconds / self.beat_s[idx]).astype(np.int64))
        top, base, start, now = self._locate(idx, nb)
        for _ in range(SPAN_STEPS):
            # device time: a window whose beats hold more than its span of samples (beats that
            # ran long, skipped beats, records of several beats) is shortened to its span
            held = (top[:, F_N] - base[:, F_N]) / (self.fs[idx] * float(seconds))
            long_ = held > 1.0 + SPAN_TOL
            if not long_.any():
                break
            j = np.flatnonzero(long_)
            nb2 = np.maximum(1, (nb[j] / held[j]).astype(np.int64))
            nb[j] = nb2
            t2, b2, s2, n2 = self._locate(idx[j], nb2)
            top[j], base[j], start[j] = t2, b2, s2
        out = self._finish(idx, top - base, start, now, float(seconds))
        out["window"] = float(seconds)
        return out

    def query_all(self):
        """Every configured window of every stream: arrays shaped (devices, windows) for T_hat,
        C, coverage, fill, ready, beats, seconds, span_beats, first_beat, last_beat (-1: no
        data), T, E0, EL; plus device_id (devices,) and window (windows,)."""
        return self.query_windows(self.window_seconds)

    def query_windows(self, seconds_list):
        """As query_all, for the windows `seconds_list` (in that order) of every stream."""
        D = self._n
        idx = np.arange(D, dtype=np.int64)
        cols = [self.query(idx, w) for w in seconds_list]
        out = {k: np.stack([c[k] for c in cols], axis=1) for k in cols[0] if k != "window"}
        # sums: (devices, windows, 6) int64 = dT_re, dT_im, dE0, dEL, n_samples, beats present
        out["device_id"] = self.dev_id[:D].copy()
        out["window"] = np.asarray([float(w) for w in seconds_list])
        return out

    def _base(self, i, nb, now, first):
        """(prefix row before the window's first beat or None, first beat) of a window of nb
        beats ending at `now` of stream i (the scalar form of _locate)."""
        start_exact = now - nb + 1
        if start_exact <= first:
            return None, first
        slots = self.slots
        for block, ring in zip(self.blocks, self.rings):
            kb = (start_exact + block // 2) // block
            st = kb * block
            if st <= first:
                return None, first
            k = kb - 1
            kdone = (now + 1) // block - 1
            if k <= kdone and kdone - k <= slots - 1:
                return ring[i, k % slots], st
        return None, first      # pragma: no cover - the coarsest level reaches tau_max

    def window(self, device_id, seconds):
        """One window of any length <= tau_max ending at the device's latest beat; O(1).
        A dict: window, T_hat, C, coverage, fill, ready, beats, seconds, span_beats, first_beat,
        last_beat (None when the stream has no data), T, E0, EL, and sums: the exact integer
        totals (dT_re, dT_im, dE0, dEL, n_samples, beats present) over [first_beat, last_beat]."""
        i = self._need(device_id)
        if not 0 < seconds <= self.tau_max + 1e-9:
            raise ValueError("window %r s outside (0, tau_max=%r]" % (seconds, self.tau_max))
        now, first = int(self.last[i]), int(self.first[i])
        if now < first:
            return dict(window=float(seconds), T_hat=0j, C=0.0, coverage=0.0, fill=0.0, ready=False,
                        beats=0, seconds=0.0, span_beats=0, first_beat=None, last_beat=None, T=0j, E0=0.0, EL=0.0,
                        sums=(0,) * NF)
        nb = max(1, int(round(seconds / float(self.beat_s[i]))))
        top = self.rings[0][i, now % self.slots]
        base, start = self._base(i, nb, now, first)
        fs = float(self.fs[i])
        for _ in range(SPAN_STEPS):                 # device time (see query)
            held = (int(top[F_N]) - (int(base[F_N]) if base is not None else 0)) / (fs * seconds)
            if held <= 1.0 + SPAN_TOL:
                break
            nb = max(1, int(nb / held))
            base, start = self._base(i, nb, now, first)
        sums = (top - base if base is not None else top).tolist()   # int64 wrap-around difference
        es = float(self.e_scale[i])
        ts = float(self.t_scale[i])
        T = complex(sums[F_TRE] * ts, sums[F_TIM] * ts)
        E0, EL = sums[F_E0] * es, sums[F_EL] * es
        den = E0 * EL
        if den > 0:
            C = (T.real * T.real + T.imag * T.imag) / den
            T_hat = T / den ** 0.5
        else:
            C, T_hat = 0.0, 0j
        span = now - start + 1
        held = sums[F_N] / float(self.fs[i])
        fill = float(window_fill(held, float(seconds)))
        return dict(window=float(seconds), T_hat=T_hat, C=C, coverage=sums[F_BEATS] / span,
                    fill=fill, ready=fill >= MIN_FILL, beats=sums[F_BEATS], seconds=held,
                    span_beats=span,
                    first_beat=start, last_beat=now, T=T, E0=float(E0), EL=float(EL),
                    sums=tuple(sums))

    def windows(self, device_id):
        """Every configured window of a device (list in window order)."""
        return [self.window(device_id, w) for w in self.window_seconds]
