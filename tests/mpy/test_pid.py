# Fixed-point PID (device/pid.py). Runs under pytest and tests/mpy_runner.py (MicroPython).
import sys
import gc

from device.pid import PID, genomic_pid, to_q16, from_q16

MPY = sys.implementation.name == "micropython"
ONE = 65536


def _raises(fn, *a, **kw):
    try:
        fn(*a, **kw)
    except ValueError as e:
        return str(e)
    raise AssertionError("no ValueError")


def test_proportional_and_gain_resolution():
    p = PID(2.0, 0.0, 0.0, setpoint=0.5, sample_time=0.01)
    assert p.update(to_q16(0.4)) == 2 * (to_q16(0.5) - to_q16(0.4))
    for k in (0.6, 0.05, 1.2345, 37.5, -0.3, 1e-3, 4095.0):
        q = PID(k, 0.0, 0.0, output_limits=(-32, 32))
        e = to_q16(0.001) if abs(k) > 100 else to_q16(0.25)
        got = q.update_error(e)
        want = k * e
        assert abs(got - want) <= 1 + abs(want) * 2.5e-4, (k, got, want)


def test_matches_float_pid_without_saturation():
    kp, ki, kd, dt = 0.8, 2.0, 0.01, 0.005
    p = PID(kp, ki, kd, setpoint=0.6, sample_time=dt, output_limits=(-8, 8))
    integ = 0.0
    prev = None
    m = 0.1
    worst = 0.0
    for i in range(400):
        m = 0.1 + 0.5 * ((i * 37) % 101) / 101.0
        mq = to_q16(m)
        out = from_q16(p.update(mq))
        e = 0.6 - from_q16(mq)
        integ += ki * e * dt
        d = 0.0 if prev is None else -kd * (from_q16(mq) - prev) / dt
        prev = from_q16(mq)
        worst = max(worst, abs(out - (kp * e + integ + d)))
    assert worst < 2e-3, worst


def test_anti_windup_integral_bounded_by_output_limits():
    p = PID(0.0, 1.0, 0.0, setpoint=1.0, sample_time=0.01, output_limits=(-1.0, 1.0))
    for _ in range(1000):                       # +1 error for 10 s: a naive integral reaches 10
        p.update(0)
    assert p.output == ONE and p.i_term == ONE
    p.set_setpoint(0.0)
    out = p.update(ONE)                         # error -1: leaves saturation at once
    assert abs(out - to_q16(0.99)) <= 2, out


def test_integral_limits_on_error_integral():
    p = PID(0.0, 0.5, 0.0, setpoint=1.0, sample_time=0.01, output_limits=(-10, 10),
            integral_limits=(-1.0, 1.0))
    for _ in range(500):                        # integral of e would be 5: clamped to 1
        p.update(0)
    assert abs(p.i_term - to_q16(0.5)) <= 1, p.i_term


def test_epsilon_reset():
    p = PID(0.0, 1.0, 0.0, sample_time=0.1, output_limits=(-5, 5), epsilon=1e-4)
    for _ in range(10):
        p.update_error(to_q16(0.5))
    assert abs(p.i_term - to_q16(0.5)) <= 2
    p.update_error(6)                           # 6/65536 = 9.2e-5 < 1e-4: integral reset
    assert p.i_acc == 0 and p.i_term == 0
    p.update_error(to_q16(0.5))
    p.update_error(7)                           # 1.07e-4: not reset
    assert p.i_term > 0


def test_genomic_pid_seed_numbers_and_delta_o_clamp():
    g = genomic_pid(0.004211)
    dT = -1035                                  # round(-0.015789 * 65536)
    out = g.update_error(dT)
    # output = Kp*e + Ki*e*dt (first step, no derivative): -0.009474 - 0.0000066
    assert abs(out - (0.6 * dT + 0.1 * dT * 0.004211)) <= 1, out
    assert -out > 0                             # dO = -output raises O while T_Lambda < 0.02
    g.reset()
    assert g.update_error(to_q16(-0.5)) == to_q16(0.05) * -1   # output limited: dO = +0.05
    g.reset()
    assert g.update_error(to_q16(0.5)) == to_q16(0.05)          # dO = -0.05
    # integral of e clamped to [-1, 1]: Ki * 1 = 0.1 > 0.05, so the output limit binds
    g.reset()
    for _ in range(3000):
        g.update_error(to_q16(0.9))
    assert g.i_term == to_q16(0.05)


def test_derivative_on_measurement_no_kick():
    p = PID(0.0, 0.0, 0.1, setpoint=0.2, sample_time=0.01, output_limits=(-10, 10))
    p.update(to_q16(0.3))
    p.set_setpoint(0.9)                         # setpoint step, measurement constant
    assert p.update(to_q16(0.3)) == 0 and p.d_term == 0
    q = PID(0.0, 0.0, 0.1, setpoint=0.2, sample_time=0.01, output_limits=(-10, 10),
            d_on_measurement=False)
    q.update(to_q16(0.3))
    q.set_setpoint(0.9)
    assert abs(q.update(to_q16(0.3)) - to_q16(0.1 * 0.7 / 0.01)) <= 8   # the kick
    # a measurement ramp of ~+0.01 per 10 ms step: d = -Kd * dm/dt ~= -0.1
    p.update(to_q16(0.31))
    dm = to_q16(0.31) - to_q16(0.3)
    assert abs(p.d_term - (-0.1 * dm / 0.01)) <= 2, p.d_term


def test_output_limits_clamp():
    p = PID(10.0, 0.0, 0.0, sample_time=0.01, output_limits=(0.0, 1.0))
    assert p.update_error(to_q16(0.5)) == ONE
    assert p.update_error(to_q16(-0.5)) == 0
    p.set_output_limits(-0.25, 0.25)
    assert p.update_error(to_q16(0.5)) == to_q16(0.25)


def test_sample_time_gate():
    p = PID(1.0, 0.0, 0.0, setpoint=0.5, sample_time=0.01)
    assert p.sample_us == 10000
    assert p.tick(0, 3000) == 0 and p.tick(0, 3000) == 0 and p.tick(0, 3000) == 0
    assert p.tick(0, 3000) == to_q16(0.5)       # 12 ms >= 10 ms: one step, 2 ms carried
    p.set_setpoint(0.25)
    assert p.tick(0, 7000) == to_q16(0.5)       # 9 ms: not yet
    assert p.tick(0, 1000) == to_q16(0.25)
    p.tick(0, 35000)                            # 3.5 periods late: one step, backlog dropped
    assert p.missed == 1


def test_bad_config_rejected_with_rule():
    assert "4096" in _raises(PID, 5000.0, 0, 0)
    assert "lo < hi" in _raises(PID, 1, 0, 0, output_limits=(1, -1))
    _raises(PID, 1, 0, 0, output_limits=(-40, 1))
    _raises(PID, 1, 0, 0, sample_time=0)
    _raises(PID, 1, 0, 0, integral_limits=(1, 1))
    _raises(PID, 1, 0, 0, epsilon=-1)
    _raises(PID, 0.0, 0.0, 50.0, sample_time=0.001)     # Kd/dt = 50000 is too large
    p = PID(1.0, 0.5, 0.01, sample_time=0.01)
    p.check_gains(2.0, 1.0, 0.02)
    assert "Kd/sample_time" in _raises(p.check_gains, 1.0, 0.0, 41.0)
    _raises(p.check_gains, 1.0, 0.0, 0.01, sample_time=0.0)
    assert "Kd/sample_time" in _raises(p.set_gains, 1.0, 0.0, 41.0)
    assert p.kp == 1.0 and p.kd == 0.01                 # unchanged after the refusal
    _raises(p.set_sample_time, 1e-6)                    # Kd/dt would be 10000
    assert p.sample_time == 0.01 and p.sample_us == 10000


def test_extreme_values_stay_small_ints():
    p = PID(4095.0, 1000.0, 0.0, sample_time=0.01, output_limits=(-32, 32))
    for e in (ONE * 4, -ONE * 4, ONE, -ONE, 1, -1):
        o = p.update_error(e)
        assert -(1 << 29) < p.i_acc < (1 << 29) and -(1 << 30) < o < (1 << 30)


def test_zero_alloc_per_step():
    if not MPY:
        return
    p = PID(0.6, 0.1, 0.05, setpoint=0.5, sample_time=0.004, output_limits=(0, 1))
    g = genomic_pid(0.004211)
    for i in range(10):
        p.update(i * 100)
        g.update_error(-1035)
        p.tick(i, 1500)
    gc.collect()
    gc.disable()
    try:
        a0 = gc.mem_alloc()
        for i in range(500):
            p.update(i * 100)
            g.update_error(-1035)
            p.tick(i, 1500)
        a1 = gc.mem_alloc()
    finally:
        gc.enable()
    assert a1 - a0 == 0, a1 - a0


def test_starting_output_and_reset():
    p = PID(2.0, 8.0, 0.0, setpoint=0.5, sample_time=0.0042, output_limits=(0.0, 1.0),
            starting_output=0.3)
    assert p.output == to_q16(0.3) and p.i_acc == to_q16(0.3) << 8
    # at the setpoint the output stays at the starting output (integral = 0.3)
    assert abs(p.update(to_q16(0.5)) - to_q16(0.3)) <= 1
    p.update(to_q16(0.1))
    p.reset()
    assert p.output == to_q16(0.3)
    q = PID(1.0, 1.0, 0.0, output_limits=(0.0, 1.0), starting_output=2.0)   # clamped
    assert q.output == ONE


def test_manual_mode_and_bumpless_transfer_back_to_auto():
    p = PID(2.0, 8.0, 0.5, setpoint=0.5, sample_time=0.0042, output_limits=(0.0, 1.0))
    for i in range(50):
        p.update(to_q16(0.45))
    p.set_auto_mode(False)
    assert not p.auto
    p.output = to_q16(0.8)                      # the operator's output
    meas = to_q16(0.3)
    for i in range(20):
        assert p.update(meas) == to_q16(0.8)    # manual: no stepping, input tracked
    p.set_auto_mode(True)                       # bumpless from 0.8 at this measurement
    out = p.update(meas)
    # one integration step of Ki * e * dt = 8 * 0.2 * 0.0042 = 0.00672, nothing more
    assert abs(out - to_q16(0.8)) <= to_q16(0.0068) + 2, from_q16(out)
    # simple-pid's transfer (integral = last output) would jump by the P term Kp*e = 0.4
    assert abs(out - to_q16(0.8)) < to_q16(0.4) // 10


def test_bumpless_resume_from_a_held_output():
    """What CLEAR does: the PID continues from the safe duty it held."""
    p = PID(2.0, 8.0, 0.0, setpoint=0.5, sample_time=0.0042, output_limits=(0.0, 1.0))
    for i in range(100):
        p.update(to_q16(0.2))
    assert p.output == ONE                      # saturated high before QUARANTINE
    p.bumpless(0, to_q16(0.2))                  # held at duty 0 (the safe value)
    outs = [p.update(to_q16(0.2)) for _ in range(80)]
    # the P term alone is 0.6 and the anti-windup bounds (the output limits, 0..1) cannot
    # hold an integral of -0.6: the gap fades out instead of jumping (1/16 per step)
    assert outs[0] <= to_q16(0.6) // 16 + to_q16(0.011), from_q16(outs[0])
    for a, b in zip(outs, outs[1:]):
        assert b - a <= to_q16(0.6) // 16 + to_q16(0.011), (from_q16(a), from_q16(b))
    assert outs[-1] == ONE                      # and it gets where the PID wants it


def test_proportional_on_measurement_no_setpoint_kick():
    pe = PID(2.0, 0.0, 0.0, setpoint=0.5, sample_time=0.01, output_limits=(-4, 4))
    pm = PID(2.0, 0.0, 0.0, setpoint=0.5, sample_time=0.01, output_limits=(-4, 4),
             p_on_measurement=True)
    m = to_q16(0.5)
    pe.update(m)
    pm.update(m)
    pe.set_setpoint(0.8)
    pm.set_setpoint(0.8)
    assert pe.update(m) == 2 * to_q16(0.3)     # P on error jumps with the setpoint
    assert pm.update(m) == 0                   # P on measurement does not
    # P on measurement acts on measurement changes: -Kp * d(meas)
    assert abs(pm.update(to_q16(0.6)) - (-2 * to_q16(0.1))) <= 1
    msg = _raises(PID, 1.0, 0.0, 0.0, d_on_measurement=False, p_on_measurement=True)
    assert "measurement" in msg


def test_configure_gains_and_sample_time_together():
    p = PID(0.6, 0.1, 0.05, sample_time=0.0042)
    # Kd = 20 at a 4.2 ms beat: Kd/T = 4762 does not fit, refused before anything changes
    msg = _raises(p.configure, 0.6, 0.1, 20.0, 0.0042)
    assert "Kd" in msg and p.kd == 0.05
    # each alone would be refused, together they fit
    p.configure(0.6, 0.1, 20.0, 0.01)
    assert p.kd == 20.0 and p.sample_time == 0.01


def test_manual_and_pom_steps_allocate_nothing():
    if not MPY:
        return
    p = PID(2.0, 8.0, 0.1, setpoint=0.5, sample_time=0.0042, output_limits=(0.0, 1.0),
            p_on_measurement=True)
    p.update(1000)
    gc.collect()
    a = gc.mem_alloc()
    for i in range(200):
        p.update(30000 + i)
    p.set_auto_mode(False)
    gc.collect()
    b = gc.mem_alloc()
    for i in range(200):
        p.update(30000 + i)
    assert gc.mem_alloc() - b == 0
    assert b - a < 64     # set_auto_mode itself may allocate nothing but a bound call
