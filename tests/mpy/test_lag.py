# The KAIROS lag learner (device/lag.py). Runs under pytest and tests/mpy_runner.py.
# A steady machine locks at one period (or the first multiple that falls on a whole number of
# KAIROS samples); noise and a frequency sweep do not lock.
import math

from shared.kairos import Emissary
from device.lag import LagLearner


class _Lcg:
    def __init__(self, seed):
        self.s = seed & 0x7FFFFFFF

    def next(self, n):
        self.s = (self.s * 48271) % 2147483647
        return self.s % n


def _learn(gen, n=300):
    em = Emissary(rate_hz=250, lag=25, bits=13, max_samples_per_beat=2, hist_len=250,
                  max_lag=125)
    ll = LagLearner(em, lmin=2)
    assert ll.start() is False                 # history not full yet
    for i in range(n):
        em.add(gen(i))
        em.end_beat()
    assert ll.start() is True
    steps = 0
    while not ll.step(16):
        steps += 1
        assert ll.busy
    assert not ll.busy and steps >= 6          # bounded slices: 124 lags / 16 per slice
    return ll


def test_tone_locks_at_its_period():
    ll = _learn(lambda i: int(2000 * math.sin(2 * math.pi * 5 * i / 250)))
    assert ll.locked and ll.best_lag == 50, (ll.best_lag, ll.best_c)


def test_harmonics_lock_at_a_whole_multiple():
    def g(i):
        t = i / 250.0
        return int(1000 * math.sin(2 * math.pi * 29.9 * t) + 400 * math.sin(2 * math.pi * 59.8 * t + 1))
    ll = _learn(g)
    # 29.9 Hz is 8.36 samples: 25 samples is 2.99 periods, the first multiple near a whole one
    assert ll.locked and ll.best_lag == 25, (ll.best_lag, ll.best_c)


def test_noise_and_sweep_do_not_lock():
    r = _Lcg(4)
    ll = _learn(lambda i: r.next(2001) - 1000)
    assert not ll.locked and ll.best_c < 0.2 * 65536
    ll = _learn(lambda i: int(2000 * math.sin(2 * math.pi * (5 * i / 250 + 0.6 * (i / 250) ** 2))))
    assert not ll.locked, (ll.best_lag, ll.best_c)


def test_history_frozen_during_search_and_cancel():
    em = Emissary(rate_hz=250, lag=25, max_samples_per_beat=2, hist_len=250, max_lag=125)
    for i in range(300):
        em.add(i % 17)
        em.end_beat()
    ll = LagLearner(em)
    assert ll.start()
    start = em.history_view()[2]
    em.add(5)
    em.end_beat()
    assert em.history_view()[2] == start       # frozen while the learner reads it
    ll.cancel()
    em.add(5)
    em.end_beat()
    assert em.history_view()[2] != start and not ll.busy


def test_bad_range_refused():
    em = Emissary(rate_hz=250, lag=2, max_samples_per_beat=2, hist_len=6, max_lag=3)
    try:
        LagLearner(em, lmin=2)
    except ValueError as e:
        assert "empty" in str(e)
    else:
        raise AssertionError("empty range accepted")
