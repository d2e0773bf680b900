import random

import pytest

from becomingone.devices.timesync import ClockEstimator, ntp_sample, trajectory_extrapolate


def test_ntp_sample_symmetric_delay():
    # device clock = host + 1000 µs; 50 µs each way
    t0 = 10_000
    t1 = t0 + 50 + 1000
    t2 = t1 + 5
    t3 = t2 - 1000 + 50
    off, delay = ntp_sample(t0, t1, t2, t3)
    assert off == pytest.approx(1000)
    assert delay == pytest.approx(100)


def test_trajectory_extrapolate_eq22():
    assert trajectory_extrapolate(30, 10, 0, 1) == 40
    assert trajectory_extrapolate(0, 0, 2, 3) == 9


def test_drifting_clock_offset_and_drift_recovered():
    rng = random.Random(7)
    off0, drift = 123_456.0, 40e-6          # device gains 40 ppm
    dev = lambda t: t + off0 + drift * t
    est = ClockEstimator(window=40)
    t = 0.0
    for _ in range(40):
        t += 1_000_000.0                    # one exchange per second
        up = 200 + rng.expovariate(1 / 300.0)
        down = 200 + rng.expovariate(1 / 300.0)
        if rng.random() < 0.1:
            up += 20_000                    # a queued outlier
        t1 = dev(t + up)
        t2 = t1 + 20
        t3 = t + up + 20 / (1 + drift) + down
        est.add_exchange(t, t1, t2, t3)
    e = est.estimate()
    assert e["drift_ppm"] == pytest.approx(40, abs=2)
    # prediction 10 s ahead: within a few hundred µs of the truth
    t_future = t + 10_000_000
    truth = off0 + drift * t_future
    assert abs(est.offset_at(t_future) - truth) < 600
    assert e["rejected"] >= 1


def test_no_samples_and_bad_order():
    est = ClockEstimator()
    assert est.estimate() == {"samples": 0}
    with pytest.raises(ValueError):
        est.offset_at(0)
    with pytest.raises(ValueError, match="before"):
        est.add_exchange(10, 0, 0, 5)


def test_single_sample_is_constant():
    est = ClockEstimator()
    est.add_sample(0, 500, 10)
    assert est.offset_at(1e9) == pytest.approx(500)
