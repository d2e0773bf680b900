# T_Lambda pulse (SPEC 4.1). Runs under pytest and tests/mpy_runner.py (MicroPython).
from device.pulse import Pulse, t_lambda, E4


def _raises(fn, *args, **kw):
    try:
        fn(*args, **kw)
    except ValueError as e:
        return str(e)
    raise AssertionError("no ValueError")


def test_seed_validation_numbers():
    t = t_lambda(4, 5, E4, 0.001)
    assert abs(t - 0.004211) < 5e-7, t
    p = Pulse()
    assert p.period_us == 4211
    assert abs(p.dT_s - (-0.015789)) < 5e-7, p.dT_s
    assert p.dT_q16 == -1035        # round(-0.0157894737 * 65536)


def test_kp_at_most_one_rejected_with_values_in_message():
    msg = _raises(t_lambda, 1, 1)
    assert "k*P > 1" in msg and "k=1" in msg and "P=1" in msg, msg
    _raises(t_lambda, 0.5, 1.5)
    _raises(t_lambda, 4, 0.25)
    msg = _raises(t_lambda, -4, -5)      # k*P = 20, but flows and nodes must be positive
    assert "k > 0" in msg, msg


def test_minimum_period():
    # T1 tiny: the period never goes below 1e-6 s
    assert t_lambda(4, 5, E4, 1e-12) == 1e-6
    p = Pulse(T1=1e-12)
    assert p.period_us == 1


def test_p_changes_at_run_time_and_bad_value_leaves_pulse_unchanged():
    p = Pulse()
    p.set_nodes(10)
    assert p.period_us == round(0.004 / (1 - 1 / 40.0) * 1e6)
    _raises(p.set_nodes, 0.25)     # k*P = 1
    assert p.P == 10 and p.period_us == 4103
    p.set_nodes(1)                 # k*P = 4: 0.004/0.75
    assert p.period_us == 5333
    _raises(p.set_params, U=1.0)
    _raises(p.set_params, T1=0)
    assert p.period_us == 5333
