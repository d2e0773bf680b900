"""The device beat (SPEC section 3), in order, on a deadline schedule.

One ``Beat.step()`` is one beat:
  1. pulse: wait for the deadline (done by ``idle()`` at the end of the previous beat); record the
     lateness (now - deadline) in a fixed histogram; the next deadline = previous + period (Q16
     microseconds, so a fractional T_Lambda never drifts); a stall longer than a period skips the
     missed beats (counted) instead of bursting to catch up.
  2. read the samples the sampler took since the last beat;
  3. Emissary update (streaming KAIROS sums, shared.kairos);
  4. anomalies + entropy model -> threat;
  5. arbiter: cores, decision vector, decision;
  6. act: actuator PID -> PWM duty; ALERT -> LED; QUARANTINE -> output to its safe value, latched
     until the host's CLEAR;
  7. recalibrate: genomic PID on the pulse error, genome update and normalisation;
  8. emit: TELEMETRY (every ``telemetry_every`` beats, optionally batched ``batch_beats`` per
     frame), WITNESS records for events (queued, see device/witness_queue.py);
then ``idle()`` until the next deadline:
  9. host frames (device/hostframes.py), a controlled GC when the heap runs low, proof-of-work
     slices for pending witness records, witness (re)sends, HEARTBEAT; a slice is only started when
     its measured cost fits before the deadline with a margin, so mining never makes a beat late;
     then sleep (and spin the last ``_SPIN_US``) until the deadline.

Steps 1-8 allocate nothing on MicroPython in the steady state (measured around step() with
``gc.mem_alloc`` every ``alloc_every`` beats and reported as ``alloc_bytes_per_beat``).  Idle work that allocates (mining,
host frames) only runs while the last heap check found ``_GC_LOW`` bytes free. The check
(gc.mem_free() walks the heap: ~8 ms on a Pico) runs in idle time only when its measured cost
fits; below ``_GC_LOW`` the beat collects in idle time when the measured collection time fits.
Where neither fits (a Pico's 4.2 ms beat: a collection takes ~23 ms), MicroPython collects
when an allocation finds no room, which the steady beat, allocating next to nothing, seldom
causes (no gc.threshold: see start()).  HEARTBEAT heap_free is the last check's figure.
"""
import gc
import struct

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

from array import array

from device.clock import DeviceTime, Deadline, tdiff, MASK, beat_tick, NOW_MS, INTERVAL, SKIPPED
from device.lateness import LatenessHistogram, record as record_lateness
from device.witness_queue import WitnessQueue
from shared import protocol_codes as C
from shared.wire_format import WITNESS_RECORD_FMT
from shared.compat import micropython  # noqa: F401
from shared.frame_encoder import witness_record_into
from shared.kairos import PART_RE, PART_IM, PART_E0, PART_EL, PART_N, KBIAS, COLLAPSED
try:
    from shared.compat import ptr32    # CPython stand-in; viper has it built in
except ImportError:
    pass

# telemetry accumulator words (re, im + KBIAS; the others plain)
_A_RE = const(0)
_A_IM = const(1)
_A_E0 = const(2)
_A_EL = const(3)
_A_N = const(4)
_A_BEATS = const(5)


@micropython.viper
def _accumulate(acc, km) -> int:
    # add this beat's KAIROS partials (shared/kairos.py words) to the record being built;
    # returns the record's KAIROS sample count
    a = ptr32(acc)
    k = ptr32(km)
    # shared/kairos.py's word indices: imported names are objects in viper, so cast them
    b = int(KBIAS)
    a[_A_RE] = int(a[_A_RE]) + int(k[int(PART_RE)]) - b
    a[_A_IM] = int(a[_A_IM]) + int(k[int(PART_IM)]) - b
    a[_A_E0] = int(a[_A_E0]) + int(k[int(PART_E0)])
    a[_A_EL] = int(a[_A_EL]) + int(k[int(PART_EL)])
    n = int(a[_A_N]) + int(k[int(PART_N)])
    a[_A_N] = n
    a[_A_BEATS] = int(a[_A_BEATS]) + 1
    return n
from shared.version import FW_VERSION

# shared/vibration.py's LEVEL, KURT, CREST, ANOMS words (folded here: an imported name is a
# module global, heap; tests/test_device_int_bounds.py checks they agree)
_V_LEVEL = const(32)
_V_KURT = const(33)
_V_CREST = const(34)
_V_ANOMS = const(54)
# ... shared/kairos.py's COHERENCE word, device/arbiter.py's THREAT and O words, device/pid.py's
# SETPOINT and OUT words and their bias (TELEMETRY reads them straight: the Maths getters are
# two or three Python calls each, ~0.3 ms a beat on a Pico)
_K_COH = const(25)
_A_THREAT = const(22)
_A_O = const(14)
_P_SP = const(0)
_P_OUT = const(1)
_P_B = const(0x20000000)
_HAS_MEM = hasattr(gc, "mem_alloc")
_NDEC = const(5)
_WARMUP = const(20)
_SAT = const(0x3FFFFFFF)      # counters saturate here: small ints on a Pico, no overflow on a Pi
# idle-time tuning (folded constants: no heap)
_REPEAT_BEATS = const(14250)  # the same non-NOOP decision re-witnessed after ~1 min of beats
_SPIN_US = const(150)         # busy-wait the last microseconds before a deadline
_SLICE_HASHES = const(64)     # proof-of-work hashes per slice at most; fewer when the idle time
#                               left holds fewer at the measured cost per hash (~370 us on a
#                               Pico: 64 would be 24 ms, six beats)
_MARGIN_US = const(200)       # idle work must end this long before the deadline
_GC_LOW = const(12288)        # collect in idle time below this many free bytes
_LEARN_LAGS = const(16)       # lags per lag-search slice (device/lag.py)


def _mem_alloc():
    return gc.mem_alloc() if _HAS_MEM else 0


class Settings:
    """Run-time settings (CONFIG keys of shared.protocol act on these, via hostframes)."""

    def __init__(self):
        self.telemetry_every = 1      # send a TELEMETRY record every N beats (partials summed)
        self.batch_beats = 1          # records per TELEMETRY frame (1 = no BATCH flag)
        self.heartbeat_every = 0      # beats between HEARTBEATs (0 = about once a second)
        self.pow_bits = C.POW_BITS_DEFAULT
        self.link_timeout_ms = 3000   # no host frame for this long: the link is down
        # measure the allocation of one beat in alloc_every (0 = never): gc.mem_alloc() scans
        # the heap (milliseconds on a Pico: boards/pico.py sets 0, its lane measures instead)
        self.alloc_every = 1


def _follow(est, cost, shift):
    """An idle-time cost estimate (us): follows a rise at once, decays toward a lower cost by
    1/2^shift per measurement (one slow measurement, the OS preempting it, never starves the
    work it gates for good)."""
    return cost if cost > est else est - ((est - cost) >> shift)


class Beat:
    """The beat loop state.  ``maths`` is a device.maths.Maths bundle (pulse, Emissary, PIDs,
    arbiter, miner); ``hw`` a board's Hardware; ``link`` a device.hw.links link; ``enc`` a
    shared.frame_encoder.Encoder."""

    def __init__(self, hw, link, enc, maths, settings=None, host=None):
        self.hw = hw
        self.clock = hw.clock
        self.link = link
        self._pumps = hasattr(link, "pump")
        self._wifi = hasattr(hw, "wifi")
        self.enc = enc
        self.m = maths
        self.s = settings or Settings()
        self.host = host              # device.hostframes.HostFrames (set by main)
        self.time = DeviceTime(self.clock)
        self.queue = WitnessQueue(capacity=8, rec_max=24)
        self.lateness = LatenessHistogram()
        self.samples = array("H", bytes(2 * maths.max_samples()))
        self.beat = 0
        self.decisions = array("i", bytes(4 * _NDEC))
        self.collapses = 0
        self.quarantined = False
        self.collapse_prev = False
        self.last_decision = 0
        self.last_witness_beat = 0
        self.late_last = 0
        self.tst = array("i", bytes(24))   # clock.beat_tick words: ms since boot, interval...
        self.last_rx_ms = 0
        self.link_up = False
        # telemetry accumulation over telemetry_every beats
        self.acc = array("i", bytes(24))   # the TELEMETRY record being summed (_A_*)
        self.acc[_A_RE] = KBIAS
        self.acc[_A_IM] = KBIAS
        self._kmem = maths.em.mem
        self._kmax = maths.em.max_samples
        self.beats_since_hb = 0
        # allocation measurement
        self.alloc_total = 0
        self.alloc_beats = 0
        self.alloc_max = 0
        self.gc_in_beat = 0
        self.gc_runs = 0
        # mining
        self.mining_slot = -1
        self.mining_id = 0
        self.hash_est_us = -1         # what one proof-of-work hash costs (us, measured; -1 not
        #                               yet: the first slice is one hash)
        self.gc_est_us = 1000
        self.learn_est_us = 450       # what one lag of the lag search costs (measured)
        self.learn_start_us = 1500    # what starting a search costs (measured)
        self.hb_est_us = 0            # what a HEARTBEAT costs (measured)
        self.mf_est_us = 0            # what gc.mem_free() costs (it walks the heap: ~8 ms on a Pico)
        self.mem_low = False          # the last heap check found less than _GC_LOW free
        self.heap_free = 0            # the last gc.mem_free() figure (HEARTBEAT heap_free)
        self.hashes = 0
        self.records_mined = 0
        self.mined_late = 0
        self.pwm_duty = 0
        self.deadline = None
        self._ovr_seen = 0            # the sampler's lost() at the last beat
        self.tel_due = False          # a TELEMETRY record is ready: sent first thing in idle
        self.sealed = False           # a BATCH frame is signed (enc.batch_seal): out next idle
        self.tel_beat = 0
        self.tel_state = 0
        self.lag_changes = 0
        self.latch = None             # device/latch.py (set by runner.build)
        self.crashed = None           # the ERROR text of an exception that escaped the beat

    # ------------------------------------------------------------------ start
    def start(self):
        """Boot: HELLO, boot witness, schedule the first deadline one period from now."""
        t = self.time.update()
        self.deadline = Deadline(t, self.m.period_q16())
        self.deadline.advance()
        self.hw.sampler.start(t)
        if self.quarantined:          # restored at boot (device/latch.py): safe from beat 0
            self.hw.pwm.safe()
            self.pwm_duty = self.hw.pwm.duty
            self.hw.led.set(1)
        clk = self.clock
        t0 = clk.ticks()
        self.send_hello()
        # the first estimate of what a signed HELLO or HEARTBEAT costs (both wait for idle time
        # that fits them: device/session.py, idle())
        c = tdiff(clk.ticks(), t0)
        self.hb_est_us = c
        hs = self.host.hs if self.host is not None else None
        if hs is not None:
            hs.est_us = c
        lt = self.latch
        self.witness(C.WITNESS_BOOT, 0, lt.cause if lt is not None else 0)
        if self.quarantined:
            self.witness(C.WITNESS_DECISION, C.DECISION_QUARANTINE, self.pwm_duty)
        if _HAS_MEM:
            # last: the boot frames' garbage goes too, so the heap's lowest free run is the
            # frames' hole device/runner.py left (a bytecode frame over 11 words is heap)
            gc.collect()
            t0 = clk.ticks()
            free = gc.mem_free()
            self.mf_est_us = tdiff(clk.ticks(), t0)
            self.heap_free = free
            # No gc.threshold: its counter adds every allocation and never subtracts a free, so
            # the bytecode frames MicroPython takes from the heap and gives back at once (over
            # 11 words: idle(), encoding, ...) triggered a collection every ~65 beats on a Pico
            # (27 ms: 6-7 beats skipped) with no garbage at all. The steady beat makes next to
            # none (a HELLO a second while no host answers), so MicroPython's own collection
            # when an allocation finds no room is rare, and it runs in idle code.

    # ------------------------------------------------------------------ the beat
    @micropython.native
    def step(self):
        """Run steps 1-8 of one beat (the deadline has been reached by ``idle``)."""
        # 1. pulse: device time, lateness against the deadline, next deadline (one kernel)
        t = self.clock.ticks()
        late = beat_tick(self.time.st, self.deadline.st, self.tst, t)
        record_lateness(self.lateness.h, late)
        self.late_last = late
        iv = self.tst[INTERVAL]
        # 2. samples since the last beat
        smp = self.hw.sampler
        smp.poll(t)
        n = smp.drain(self.samples)
        m = self.m
        o = smp.lost()                # samples lost this beat: a sensor-health event
        ovr = o - self._ovr_seen
        self._ovr_seen = o
        # 3.-5. features, KAIROS (Emissary), sensor and coherence health, cores, decision;
        # the actuator PID (6) unless QUARANTINE is latched; 7. recalibrate (genomic PID on
        # the measured beat interval): one call
        quar = self.quarantined
        decision = m.beat(self.samples, n, ovr, iv, not quar)
        collapse = self._kmem[COLLAPSED] != 0
        if collapse and not self.collapse_prev and self.collapses < _SAT:
            self.collapses += 1
        if self.decisions[decision] < _SAT:
            self.decisions[decision] += 1
        # 6. act
        entered = decision == C.DECISION_QUARANTINE and not quar
        hw = self.hw
        if entered:
            self.quarantined = True
            quar = True
            if self.latch is not None:
                self.latch.set()      # one store (rp2 scratch); the file in idle time
        if quar:
            hw.pwm.safe()
            self.pwm_duty = hw.pwm.duty
            hw.led.set(1)
        else:
            self.pwm_duty = m.duty
            hw.pwm.write(m.duty)
            hw.led.set(1 if decision == C.DECISION_ALERT else 0)
        # 8. emit
        self._telemetry(decision, collapse)
        self._witness_events(decision, collapse, entered)
        self.collapse_prev = collapse
        self.last_decision = decision
        self.beat += 1
        self.beats_since_hb += 1
        self.hw.watchdog.feed()

    @property
    def now_ms(self):
        """Milliseconds since boot, modulo 2^30 (kept by the beat's clock kernel)."""
        return self.tst[NOW_MS]

    @property
    def skipped(self):
        return self.tst[SKIPPED]

    def state_byte(self, decision, collapse):
        s = decision
        if self.quarantined:
            s |= C.STATE_QUARANTINE_LATCHED
        if collapse:
            s |= C.STATE_COLLAPSE
        return s

    def state_bits(self, decision, collapse):
        s = self.state_byte(decision, collapse)
        m = self.m
        if m.locked:
            s |= C.STATE_LAG_LOCKED
        h = m.health
        if h.sensor_fault:
            s |= C.STATE_SENSOR_FAULT
        if h.coherence_lost:
            s |= C.STATE_COHERENCE_LOST
        return s

    def _telemetry(self, decision, collapse):
        """Accumulate this beat's partials; when a record is due, mark it: idle() builds and
        sends the frame first thing (so encoding, signing and the link write never hold up the
        deadline-bound part of the beat)."""
        n = _accumulate(self.acc, self._kmem)
        # n_samples is a u8 on the wire: a record summing telemetry_every beats goes out early
        # once one more beat could take its count past 255 (exact; the host adds records)
        if self.acc[_A_BEATS] < self.s.telemetry_every and n + self._kmax <= 255:
            return
        self.tel_due = True
        self.tel_state = self.state_bits(decision, collapse)
        self.tel_beat = self.beat            # step() counts the beat after this

    @micropython.native
    def _send_telemetry(self):
        self.tel_due = False
        m = self.m
        st = self.tel_state
        enc = self.enc
        tm = self.time
        # the features straight from their words (Maths.features() returns a tuple: 32 bytes
        # of heap a beat)
        vm = m.vib.mem
        lv = vm[_V_LEVEL]
        if lv < -32768:
            lv = -32768
        ku = vm[_V_KURT]
        cr = vm[_V_CREST]
        an = vm[_V_ANOMS]
        if an > 65535:
            an = 65535
        a = self.acc
        re = a[_A_RE] - KBIAS
        im = a[_A_IM] - KBIAS
        # Maths.coherence_q16(), threat_q16(), o_weight_q16(), pid_error(), pid_output()
        coh = self._kmem[_K_COH]
        ast = m.arb.st
        th = ast[_A_THREAT]
        if th > 65535:
            th = 65535
        ow = ast[_A_O]
        if ow > 65535:
            ow = 65535
        pst = m.act.st
        pe = (pst[_P_SP] - _P_B - m.meas_q16) >> 1
        if pe > 32767:
            pe = 32767
        elif pe < -32768:
            pe = -32768
        po = pst[_P_OUT] - _P_B
        if po > 65535:
            po = 65535
        elif po < 0:
            po = 0
        if self.s.batch_beats > 1:
            c = enc.batch_add(self.tel_beat, self.deadline.period_us, self.late_last, re, im,
                              a[_A_E0], a[_A_EL], a[_A_N], coh, pe, po, th, ow, st, lv, ku, cr,
                              an)
            if c >= self.s.batch_beats:
                # header and tag now, CRC, framing and the link in the next idle time (the
                # whole frame, ~2 ms on a Pico, made this beat's successor late)
                enc.batch_seal(tm.era, tm.off)
                self.sealed = True
        else:
            self.link.send(enc.telemetry(tm.era, tm.off, self.tel_beat, self.deadline.period_us,
                                         self.late_last, re, im, a[_A_E0], a[_A_EL], a[_A_N],
                                         coh, pe, po, th, ow, st, lv, ku, cr, an))
        a[_A_RE] = KBIAS
        a[_A_IM] = KBIAS
        a[_A_E0] = 0
        a[_A_EL] = 0
        a[_A_N] = 0
        a[_A_BEATS] = 0

    def _witness_events(self, decision, collapse, entered):
        """Witness policy: a collapse edge; entering QUARANTINE (exactly one record per latch, so
        the queue's "QUARANTINE never dropped" promise holds); while not latched, a change to a
        non-NOOP decision, or the same non-NOOP decision again after _REPEAT_BEATS (~1 min).
        Every beat's decision is in TELEMETRY in any case."""
        if collapse and not self.collapse_prev:
            self.witness(C.WITNESS_COLLAPSE, decision, self.m.coherence_q16())
        if entered:
            self.witness(C.WITNESS_DECISION, decision, self.pwm_duty)
        elif decision != C.DECISION_NOOP and not self.quarantined and \
                decision != C.DECISION_QUARANTINE:
            if decision != self.last_decision or \
                    self.beat - self.last_witness_beat >= _REPEAT_BEATS:
                self.witness(C.WITNESS_DECISION, decision, self.pwm_duty)

    def witness(self, kind, decision, value):
        """Queue a WITNESS record (mined and sent in idle time).  Returns its id or -1."""
        q = self.queue
        quar = kind == C.WITNESS_DECISION and decision == C.DECISION_QUARANTINE
        slot = q.alloc(quar)
        if slot < 0:
            return -1
        m = self.m
        n = witness_record_into(q.rec[slot], 0, self.enc.device_id, self.enc.boot_id,
                                q.rec_id[slot], kind, self.beat, decision, m.threat_q16(),
                                m.coherence_q16(), value, self.s.pow_bits)
        q.commit(slot, n)
        self.last_witness_beat = self.beat
        if self.s.pow_bits == 0:
            q.mined(slot, 0)
        return q.rec_id[slot]

    def set_period(self, period_q16):
        """A new beat period (CONFIG pulse_k/pulse_p/period_us): the schedule keeps its phase,
        the next deadline moves by the new period; HELLO tells the host."""
        self.deadline.set_period_q16(period_q16)
        self.send_hello()

    def clear_quarantine(self):
        """CLEAR from the host (checked by hostframes): the output returns to the PID, which
        continues from the safe duty it held (bumpless: device/pid.py), and the persisted latch
        is cleared."""
        self.quarantined = False
        if self.latch is not None:
            self.latch.clear()
        self.m.resume_output(self.hw.pwm.duty)

    # ------------------------------------------------------------------ idle (step 9)
    @micropython.native           # its bytecode frame (> 11 words) came from the heap every beat
    def idle(self):
        """Between beats: host frames, GC, PoW slices, witness sends, heartbeat; then wait for
        the deadline.  Work is only started when it fits before the deadline."""
        if self.sealed:               # the frame signed in the last idle time
            self.sealed = False
            self.link.send(self.enc.batch_frame())
        if self.tel_due:              # the last beat's record, under the epoch it belongs to
            self._send_telemetry()
        if self.enc.needs_new_boot or self.time.era >= 255:  # time_era is a u8
            from device.epoch import new_epoch   # rare: loaded only then
            new_epoch(self)
        clk = self.clock
        dl = self.deadline
        s = self.s
        learn_done = self.m.learner is None
        self._housekeeping()
        host_done = False
        sends_done = False
        hb_done = False
        mem_done = False
        gc_done = False
        while True:
            now = clk.ticks()
            rem = tdiff(dl.at, now)
            if rem <= 0:
                return
            budget = rem - _MARGIN_US
            if not host_done:
                host_done = True
                if self.host is not None and budget > 0:
                    self.host.poll(budget)
                continue
            if not sends_done:
                sends_done = True
                if budget > 0:
                    self._send_due()
                continue
            if not learn_done:
                learn_done = True
                # a slice of the lag search: as many lags (up to _LEARN_LAGS) as fit at the
                # measured cost per lag (~0.4 ms on a Pico: 16 were 6 ms), or its start (~1.2
                # ms) when that fits; a learned lag restarts the stream
                le = self.learn_est_us
                ll = self.m.learner           # (a CONFIG in this idle time may have fixed the lag)
                if ll is None:
                    continue
                if ll.busy:
                    k = budget // le
                    if k > _LEARN_LAGS:
                        k = _LEARN_LAGS
                    if k > 0:
                        t0 = clk.ticks()
                        got = self.m.learn_step(k)
                        self.learn_est_us = _follow(le, (tdiff(clk.ticks(), t0) + k - 1) // k, 4)
                        if got:
                            self.lag_changes += 1
                            self.send_hello()
                elif budget > 0:
                    t0 = clk.ticks()
                    self.m.learn_step(0, budget > self.learn_start_us)
                    if ll.busy:                   # it started
                        self.learn_start_us = _follow(self.learn_start_us,
                                                      tdiff(clk.ticks(), t0), 4)
                continue
            if not hb_done:
                hb_done = True
                hbe = s.heartbeat_every or (1000000 // dl.period_us)
                k = self.beats_since_hb
                # when its measured cost fits (a signed frame: ~1.5 ms on a Pico), or once it is
                # a period overdue whatever it costs
                if k >= hbe and (budget > self.hb_est_us or k >= 2 * hbe):
                    self.beats_since_hb = 0
                    t0 = clk.ticks()
                    self.send_heartbeat()
                    self.hb_est_us = _follow(self.hb_est_us, tdiff(clk.ticks(), t0), 3)
                continue
            if not mem_done:
                mem_done = True
                # the heap check walks the heap: only when it fits (its cost measured)
                if _HAS_MEM and budget > self.mf_est_us:
                    t0 = clk.ticks()
                    free = gc.mem_free()
                    c = tdiff(clk.ticks(), t0)
                    self.mf_est_us = _follow(self.mf_est_us, c, 3)
                    self.heap_free = free
                    self.mem_low = free < _GC_LOW
                    continue
            low = self.mem_low
            if low and not gc_done and budget > self.gc_est_us:
                gc_done = True
                t0 = clk.ticks()
                gc.collect()
                c = tdiff(clk.ticks(), t0)
                self.gc_est_us = _follow(self.gc_est_us, c, 3)
                self.gc_runs = (self.gc_runs + 1) & _SAT
                self.mem_low = False
                continue
            if low and not gc_done:
                # passed over for lack of time: let the estimate decay (1/8 per beat), or one
                # slow collection (the OS preempting it) would starve GC, and so mining, for good
                gc_done = True
                g = self.gc_est_us
                self.gc_est_us = g - (g >> 3)
            # mining allocates (hash objects): only with heap to spare, so the automatic GC
            # never has to run inside a beat; APPLY_OPTIMIZE (the beat is overloaded) sheds it
            if self.last_decision == C.DECISION_APPLY_OPTIMIZE:
                low = True
            mb = budget - clk.sched_margin_us   # an OS's scheduler margin (device/clock.py)
            if not low and mb > self.hash_est_us and self._mine_slice(clk, mb):
                continue
            if not low and mb > 0 and clk.sched_margin_us and self.queue.pending():
                # not even one hash fitted: decay its estimate (1/16), or one preempted slice
                # would keep mining out of every later beat. Only under an OS: on bare metal
                # nothing preempts a slice, and the decay took the estimate to ~15 us against
                # ~136 us measured, so the next slice ran 64 hashes (9 ms: skipped beats)
                e = self.hash_est_us
                if e > 0:
                    self.hash_est_us = e - (e >> 4)
            # nothing else to do: sleep, then spin the last _SPIN_US (sleep overshoots)
            if not clk.spin_ok:
                clk.sleep_us(rem)
                continue
            if rem > _SPIN_US:
                clk.sleep_us(rem - _SPIN_US)
            while tdiff(dl.at, clk.ticks()) > 0:
                pass
            return

    def _mine_slice(self, clk, avail):
        """One proof-of-work slice of as many hashes as fit in ``avail`` us at the measured cost
        per hash (at most _SLICE_HASHES; one while the cost is unknown); returns False when
        there is nothing to mine."""
        q = self.queue
        miner = self.m.miner
        slot = self.mining_slot
        if slot < 0 or q.state[slot] != 1 or q.rec_id[slot] != self.mining_id:
            slot = q.next_to_mine()
            if slot < 0:
                return False
            self.mining_slot = slot
            self.mining_id = q.rec_id[slot]
            n = q.length[slot]
            rec = q.rec[slot]
            # the record's last byte is its pow_bits (shared.protocol WITNESS_RECORD_FMT)
            miner.start(memoryview(rec)[:n], rec[n - 1])
        he = self.hash_est_us
        k = _SLICE_HASHES
        if he < 0:
            k = 1
            he = 0
        elif he > 0 and avail < k * he:
            k = avail // he
        t0 = clk.ticks()
        found = miner.step(k)
        cost = tdiff(clk.ticks(), t0)
        h = self.hashes + k
        self.hashes = h if h < MASK else MASK
        # the estimate follows a rise at once and decays slowly (1/16 per slice)
        self.hash_est_us = _follow(he, (cost + k - 1) // k, 4)
        if found:
            q.mined(slot, miner.nonce_lo16, miner.nonce_hi16)
            self.records_mined = (self.records_mined + 1) & _SAT
            self.mining_slot = -1
        elif miner.exhausted:
            q.drop(slot)
            self.mining_slot = -1
        return True

    def _housekeeping(self):
        """Once per idle, before anything that can wait: the serial link's buffered frames
        (written only as far as the port takes them without blocking), the persisted latch
        (a file write only after it changed), the Pico W's Wi-Fi (a check a second)."""
        if self._pumps:               # (a getattr of a method makes a bound method: heap)
            self.link.pump()
        if self.latch is not None:
            self.latch.service()
        if self._wifi:
            w = self.hw.wifi
            if w is not None:
                w.service(self.now_ms)

    def _send_due(self):
        # called every idle: a bytecode frame this small is on the C stack (a frame over 11
        # words comes from the heap: see idle()); the send, rare, in a function of its own
        slot = self.queue.due(self.now_ms)
        if slot < 0:
            return False
        self._send_witness(slot)
        return True

    def _send_witness(self, slot):
        q = self.queue
        f = struct.unpack_from(WITNESS_RECORD_FMT, q.rec[slot], 0)
        nonce = q.nonce_lo[slot] | (q.nonce_hi[slot] << 16)
        tm = self.time
        self.link.send(self.enc.witness(tm.era, tm.off, f[2], f[3], f[4], f[5], f[6], f[7],
                                        f[8], f[9], nonce))
        q.sent(slot, self.now_ms)

    # ------------------------------------------------------------------ frames
    def send_hello(self):
        m = self.m
        tm = self.time
        lt = self.latch
        flags = 0
        if self.quarantined:
            flags = C.BOOT_LATCHED | (C.BOOT_RESTORED if lt is not None and lt.restored else 0)
        lim = getattr(self.hw, "limits", None) or {}
        v = FW_VERSION
        enc = self.enc
        a = enc.auth
        hs = self.host.hs if self.host is not None else None   # device/session.py
        if hs is not None:
            enc.auth = hs.hello_auth(self) or a    # the device key while a handshake is pending
        self.link.send(enc.hello(tm.era, tm.off, self.hw.board_id, v[0], v[1], v[2],
                                 self.capabilities(), self.hw.f_s, self.deadline.period_us,
                                 m.phase_step(), m.lag_samples(), self.hw.adc_bits,
                                 m.sum_shift(), self.s.pow_bits, self.s.telemetry_every,
                                 m.max_samples(), lim.get("period_min_us", 500),
                                 lt.cause if lt is not None else 0, flags,
                                 m.decim, m.counts_per_unit_q4(),
                                 hs.nonce if hs is not None else b""))
        enc.auth = a

    def capabilities(self):
        c = C.CAP_POW | C.CAP_BATCH | C.CAP_TIME_SYNC | C.CAP_MODEL | C.CAP_PWM | C.CAP_ADC
        if self.enc.auth is not None:
            c |= C.CAP_AUTH
        if getattr(self.link, "cobs", False):
            c |= C.CAP_SERIAL
        elif self.link.name == "udp":
            c |= C.CAP_UDP
        if getattr(self.hw, "has_wdt", False):
            c |= C.CAP_WDT
        if getattr(self.hw, "dual_core", False):
            c |= C.CAP_DUAL_CORE
        return c

    def send_heartbeat(self):
        tm = self.time
        lt = self.lateness
        h = self.host
        # the last heap check's figure (idle time: the check walks the heap)
        free = self.heap_free
        self.link.send(self.enc.heartbeat(
            tm.era, tm.off, self.beat & MASK, lt.percentile(50), lt.percentile(99), lt.max_us,
            free, self.queue.pending(),
            h.rx_ok if h else 0, h.rx_crc if h else 0, h.rx_cobs if h else 0,
            h.rx_auth if h else 0, h.rx_replay if h else 0, h.rx_other if h else 0,
            self.queue.dropped + self.link.send_errors, self.samples_lost()))

    def samples_lost(self):
        """Samples the sampler lost since boot (ring overruns + missed instants), < 2^30."""
        return self.hw.sampler.lost()

    # ------------------------------------------------------------------ run / report
    def run(self, beats):
        """Run ``beats`` beats (0 = forever).  An exception escaping the beat (or the idle
        work) drives the outputs safe, reports and resets through the watchdog
        (device/faults.py); returns 0, or faults.EXIT_CRASH where no watchdog can reset."""
        try:
            if self.deadline is None:
                self.start()
            i = 0
            every = self.s.alloc_every
            ex = getattr(self.hw, "exhausted", None)
            while beats == 0 or i < beats:
                self.idle()
                if every and _HAS_MEM and self.beat > _WARMUP and self.beat % every == 0:
                    self.measured_step()
                else:
                    self.step()
                if ex is not None and ex():
                    break
                i += 1
            if self.sealed:
                self.sealed = False
                self.link.send(self.enc.batch_frame())
            if self.tel_due:           # the last beat's record (idle sends it) before returning
                self._send_telemetry()
            if self.sealed:
                self.sealed = False
                self.link.send(self.enc.batch_frame())
        except Exception as e:     # not KeyboardInterrupt / SystemExit (BaseException)
            from device.faults import on_crash
            return on_crash(self, e)
        return 0

    def measured_step(self):
        """step() with the bytes it allocated counted (gc.mem_alloc() walks the heap's
        allocation table: milliseconds on a Pico, so it is only done every alloc_every beats)."""
        a0 = gc.mem_alloc()
        self.step()
        d = gc.mem_alloc() - a0
        if d < 0:
            if self.gc_in_beat < _SAT:
                self.gc_in_beat += 1
        elif self.alloc_beats < _SAT and self.alloc_total < _SAT - d:
            self.alloc_total += d
            self.alloc_beats += 1
            if d > self.alloc_max:
                self.alloc_max = d
