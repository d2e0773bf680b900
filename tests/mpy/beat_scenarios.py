# Beat scenarios (the bodies of tests/mpy/test_beat.py). Under MicroPython each runs in a fresh
# process with a 192K heap (the firmware alone uses most of it), started by test_beat.py:
#   micropython -X heapsize=192K tests/mpy/beat_scenarios.py ROOT NAME   -> exit status 0 = pass
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
from shared import protocol as P
from tests.mpy.beat_helpers import make_beat, host_frame, FakeLink, SlowMiner

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
    # the emulator sampled at 1 kHz across the wrap
    assert abs(b.hw.sampler.taken - 4215) <= 10, b.hw.sampler.taken


def sc_telemetry_every_beat_and_hello_first():
    b, clk, link = make_beat(["--pow-bits", "0"])
    link.keep_telemetry = True
    b.run(20)
    fr = link.frames()
    assert fr[0].type == P.HELLO
    h = fr[0].fields
    assert h["board"] == "emulator" and h["fs_hz"] == 1000 and h["period_us"] == 4210
    assert h["lag_samples"] == 10 and h["phase_step"] == b.m.em.phase_step
    tel = [f for f in fr if f.type == P.TELEMETRY]
    assert len(tel) == 20
    assert [f.fields["beat"] for f in tel] == list(range(20))
    assert sum(f.fields["n_samples"] for f in tel) == b.hw.sampler.taken


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
    assert sum(r["n_samples"] for r in recs) == b.hw.sampler.taken


def sc_quarantine_latched_until_clear():
    b, clk, link = make_beat(["--pow-bits", "4"])
    b.run(10)
    b.m.arb.risk_anoms = 200                      # threat ~ 1: QUARANTINE
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


def sc_witness_resent_after_link_drop_until_acked():
    b, clk, link = make_beat(["--pow-bits", "6"])
    b.s.link_timeout_ms = 200
    link.inbox.append(host_frame(b, P.TIME_SYNC, {"mode": 0, "host_t1_us": 5, "rx_era": 0,
                                                  "rx_off": 0}, seq=1))
    b.run(5)
    assert b.link_up
    wid = b.witness(P.WITNESS_DECISION, P.DECISION_ALERT, 123)
    b.run(30)
    sent = [f for f in link.frames(P.WITNESS) if f.fields["witness_id"] == wid]
    assert len(sent) == 1
    f = sent[0].fields
    from shared.pow import verify
    rec = P.witness_record(b.enc.device_id, b.enc.boot_id, f)
    assert f["pow_bits"] == 6 and verify(rec, f["nonce"], 6)
    # the link drops: no host frames for > link_timeout
    link.clear()
    b.run(60)                                     # ~250 ms
    assert not b.link_up
    n_before = len([1 for x in link.frames(P.WITNESS) if x.fields["witness_id"] == wid])
    # the host comes back: the record is resent at once (plus a HELLO)
    link.inbox.append(host_frame(b, P.TIME_SYNC, {"mode": 0, "host_t1_us": 6, "rx_era": 0,
                                                  "rx_off": 0}, seq=2))
    b.run(4)                                      # one (re)send per idle: boot record too
    assert b.link_up
    again = [x for x in link.frames(P.WITNESS) if x.fields["witness_id"] == wid]
    assert len(again) == n_before + 1, (len(again), n_before)
    assert link.frames(P.HELLO)
    # ACK: no more resends
    link.inbox.append(host_frame(b, P.ACK, {"acked_type": P.WITNESS, "status": 0, "ref": wid},
                                 seq=3))
    b.run(2)
    link.clear()
    b.run(600)                                    # 2.5 s: past any resend timeout
    assert not [x for x in link.frames(P.WITNESS) if x.fields["witness_id"] == wid]
    assert b.queue.acked >= 1


def sc_mining_never_makes_a_beat_late():
    # 20-bit stamps; every hash costs 40 us of virtual time, every clock read 2 us
    def run(bits):
        from device.clock import VirtualClock
        link = FakeLink()
        link.keep = False
        b, clk, _ = make_beat(["--pow-bits", str(bits)], link=link, cost_us=2)
        b.m.miner = SlowMiner(clk, 40)
        b.run(400)
        return b
    plain_max = run(0).lateness.max_us
    gc.collect()                                  # the first beat's heap back (192K is tight)
    mined = run(20)
    assert mined.hashes > 10000, mined.hashes     # it really mined in the idle time
    assert mined.lateness.max_us <= plain_max + 2, (mined.lateness.max_us, plain_max)
    assert mined.skipped == 0 and mined.lateness.percentile(99) <= 10


def sc_config_changes_P_at_run_time_and_rejects_kP_le_1():
    b, clk, link = make_beat(["--pow-bits", "0"])
    b.run(5)
    assert b.deadline.period_us == 4210
    pairs = [[18, 10 * 65536]]                    # pulse_p = 10
    link.inbox.append(host_frame(b, P.CONFIG, {"config_version": 3, "pairs": pairs}))
    b.run(3)
    ack = link.frames(P.ACK)[-1].fields
    assert ack["acked_type"] == P.CONFIG and ack["status"] == P.ACK_OK and ack["ref"] == 3
    # T_Lambda(4, 10) = 0.004 / (1 - 1/40) = 4102.564 us
    assert b.deadline.period_us == 4102
    assert link.frames(P.HELLO)[-1].fields["period_us"] == 4102
    assert any(f.fields["kind"] == P.WITNESS_CONFIG_APPLIED for f in link.frames(P.WITNESS))
    # k * P <= 1: rejected, nothing changes
    pairs = [[17, 65536 // 8], [18, 8 * 65536]]   # k = 0.125, P = 8: k*P = 1
    link.inbox.append(host_frame(b, P.CONFIG, {"config_version": 4, "pairs": pairs}, seq=1))
    link.clear()
    b.run(3)
    ack = link.frames(P.ACK)[-1].fields
    assert ack["status"] == P.ACK_BAD_VALUE and ack["ref"] == 4
    err = link.frames(P.ERROR)[-1].fields
    assert err["code"] == P.ERR_CONFIG_VALUE and "k*P" in err["text"]
    assert b.deadline.period_us == 4102 and b.m.pulse.P == 10


def sc_config_other_keys_and_unknown_key():
    b, clk, link = make_beat(["--pow-bits", "0"])
    b.run(2)
    pairs = [[1, 3], [3, int(0.5 * 65536)], [2, 12], [16, 65536 // 4], [8, 65536 // 4],
             [13, 10]]
    link.inbox.append(host_frame(b, P.CONFIG, {"config_version": 1, "pairs": pairs}))
    b.run(2)
    assert link.frames(P.ACK)[-1].fields["status"] == P.ACK_OK
    assert b.s.telemetry_every == 3 and b.s.pow_bits == 12
    assert b.m.em.threshold_q16 == 32768 and b.hw.pwm.safe_duty == 16384
    assert b.m.act.setpoint == 16384
    link.inbox.append(host_frame(b, P.CONFIG, {"config_version": 2, "pairs": [[13, 20]]},
                                 seq=1))
    link.inbox.append(host_frame(b, P.CONFIG, {"config_version": 5, "pairs": [[99, 1]]},
                                 seq=2))
    link.clear()
    b.run(2)
    st = [a.fields["status"] for a in link.frames(P.ACK)]
    assert st == [P.ACK_UNSUPPORTED, P.ACK_UNSUPPORTED]
    assert b.m.em.lag == 10


def sc_time_sync_reply_and_model():
    b, clk, link = make_beat(["--pow-bits", "0"])
    b.run(3)
    link.inbox.append(host_frame(b, P.TIME_SYNC, {"mode": 0, "host_t1_us": 123456789012,
                                                  "rx_era": 0, "rx_off": 0}))
    link.inbox.append(host_frame(b, P.MODEL, {"model_version": 7, "w": 0.5, "b": -1.0}, seq=1))
    b.run(2)
    r = link.frames(P.TIME_SYNC)[-1]
    assert r.fields["mode"] == P.SYNC_REPLY and r.fields["host_t1_us"] == 123456789012
    assert r.time_off >= r.fields["rx_off"]
    assert abs(b.m.arb.w - 0.5) < 1e-6
    ack = link.frames(P.ACK)[-1].fields
    assert ack["acked_type"] == P.MODEL and ack["ref"] == 7


def sc_bad_host_frames_counted_not_raised():
    b, clk, link = make_beat(["--pow-bits", "0"])
    b.run(2)
    good = host_frame(b, P.CLEAR, {"reason": 1, "ref": 1})
    bad_crc = bytearray(good)
    bad_crc[-1] ^= 0xFF
    other_boot = P.encode(P.CLEAR, {"reason": 1, "ref": 1}, 0, b.enc.boot_id ^ 0x55, 0)
    link.inbox.extend([bytes(bad_crc), b"\x01\x02", other_boot])
    link.clear()
    b.run(3)
    h = b.host
    assert h.rx_crc == 1 and h.rx_other == 1 and h.rx_stale_boot == 1
    assert link.frames(P.HELLO)                   # the host missed our boot id: HELLO again


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
