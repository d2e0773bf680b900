# CONFIG beat scenarios (bodies of tests in tests/mpy/test_beat.py), in their own file so the
# other scenarios do not compile them into their 192K heap:
#   micropython -X heapsize=256K tests/mpy/beat_scenarios_config.py ROOT NAME  -> exit status 0 = pass
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

from tests.mpy.beat_helpers import make_beat, host_frame, P

MPY = sys.implementation.name == "micropython"


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
    assert b.run(3) == 0, b.crashed
    ack = link.frames(P.ACK)[-1].fields
    assert ack["status"] == P.ACK_BAD_VALUE and ack["ref"] == 4
    err = link.frames(P.ERROR)[-1].fields
    assert err["code"] == P.ERR_CONFIG_VALUE and err["text"] == "18 pulse_p"   # id + name
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
    assert b.m.em.lag == 10 and not b.m.auto_lag        # a fixed KAIROS lag
    # lag_samples at run time: a new KAIROS stream, announced by HELLO; 0 learns it again;
    # omega is boot-time only; an unknown key is unsupported; a lag past the learner's reach
    # (0.5 s of KAIROS samples) is a bad value
    for seq, pairs in ((1, [[13, 20]]), (2, [[99, 1]]), (3, [[14, 65536]]), (4, [[13, 900]])):
        link.inbox.append(host_frame(b, P.CONFIG, {"config_version": 1 + seq, "pairs": pairs},
                                     seq=seq))
    link.clear()
    b.run(4)
    st = [a.fields["status"] for a in link.frames(P.ACK)]
    assert st == [P.ACK_OK, P.ACK_UNSUPPORTED, P.ACK_UNSUPPORTED, P.ACK_BAD_VALUE], st
    assert b.m.em.lag == 20
    hello = link.frames(P.HELLO)
    assert len(hello) == 1 and hello[0].fields["lag_samples"] == 20
    link.inbox.append(host_frame(b, P.CONFIG, {"config_version": 6, "pairs": [[13, 0]]},
                                 seq=5))
    b.run(2)
    assert link.frames(P.ACK)[-1].fields["status"] == P.ACK_OK
    assert b.m.auto_lag and b.m.learner is not None and not b.m.locked


def _q(x):
    return int(round(x * 65536))


def _config(b, link, version, pairs, seq):
    link.clear()
    link.inbox.append(host_frame(b, P.CONFIG, {"config_version": version, "pairs": pairs},
                                 seq=seq))
    assert b.run(2) == 0, b.crashed                 # never an exception out of the beat
    kinds = [d[1] for d in link.sent if d[1] in (P.ACK, P.ERROR)]
    ack = link.frames(P.ACK)[-1].fields
    assert ack["acked_type"] == P.CONFIG and ack["ref"] == version
    err = link.frames(P.ERROR)
    return ack["status"], (err[-1].fields if err else None), kinds


def sc_config_crashers_refused_whole_and_nothing_applied():
    """The CONFIGs that crash-looped the landed firmware (issue 12): refused as a whole before
    any key is applied, ERROR naming the key first, ACK BAD_VALUE; the device keeps running."""
    b, clk, link = make_beat(["--pow-bits", "0"])
    b.run(3)
    before = (b.m.arb.alert_q16, b.m.arb.quarantine_q16, b.m.arb.pid.kd, b.m.pulse.k,
              b.m.pulse.P, b.s.telemetry_every, b.deadline.period_us)
    cases = [
        ([[1, 4], [9, _q(0.9)]], "9 alert_threshol"),          # above quarantine 0.85
        ([[1, 4], [7, _q(20.0)]], "7 pid_kd"),                 # Kd/T = 4750 >= 4096
        ([[1, 4], [17, _q(-2.0)], [18, _q(-3.0)]], "17 pulse_k"),   # k*P = 6 > 1, signs wrong
        ([[1, 4], [4, 100000]], "4 period_us"),                 # 100 samples a beat > 31
        ([[1, 4], [10, _q(0.5)]], "10 quarantine_th"),         # below alert 0.6
    ]
    seq = 0
    for pairs, text in cases:
        status, err, kinds = _config(b, link, 10 + seq, pairs, seq)
        seq += 1
        assert status == P.ACK_BAD_VALUE, (text, status)
        assert err["code"] == P.ERR_CONFIG_VALUE and err["text"] == text, (text, err)
        assert err["ref"] == 10 + seq - 1
        assert kinds[:2] == [P.ERROR, P.ACK], kinds         # ERROR first: the host keys on it
        now = (b.m.arb.alert_q16, b.m.arb.quarantine_q16, b.m.arb.pid.kd, b.m.pulse.k,
               b.m.pulse.P, b.s.telemetry_every, b.deadline.period_us)
        assert now == before, (text, now, before)            # telemetry_every=4 not applied
    assert b.host.config_rejected == len(cases) and b.host.configs == 0
    # a CONFIG that is right as a whole (alert and quarantine moved together) is applied
    status, err, kinds = _config(b, link, 30, [[9, _q(0.9)], [10, _q(0.95)], [1, 4]], seq)
    assert status == P.ACK_OK and err is None
    assert b.m.arb.alert_q16 == _q(0.9) and b.m.arb.quarantine_q16 == _q(0.95)
    assert b.s.telemetry_every == 4


def sc_config_period_within_board_limits():
    b, clk, link = make_beat(["--pow-bits", "0"])
    b.run(2)
    # f_s 12 kHz and spb_max 255: a beat of at most 254 / 12000 s = 21.166 ms
    spb = b.hw.limits["spb_max"]
    pmax = (spb - 1) * 1000000 // b.hw.f_s
    st, err, _ = _config(b, link, 1, [[4, pmax]], 0)
    assert st == P.ACK_OK and b.deadline.period_us == pmax
    assert b.hw.sampler.lost() == 0
    b.run(20)
    assert b.hw.sampler.lost() == 0                       # 254 samples a beat: none dropped
    st, err, _ = _config(b, link, 2, [[4, pmax + 200]], 1)
    assert st == P.ACK_BAD_VALUE and err["text"] == "4 period_us"
    assert b.deadline.period_us == pmax
    st, err, _ = _config(b, link, 3, [[4, 0]], 2)          # follow T_Lambda again
    assert st == P.ACK_OK and b.deadline.period_us == 4210
    # T_Lambda(4, 0.26) = 104 ms: refused through pulse_p, the key that made it long
    st, err, _ = _config(b, link, 4, [[18, _q(0.26)]], 3)
    assert st == P.ACK_BAD_VALUE and err["text"] == "18 pulse_p", err
    assert b.deadline.period_us == 4210


def sc_config_actuator_pid_keys_and_manual_mode():
    b, clk, link = make_beat(["--pow-bits", "0"])
    b.run(5)
    g = (b.m.arb.pid.kp, b.m.arb.pid.ki, b.m.arb.pid.kd)
    st, err, _ = _config(b, link, 1, [[19, _q(1.5)], [20, _q(4.0)], [21, _q(0.01)]], 0)
    assert st == P.ACK_OK
    a = b.m.act
    assert abs(a.kp - 1.5) < 1e-4 and abs(a.ki - 4.0) < 1e-4 and abs(a.kd - 0.01) < 1e-4
    assert (b.m.arb.pid.kp, b.m.arb.pid.ki, b.m.arb.pid.kd) == g      # the genomic PID's own
    st, err, _ = _config(b, link, 2, [[5, _q(0.5)]], 1)               # pid_kp: genomic only
    assert st == P.ACK_OK and abs(b.m.arb.pid.kp - 0.5) < 1e-4 and abs(a.kp - 1.5) < 1e-4
    # manual: the output is act_manual
    st, err, _ = _config(b, link, 3, [[23, _q(0.25)], [22, 1], [19, 0], [21, 0]], 2)
    assert st == P.ACK_OK and not a.auto
    b.run(5)
    assert abs(b.hw.pwm.duty - 16384) <= 1
    # back to automatic (a pure I controller here, so only the transfer could jump): the
    # output continues from 0.25 and moves by at most Ki * |e| * T = 4 * 1 * 4.2 ms a beat
    st, err, _ = _config(b, link, 4, [[22, 0]], 3)                    # runs 2 beats
    assert a.auto and abs(b.hw.pwm.duty - 16384) <= 2 * 1102 + 2, b.hw.pwm.duty
    st, err, _ = _config(b, link, 5, [[24, 1]], 4)                    # P on measurement
    assert st == P.ACK_OK and a.p_on_measurement
    # a gain that does not fit names its key
    st, err, _ = _config(b, link, 6, [[21, _q(50.0)]], 5)
    assert st == P.ACK_BAD_VALUE and err["text"] == "21 act_kd"


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
