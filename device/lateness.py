"""Lateness statistics without allocation: a fixed histogram of lateness buckets.

Buckets: 20 us wide from 0 to 2560 us (128 buckets), then 1 ms wide up to 66.56 ms (64 buckets),
then one overflow bucket.  ``add(us)`` is O(1) and allocates nothing; ``percentile(p)`` walks the
histogram (O(buckets), called for reports, not every beat) and returns the upper edge of the
bucket holding the p-th value (so p50/p99 are exact to 20 us below 2.56 ms, 1 ms above);
``max_us`` is exact.  Early wake-ups count as lateness 0.

Counts never overflow (a Pi Zero runs for months; a bucket word overflows after 2^31 beats, 105
days at the default beat): when the total reaches 2^29 every bucket is halved, so the percentiles
keep describing the recent beats with older ones weighted down, and every count stays a small int
on a Pico."""
from array import array

from shared.compat import micropython, const  # noqa: F401
try:
    from shared.compat import ptr32    # CPython stand-in; viper has it built in
except ImportError:
    pass

_FINE = const(128)
_FINE_US = const(20)
_COARSE = const(64)
_COARSE_US = const(1000)
_FINE_END = const(2560)                # _FINE * _FINE_US
_N = const(193)                        # _FINE + _COARSE + 1
_COUNT = const(193)                    # words after the buckets: count, max
_MAX = const(194)
_HALVE_AT = const(0x20000000)          # 2^29


@micropython.viper
def record(h, us: int) -> int:
    """Add one lateness (us) to the histogram words h (a LatenessHistogram's .h)."""
    p = ptr32(h)
    if us < 0:
        us = 0
    if us < _FINE_END:
        i = us // _FINE_US
    else:
        i = _FINE + (us - _FINE_END) // _COARSE_US
        if i >= _N:
            i = _N - 1
    p[i] = int(p[i]) + 1
    c = int(p[_COUNT]) + 1
    if c >= _HALVE_AT:
        c = 0
        j = 0
        while j < _N:
            v = int(p[j]) >> 1
            p[j] = v
            c += v
            j += 1
    p[_COUNT] = c
    if us > int(p[_MAX]):
        p[_MAX] = us
    return us


class LatenessHistogram:
    def __init__(self):
        self.h = array("i", bytes(4 * (_N + 2)))
        self.late_count = 0   # beats later than one period (counted by the beat)

    @property
    def count(self):
        return self.h[_COUNT]

    @property
    def max_us(self):
        return self.h[_MAX]

    def reset(self):
        h = self.h
        for i in range(_N + 2):
            h[i] = 0

    def add(self, us):
        record(self.h, us)

    def percentile(self, pct):
        """Upper edge (us) of the bucket holding the pct-th percentile (pct in 0..100), capped at
        the exact maximum; 0 if empty."""
        n = self.count
        mx = self.max_us
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
                    edge = mx
                return edge if edge < mx else mx
        return mx
