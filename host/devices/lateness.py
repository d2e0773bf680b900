"""Beat lateness of one device as a cumulative histogram in seconds (what /metrics exports as
`becomingone_device_lateness_seconds`, a Prometheus histogram, so Grafana can draw p50/p99 with
histogram_quantile). Every accepted TELEMETRY record adds its lateness; a batch adds its rows
in one vectorised step (numpy searchsorted + bincount).

    h = LatenessHistogram()
    h.observe_us(lateness_us_array)      # or h.observe_one(us)
    h.snapshot() -> {"bounds_s": [...], "counts": [...cumulative, +Inf last], "sum_s", "count"}
"""
import numpy as np

__all__ = ["LatenessHistogram", "BOUNDS_S"]

# upper bounds (seconds) of the buckets; a last +Inf bucket follows. A beat is 4.2 ms by
# default, so the interesting range is 0.1 ms .. tens of ms.
BOUNDS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)
_BOUNDS_US = np.asarray([b * 1e6 for b in BOUNDS_S])


class LatenessHistogram:
    """Counts per bucket (not cumulative inside; snapshot() makes them cumulative), the sum in
    µs and the count. Processing thread only; raises nothing."""
    __slots__ = ("counts", "sum_us", "count")

    def __init__(self):
        self.counts = np.zeros(len(BOUNDS_S) + 1, dtype=np.int64)
        self.sum_us = 0
        self.count = 0

    def observe_us(self, values):
        v = np.asarray(values)
        if not len(v):
            return
        # le semantics: a value equal to a bound belongs to that bucket
        idx = np.searchsorted(_BOUNDS_US, v, side="left")
        self.counts += np.bincount(idx, minlength=len(self.counts))
        self.sum_us += int(v.sum(dtype=np.int64))
        self.count += len(v)

    def observe_one(self, us):
        self.counts[int(np.searchsorted(_BOUNDS_US, us, side="left"))] += 1
        self.sum_us += int(us)
        self.count += 1

    def snapshot(self):
        return {"bounds_s": list(BOUNDS_S), "counts": np.cumsum(self.counts).tolist(),
                "sum_s": self.sum_us / 1e6, "count": int(self.count)}
