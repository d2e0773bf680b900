import numpy as np
import pytest

from becomingone.ingest.ratelimit import RateLimiter, TokenBucket, frame_complexity, variance_cost


def test_variance_cost_eq25():
    assert variance_cost(1.0) == 1.0
    assert variance_cost(10.0) == pytest.approx(31.6227766)
    assert variance_cost(50.0) == pytest.approx(353.5533906)
    with pytest.raises(ValueError):
        variance_cost(-1)


def test_complexity_per_type():
    assert frame_complexity(9, 1000) == 1.0          # HEARTBEAT
    assert frame_complexity(2, 16) == 1.0            # small telemetry
    assert frame_complexity(2, 320) == 10.0          # batch of beats
    assert frame_complexity(3, 64) == 3.0            # witness: +1


def test_bucket_refill_and_refusal():
    b = TokenBucket(100, 10, now=0.0)
    assert b.request(variance_cost(10), now=0.0)     # 31.6
    assert b.request(variance_cost(10), now=0.0)
    assert b.request(variance_cost(10), now=0.0)
    assert not b.request(variance_cost(10), now=0.0)  # 5.1 left
    assert b.request(variance_cost(10), now=3.0)      # +30 tokens
    assert b.allowed == 4 and b.refused == 1
    assert b.remaining(now=1000) == 100


def test_request_many_matches_sequential():
    costs = np.array([1.0, 5.0, 2.5, 40.0, 1.0, 1.0])
    a = TokenBucket(10, 0, now=0)
    assert a.request_many(costs, now=0) == 3
    assert a.remaining(now=0) == pytest.approx(1.5)


def test_flooding_device_limited_others_not():
    rl = RateLimiter(capacity=50, refill_rate=100)
    flood = sum(rl.allow(7, 2, 40, now=0.0) for _ in range(1000))
    calm = sum(rl.allow(8, 2, 40, now=0.0) for _ in range(10))
    assert flood < 50 and calm == 10
    rl.set_limits(7, 1e6, 1e6)
    assert rl.allow(7, 2, 40, now=0.0) is False   # tokens kept, only raised capacity
    assert rl.allow(7, 2, 40, now=1.0)
    assert rl.allow_many(8, np.array([2, 2, 9]), np.array([40, 40, 0]), now=0.0) == 3
    assert rl.metrics()["7"]["refused"] > 900


def test_bad_limits():
    with pytest.raises(ValueError, match="capacity"):
        RateLimiter(capacity=0)
