# Beat scenarios (the bodies of tests/mpy/test_beat.py). Under MicroPython each runs in a fresh
# process with a 192K heap (the firmware alone uses most of it), started by test_beat.py:
#   micropython -X heapsize=256K tests/mpy/beat_scenarios.py ROOT NAME   -> exit status 0 = pass
import gc
import sys
if __name__ == "__main__":
    _root = sys.argv[1]
    for _p in (_root + "/tests/fakes", _root):
        sys.path.insert(0, _p)
    import os
    _fw = os.getenv("BECOMINGONE_FIRMWARE")
    if _fw:
        # the firmware precompiled with mpy-cross (tools/test.sh builds it), as on a board:
        # loading .mpy files needs no compiler heap, so no reserve either
        sys.path.insert(0, _fw)
        _reserve = None
    else:
        _reserve = bytearray(8 * 1024)   # one large hole for the tables (see device/main.py)

from device.clock import MASK
from tests.mpy.beat_helpers import make_beat, host_frame, FakeLink, SlowMiner, threaten, P

MPY = sys.implementation.name == "micropython"


def sc_steady_beat_allocates_nothing():
    if not MPY:
        return
    link = FakeLink()
    link.keep = False
    b, clk, _ = make_beat(["--pow-bits", "0"], link=link)
    b.run(300)
    assert b.alloc_beats > 250
    assert b.alloc_total == 0, (b.alloc_total, b.alloc_max)
    gc.collect()
    a = gc.mem_alloc()
    for _ in range(50):
        b.step()
    assert gc.mem_alloc() - a == 0


def sc_ticks_wrap_and_deadline_schedule():
    # start 0.5 s before the 2^30 tick wrap; 1000 beats (4.2 s) cross it
    start = MASK - 500000
    b, clk, link = make_beat(["--pow-bits", "0"], start=start, cost_us=3)
    link.keep = False
    b.start()
    at0 = b.deadline.at
    b.run(1000)
    assert b.time.era == 0 and b.time.off > 4000000          # device time kept counting
    assert clk.t < start                                       # the tick counter wrapped
    assert b.lateness.max_us <= 12, b.lateness.max_us          # virtual: only clock-read costs
    assert b.skipped == 0
    # deadlines advanced exactly 1000 periods of 4210.526 us
    per_q16 = b.m.period_q16()
    total = (b.deadline.at - at0) & MASK
    assert abs(total - 1000 * per_q16 // 65536) <= 1, total
    # the emulator sampled at f_s across the wrap
    fk = b.hw.f_s // 1000
    assert abs(b.hw.sampler.taken - 4215 * fk) <= 10 * fk, b.hw.sampler.taken


def sc_telemetry_every_beat_and_hello_first():
    b, clk, link = make_beat(["--pow-bits", "0"])
    link.keep_telemetry = True
    b.run(20)
    assert link.sent[0][1] == P.HELLO
    h = P.decode(link.sent[0]).fields
    assert h["board"] == "emulator" and h["fs_hz"] == b.hw.f_s and h["period_us"] == 4210
    assert h["lag_samples"] == b.m.em.lag and h["phase_step"] == b.m.em.phase_step == 0
    assert h["kairos_decim"] == b.m.decim == b.hw.f_s // 250
    assert h["counts_per_unit_q4"] == 16 * 128
    from shared.version import FW_VERSION
    assert (h["fw_major"], h["fw_minor"], h["fw_patch"]) == FW_VERSION
    assert h["spb_max"] == b.hw.limits["spb_max"] and h["period_min_us"] == 500
    assert h["boot_flags"] == 0
    h = None
    beats = []
    total = 0
    for d in link.sent:              # one decoded frame at a time (192K heap)
        if d[1] == P.TELEMETRY:
            f = P.decode(d).fields
            beats.append(f["beat"])
            total += f["n_samples"]
    assert beats == list(range(20))
    assert total == b.hw.sampler.taken // b.m.decim     # KAIROS samples: f_s / M


def sc_telemetry_every_n_sums_partials_and_batches():
    b, clk, link = make_beat(["--pow-bits", "0", "--telemetry-every", "2", "--batch", "3"])
    link.keep_telemetry = True
    b.run(24)
    fr = link.frames(P.TELEMETRY)
    assert len(fr) == 4 and all(f.batch for f in fr)
    recs = []
    for f in fr:
        recs.extend(f.fields["records"])
    assert len(recs) == 12
    assert sum(r["n_samples"] for r in recs) == b.hw.sampler.taken // b.m.decim


def sc_quarantine_latched_until_clear():
    b, clk, link = make_beat(["--pow-bits", "4"])
    threaten(b)                                   # threat ~ 1: QUARANTINE
    b.run(5)
    assert b.quarantined and b.hw.pwm.duty == b.hw.pwm.safe_duty
    b.m.arb.risk_anoms = 0
    b.run(30)                                     # threat back to low: still latched
    assert b.quarantined and b.hw.pwm.duty == b.hw.pwm.safe_duty
    st = P.decode(link.last_telemetry).fields["decision_state"]
    assert st & P.STATE_QUARANTINE_LATCHED and (st & 7) != P.DECISION_QUARANTINE
    wq = [f for f in link.frames(P.WITNESS) if f.fields["decision"] == P.DECISION_QUARANTINE]
    assert len(wq) == 1                           # one QUARANTINE witness per latch
    link.clear()
    link.inbox.append(host_frame(b, P.CLEAR, {"reason": P.CLEAR_OPERATOR, "ref": 9}))
    b.run(3)
    assert not b.quarantined
    acks = link.frames(P.ACK)
    assert any(a.fields["acked_type"] == P.CLEAR and a.fields["status"] == P.ACK_OK
               and a.fields["ref"] == 9 for a in acks)
    b.run(50)
    assert b.hw.pwm.duty != b.hw.pwm.safe_duty    # the PID drives the output again


if __name__ == "__main__":
    from device import runner
    from device.cli import parse_args
    try:
        runner.prepare(parse_args(["--clock", "virtual"]))
    except MemoryError:
        _reserve = None
        gc.collect()
        runner.prepare(parse_args(["--clock", "virtual"]))
    import tests.mpy.beat_helpers  # noqa: F401
    _reserve = None
    gc.collect()
    fn = globals()["sc_" + sys.argv[2]]
    try:
        fn()
    except Exception as e:
        sys.print_exception(e)
        sys.exit(1)
    sys.exit(0)
