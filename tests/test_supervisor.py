import random
import threading
import time

import pytest

from becomingone.util.supervisor import Supervisor, backoff_delay


def test_backoff_grows_and_caps():
    rng = random.Random(1)
    d = [backoff_delay(n, 0.1, 1.0, 0.0, rng) for n in range(1, 8)]
    assert d[:4] == pytest.approx([0.1, 0.2, 0.4, 0.8])
    assert d[4:] == pytest.approx([1.0, 1.0, 1.0])
    j = [backoff_delay(3, 0.1, 1.0, 0.5, rng) for _ in range(200)]
    assert min(j) >= 0.2 - 1e-9 and max(j) <= 0.6 + 1e-9 and len(set(j)) > 50


def test_restarts_crashing_worker_then_runs():
    runs = []
    ok = threading.Event()

    def worker(stop):
        runs.append(1)
        if len(runs) < 4:
            raise RuntimeError("boom %d" % len(runs))
        ok.set()
        stop.wait()

    s = Supervisor("w", worker, base_delay=0.01, max_delay=0.05, jitter=0.1).start()
    assert ok.wait(3)
    m = s.metrics()
    assert m["restarts"] == 3 and m["state"] == "running"
    assert m["last_error"] == "RuntimeError: boom 3"
    s.stop()
    assert s.metrics()["state"] == "stopped" and not s.alive()


def test_max_restarts_gives_up():
    def worker(stop):
        raise OSError("port gone")

    s = Supervisor("w", worker, base_delay=0.005, max_delay=0.01, max_restarts=2).start()
    deadline = time.time() + 3
    while s.metrics()["state"] != "failed" and time.time() < deadline:
        time.sleep(0.01)
    assert s.metrics()["state"] == "failed" and s.restarts == 2


def test_bad_parameters():
    with pytest.raises(ValueError, match="base_delay"):
        Supervisor("x", lambda s: None, base_delay=0)
    with pytest.raises(ValueError, match="jitter"):
        Supervisor("x", lambda s: None, jitter=1.5)
