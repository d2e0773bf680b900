"""Supervision of long-running workers (ET Eq 23, "ImmortalSupervisor": a worker that
becomes incoherent -- raises -- is discarded and a fresh one is spawned from its template).

A `Supervisor` runs `target(stop_event)` in a thread. When the target raises (or returns
while the supervisor is still running) it is restarted after an exponential backoff with
jitter, capped: delay_n = min(max_delay, base_delay * 2**n) * U(1 - jitter, 1 + jitter),
where n counts consecutive failures. A worker that stayed up for `healthy_after` seconds
resets n to 0. `max_restarts` < 0 means no limit; when the limit is reached the supervisor
gives up and reports `state = "failed"`.

Metrics (`metrics()`): name, state (running | backoff | stopped | failed), restarts,
last_error (type and message, never a traceback), last_error_at (time.time()), next_delay_s.
"""
import random
import threading
import time

__all__ = ["Supervisor", "backoff_delay"]


def backoff_delay(failures, base_delay, max_delay, jitter, rng=random):
    """Delay before restart number `failures` (1-based count of consecutive failures)."""
    if failures < 1:
        return 0.0
    raw = min(max_delay, base_delay * (2.0 ** (failures - 1)))
    if jitter:
        raw *= rng.uniform(1.0 - jitter, 1.0 + jitter)
    return min(max_delay * (1.0 + jitter), max(0.0, raw))


class Supervisor:
    """Runs `target(stop_event)` in a thread and restarts it after an exception with
    exponential backoff and jitter (ET Eq 23); owns the thread, the restart count and the
    last error (metrics()). Raises ValueError for bad delays; never lets a worker's
    exception out."""
    def __init__(self, name, target, *, base_delay=0.1, max_delay=10.0, jitter=0.25,
                 max_restarts=-1, healthy_after=30.0, rng=None, on_error=None):
        if base_delay <= 0 or max_delay < base_delay:
            raise ValueError("supervisor %s: need 0 < base_delay <= max_delay (got %r, %r)"
                             % (name, base_delay, max_delay))
        if not 0 <= jitter < 1:
            raise ValueError("supervisor %s: jitter must be in [0, 1) (got %r)" % (name, jitter))
        self.name = name
        self.target = target
        self.base_delay = float(base_delay)
        self.max_delay = float(max_delay)
        self.jitter = float(jitter)
        self.max_restarts = int(max_restarts)
        self.healthy_after = float(healthy_after)
        self.rng = rng or random.Random()
        self.on_error = on_error
        self.stop_event = threading.Event()
        self.restarts = 0
        self.failures = 0          # consecutive
        self.last_error = None
        self.last_error_at = None
        self.next_delay = 0.0
        self.state = "stopped"
        self._thread = None

    def start(self):
        if self._thread is not None and self._thread.is_alive():
            return self
        self.stop_event.clear()
        self.state = "running"
        self._thread = threading.Thread(target=self._loop, name="sup-" + self.name, daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout=5.0):
        self.stop_event.set()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout)
        if self.state != "failed":
            self.state = "stopped"

    def alive(self):
        return self._thread is not None and self._thread.is_alive()

    def _loop(self):
        while not self.stop_event.is_set():
            started = time.monotonic()
            self.state = "running"
            try:
                self.target(self.stop_event)
                if self.stop_event.is_set():
                    break
                err = "worker returned while supervised"
            except Exception as e:  # the whole point: any crash is restarted
                err = "%s: %s" % (type(e).__name__, e)
            self.last_error = err
            self.last_error_at = time.time()
            if self.on_error is not None:
                try:
                    self.on_error(self.name, err)
                except Exception:
                    pass
            if time.monotonic() - started >= self.healthy_after:
                self.failures = 0
            self.failures += 1
            if 0 <= self.max_restarts <= self.restarts:
                self.state = "failed"
                return
            self.next_delay = backoff_delay(self.failures, self.base_delay, self.max_delay,
                                            self.jitter, self.rng)
            self.state = "backoff"
            if self.stop_event.wait(self.next_delay):
                break
            self.restarts += 1
        self.state = "stopped"

    def metrics(self):
        return {"name": self.name, "state": self.state, "restarts": self.restarts,
                "last_error": self.last_error, "last_error_at": self.last_error_at,
                "next_delay_s": round(self.next_delay, 4)}
