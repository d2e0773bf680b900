"""Beat lateness of one device as a cumulative histogram in seconds (what /metrics exports as
`becomingone_device_lateness_seconds`, a Prometheus histogram, so Grafana can draw p50/p99 with
histogram_quantile). Every accepted TELEMETRY record adds its lateness; a batch adds its rows
in one vectorised step (numpy searchsorted + bincount).

    h = LatenessHistogram()
    h.observe_us(lateness_us_array)      # or h.observe_one(us)
    h.snapshot() -> {"bounds_s": [...], "counts": [...cumulative, +Inf last], "sum_s", "count"}
"""
import numpy as np

__all__ = ["LatenessHistogram", "BOUNDS_S", "bucket_of"]

# upper bounds (seconds) of the buckets; a last +Inf bucket follows. A beat is 4.2 ms by
# default, so the interesting range is 0.1 ms .. tens of ms.
BOUNDS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)
_BOUNDS_US = np.asarray([b * 1e6 for b in BOUNDS_S])


def bucket_of(values_us):
    """The bucket index of each lateness in µs (a list; le semantics, as observe_us)."""
    return np.searchsorted(_BOUNDS_US, values_us, side="left").tolist()


class LatenessHistogram:
    """Counts per bucket (not cumulative inside; snapshot() makes them cumulative), the sum in
    µs and the count. Processing thread only; raises nothing."""
    __slots__ = ("counts", "sum_us", "count")

    def __init__(self):
        self.counts = [0] * (len(BOUNDS_S) + 1)     # a list: a beat adds in ~0.1 us
        self.sum_us = 0
        self.count = 0

    def observe_us(self, values):
        v = np.asarray(values)
        if not len(v):
            return
        # le semantics: a value equal to a bound belongs to that bucket
        idx = np.searchsorted(_BOUNDS_US, v, side="left")
        c = self.counts
        for i, k in enumerate(np.bincount(idx, minlength=len(c)).tolist()):
            c[i] += k
        self.sum_us += int(v.sum(dtype=np.int64))
        self.count += len(v)

    def observe_rows(self, buckets, values, a, b, keep=None):
        """Rows a..b-1 of a batch: buckets[i] = bucket_of(values[i]) for the batch (lists,
        made once per batch: bucket_of), keep[i] False for a refused row (None: all kept).
        Scalar adds: most groups of a receive batch hold one or a few beats of a device."""
        c = self.counts
        n = s = 0
        for i in range(a, b):
            if keep is None or keep[i]:
                c[buckets[i]] += 1
                s += values[i]
                n += 1
        self.sum_us += s
        self.count += n

    def observe_one(self, us):
        self.counts[int(np.searchsorted(_BOUNDS_US, us, side="left"))] += 1
        self.sum_us += int(us)
        self.count += 1

    def snapshot(self):
        return {"bounds_s": list(BOUNDS_S), "counts": np.cumsum(self.counts).tolist(),
                "sum_s": self.sum_us / 1e6, "count": int(self.count)}
