"""Learning the KAIROS lag: tau_bar = one period of the machine (docs/DEVICE.md "The lag").

A steady machine repeats itself every revolution, so the differenced KAIROS stream d correlates
with itself one period back; broadband noise, impacts at a rate that is not the revolution, and a
machine whose speed drifts do not. The learner freezes the Emissary's history of the last ``hist_len`` differences
(shared/kairos.py keeps them in a ring; frozen, the ring is read in place, so the search needs no
copy of it) and computes for every candidate lag L in [lmin, lmax]

    r(L) = sum d[n] d[n-L],  C(L) = r^2 / (sum d[n]^2 * sum d[n-L]^2)   (n = L..N-1)

in bounded slices (idle time; viper, no allocation), skips the lags before r first turns
negative (below a quarter period every smooth signal correlates with itself) and, among the lags
with r(L) > 0 after that, picks the shortest local peak of C(L) within ``near`` (0.02) of the best:
the fundamental period, or the first multiple of it that falls on a whole number of samples
(a long multiple would make the lock fragile against the small speed wander of a real
machine). The result locks when C >= ``lock`` (default 0.95, the collapse threshold: a lag is
only adopted where the machine would collapse). Products are shifted right by ``sh`` so that every sum
stays below 2^30 (sh from the largest |d| in the snapshot).

LagLearner(emissary, lmin=2, lmax=None, lock=0.95, near=0.02)
    .start() -> bool        freeze the history (False while it holds fewer than hist_len)
    .step(max_lags) -> bool one slice; True when the search is complete
    .best_lag, .best_c (Q16), .locked (bool), .busy (bool)
"""
import array

from shared.compat import micropython, const  # noqa: F401
from shared.qmath import coherence_limbs
try:
    from shared.compat import ptr32    # CPython stand-in; viper has it built in
except ImportError:
    pass

_BIAS = const(0x20000000)


@micropython.viper
def _prep(buf, base: int, n: int) -> int:
    # the shift sh that keeps n * max|d|^2 >> sh below 2^30 (values stored + 2^29)
    b = ptr32(buf)
    mx = 0
    i = 0
    while i < n:
        v = int(b[base + i]) - _BIAS
        if v < 0:
            v = 0 - v
        if v > mx:
            mx = v
        i += 1
    nb = 0
    t = mx * mx
    while t > 0:
        t >>= 1
        nb += 1
    t = n
    while t > 0:
        t >>= 1
        nb += 1
    return nb - 30 if nb > 30 else 0


@micropython.viper
def _corr(buf, base: int, start: int, n: int, lag: int, sh: int, out) -> int:
    # over the ring buf[base : base+n] whose oldest element is at start: out[0] = r + _BIAS,
    # out[1] = sum d[k]^2 (k >= lag), out[2] = sum d[k-lag]^2, all >> sh
    b = ptr32(buf)
    o = ptr32(out)
    r = 0
    e0 = 0
    el = 0
    ia = start + lag
    if ia >= n:
        ia -= n
    ic = start
    k = lag
    while k < n:
        a = int(b[base + ia]) - _BIAS
        c = int(b[base + ic]) - _BIAS
        r += (a * c) >> sh
        e0 += (a * a) >> sh
        el += (c * c) >> sh
        ia += 1
        if ia == n:
            ia = 0
        ic += 1
        if ic == n:
            ic = 0
        k += 1
    o[0] = r + _BIAS
    o[1] = e0
    o[2] = el
    return 1


class LagLearner:
    def __init__(self, emissary, lmin=2, lmax=None, lock=0.95, near=0.02):
        self.em = emissary
        n = emissary.hist_len
        self.n = n
        self.lmin = max(1, int(lmin))
        mx = emissary.max_lag if lmax is None else int(lmax)
        self.lmax = min(mx, n // 2, emissary.max_lag)
        if self.lmax < self.lmin + 2:
            raise ValueError("lag search range %d..%d samples is empty (history %d)"
                             % (self.lmin, self.lmax, n))
        if not 0.0 < lock <= 1.0:
            raise ValueError("lock threshold must be in (0, 1], got %r" % (lock,))
        self.lock_q16 = min(65535, int(round(lock * 65536)))
        self.near_q16 = int(round(near * 65536))
        self._c = array.array("H", bytes(2 * (self.lmax + 1)))
        self._o = array.array("i", bytes(12))
        self.busy = False
        self.best_lag = 0
        self.best_c = 0
        self.locked = False
        self._l = 0
        self._crossed = False
        self._sh = 0
        self.searches = 0
        self.buf = None               # set by start() (here too: an attribute added later grows
        self._base = 0                # the instance's dict, in the heap the beat's frames use)
        self._start = 0

    def start(self):
        """Freeze the Emissary's history; False while it holds fewer than hist_len values."""
        em = self.em
        if not em.history_full():     # (history_view() makes a tuple: heap, every idle)
            return False
        self.buf, self._base, self._start, n, cnt = em.history_view()
        em.freeze_history(True)
        self._sh = _prep(self.buf, self._base, n)
        self._l = self.lmin
        self._crossed = False
        self.best_lag = 0
        self.best_c = 0
        self.locked = False
        self.busy = True
        cs = self._c
        for i in range(len(cs)):
            cs[i] = 0
        return True

    def cancel(self):
        """Stop a search (the stream restarted): the history is released."""
        if self.busy:
            self.busy = False
            self.em.freeze_history(False)

    def step(self, max_lags):
        """Evaluate up to max_lags candidate lags; True when the search is complete."""
        if not self.busy:
            return True
        o = self._o
        buf = self.buf
        n = self.n
        sh = self._sh
        L = self._l
        end = L + max_lags
        if end > self.lmax + 1:
            end = self.lmax + 1
        base = self._base
        st = self._start
        while L < end:
            _corr(buf, base, st, n, L, sh, o)
            r = o[0] - _BIAS
            if not self._crossed:
                if r <= 0:
                    self._crossed = True
            elif r > 0:
                e0 = o[1]
                el = o[2]
                c = coherence_limbs(r >> 24, r & 0xFFFFFF, 0, 0, e0 >> 24, e0 & 0xFFFFFF, el >> 24,
                         el & 0xFFFFFF)
                self._c[L] = c
                if c > self.best_c:
                    self.best_c = c
            L += 1
        self._l = L
        if L > self.lmax:
            # the shortest local peak of C within `near` of the best
            floor = self.best_c - self.near_q16
            cs = self._c
            top = self.lmax
            for k in range(self.lmin, top + 1):
                c = cs[k]
                if c and c >= floor and c >= cs[k - 1] and (k == top or c >= cs[k + 1]):
                    self.best_lag = k
                    self.best_c = cs[k]
                    break
            self.busy = False
            self.em.freeze_history(False)
            self.searches += 1
            self.locked = self.best_lag > 0 and self.best_c >= self.lock_q16
            return True
        return False
