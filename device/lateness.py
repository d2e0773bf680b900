"""Lateness statistics without allocation: a fixed histogram of lateness buckets.

Buckets: 20 us wide from 0 to 2560 us (128 buckets), then 1 ms wide up to 66.56 ms (64 buckets),
then one overflow bucket.  ``add(us)`` is O(1) and allocates nothing; ``percentile(p)`` walks the
histogram (O(buckets), called for reports, not every beat) and returns the upper edge of the
bucket holding the p-th value (so p50/p99 are exact to 20 us below 2.56 ms, 1 ms above);
``max_us`` is exact.  Early wake-ups count as lateness 0.

Counts never overflow (a Pi Zero runs for months; an ``array('i')`` bucket overflows after 2^31
beats, 105 days at the default beat): when the total reaches 2^29 every bucket is halved, so the
percentiles keep describing the recent beats with older ones weighted down, and every count stays
a small int on a Pico."""
from array import array

_FINE = 128
_FINE_US = 20
_COARSE = 64
_COARSE_US = 1000
_FINE_END = _FINE * _FINE_US           # 2560
_N = _FINE + _COARSE + 1
_HALVE_AT = 1 << 29


class LatenessHistogram:
    def __init__(self):
        self.h = array("i", bytes(4 * _N))
        self.count = 0
        self.max_us = 0
        self.late_count = 0   # beats later than one period (counted by the beat)

    def reset(self):
        h = self.h
        for i in range(_N):
            h[i] = 0
        self.count = 0
        self.max_us = 0

    def add(self, us):
        if us < 0:
            us = 0
        if us < _FINE_END:
            i = us // _FINE_US
        else:
            i = _FINE + (us - _FINE_END) // _COARSE_US
            if i >= _N:
                i = _N - 1
        self.h[i] += 1
        self.count += 1
        if us > self.max_us:
            self.max_us = us
        if self.count >= _HALVE_AT:
            self._halve()

    def _halve(self):
        h = self.h
        n = 0
        for i in range(_N):
            v = h[i] >> 1
            h[i] = v
            n += v
        self.count = n

    def percentile(self, pct):
        """Upper edge (us) of the bucket holding the pct-th percentile (pct in 0..100), capped at
        the exact maximum; 0 if empty."""
        n = self.count
        if n == 0:
            return 0
        # rank = ceil(pct/100 * n) without floats, every term < 2^30
        rank = (n // 100) * pct + ((n % 100) * pct + 99) // 100
        if rank < 1:
            rank = 1
        acc = 0
        h = self.h
        for i in range(_N):
            acc += h[i]
            if acc >= rank:
                if i < _FINE:
                    edge = (i + 1) * _FINE_US - 1
                elif i < _N - 1:
                    edge = _FINE_END + (i - _FINE + 1) * _COARSE_US - 1
                else:
                    edge = self.max_us
                return edge if edge < self.max_us else self.max_us
        return self.max_us
