"""Reference KAIROS (SPEC 4.2) over raw samples, in float64 with numpy.

This is the host's independent statement of the mathematics, used to check what devices report
and what the Master integrates.  It does not share code with shared/kairos.py (the device's
integer implementation); it follows SPEC 4.2 and the stream conventions of docs/DEVICE.md:

    samples x[n], n = 0, 1, ... since the stream began (a new boot id starts a new stream);
    d[n] = x[n] - x[n-1] in counts, with d[0] = 0 (no sample before the first);
    lag L >= 1 samples, d[n-L] = 0 for n < L (the delay line starts empty);
    phase theta_n = omega * n / f_s, or, with the device's quantized omega,
        theta_n = 2 pi * ((n * phase_step) mod 2^30) / 2^30   (exact integer phase);
    physical phi_dot = d * f_s, so over a window of samples n in [a, b):
        T  = sum d[n] d[n-L] e^{i theta_n} * f_s,   E0 = sum d[n]^2 * f_s,   EL = sum d[n-L]^2 * f_s
        C  = |T|^2 / (E0 EL)  (0 when E0 EL = 0),   T_hat = T / sqrt(E0 EL).

Public API
----------
    terms(x, f_s, lag=1, omega=2.0, phase_step=None, adc_bits=None)
        -> (p_re, p_im, e0, el) float64 arrays per sample (already x f_s)
    kairos(x, f_s, lag=1, omega=2.0, phase_step=None, start=0, stop=None, adc_bits=None) -> dict
        T, E0, EL, C, T_hat, n over samples [start, stop) of a stream
    beat_sums(x, beat_sizes, f_s, ...) -> float64 array (beats, 5): T_re, T_im, E0, EL, n per beat
    window(x, beat_sizes, first_beat, last_beat, f_s, ...) -> dict over the beats
        [first_beat, last_beat] (inclusive), beat numbers counted from 0 at the stream start
    from_sums(T_re, T_im, E0, EL) -> dict with C and T_hat

With adc_bits given, samples are clipped to [0, 2^adc_bits - 1] as the device does.
"""
import numpy as np

PHASE_ONE = 1 << 30


def terms(x, f_s, lag=1, omega=2.0, phase_step=None, adc_bits=None):
    x = np.asarray(x, dtype=np.float64)
    if adc_bits is not None:
        x = np.clip(x, 0, (1 << int(adc_bits)) - 1)
    if f_s <= 0:
        raise ValueError("f_s must be > 0")
    lag = int(lag)
    if lag < 1:
        raise ValueError("lag must be >= 1 sample")
    n = x.shape[0]
    d = np.zeros(n)
    if n > 1:
        d[1:] = np.diff(x)
    dl = np.zeros(n)
    if n > lag:
        dl[lag:] = d[:-lag]
    idx = np.arange(n, dtype=np.int64)
    if phase_step is not None:
        theta = ((idx * int(phase_step)) & (PHASE_ONE - 1)).astype(np.float64) * (2 * np.pi / PHASE_ONE)
    else:
        theta = float(omega) * idx.astype(np.float64) / float(f_s)
    p = d * dl * f_s
    return p * np.cos(theta), p * np.sin(theta), d * d * f_s, dl * dl * f_s


def from_sums(T_re, T_im, E0, EL):
    den = float(E0) * float(EL)
    T = complex(T_re, T_im)
    if den > 0:
        return dict(T=T, E0=float(E0), EL=float(EL), C=abs(T) ** 2 / den, T_hat=T / np.sqrt(den))
    return dict(T=T, E0=float(E0), EL=float(EL), C=0.0, T_hat=0j)


def kairos(x, f_s, lag=1, omega=2.0, phase_step=None, start=0, stop=None, adc_bits=None):
    pr, pi, e0, el = terms(x, f_s, lag, omega, phase_step, adc_bits)
    sl = slice(start, stop)
    out = from_sums(pr[sl].sum(), pi[sl].sum(), e0[sl].sum(), el[sl].sum())
    out["n"] = int(pr[sl].shape[0])
    return out


def _sizes(n, beat_sizes):
    if isinstance(beat_sizes, (int, np.integer)):
        b = int(beat_sizes)
        if b < 1:
            raise ValueError("beat size must be >= 1")
        k = (n + b - 1) // b
        sizes = np.full(k, b, dtype=np.int64)
        if k:
            sizes[-1] = n - b * (k - 1)
        return sizes
    sizes = np.asarray(beat_sizes, dtype=np.int64)
    if sizes.sum() > n or np.any(sizes < 0):
        raise ValueError("beat sizes add up to %d samples, stream has %d" % (int(sizes.sum()), n))
    return sizes


def beat_sums(x, beat_sizes, f_s, lag=1, omega=2.0, phase_step=None, adc_bits=None):
    pr, pi, e0, el = terms(x, f_s, lag, omega, phase_step, adc_bits)
    sizes = _sizes(pr.shape[0], beat_sizes)
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.int64)
    out = np.zeros((sizes.shape[0], 5))
    nonempty = sizes > 0
    for j, a in enumerate((pr, pi, e0, el)):
        a = np.append(a, 0.0)                    # so a start equal to len(a) is a valid index
        r = np.add.reduceat(a, starts) if starts.shape[0] else np.zeros(0)
        out[:, j] = np.where(nonempty, r, 0.0)   # reduceat repeats a value on empty beats
    # the last beat's reduceat ran to the end of the (padded) array: correct it exactly
    if sizes.shape[0] and nonempty[-1]:
        a0 = int(starts[-1])
        a1 = a0 + int(sizes[-1])
        for j, a in enumerate((pr, pi, e0, el)):
            out[-1, j] = a[a0:a1].sum()
    out[:, 4] = sizes
    return out


def window(x, beat_sizes, first_beat, last_beat, f_s, lag=1, omega=2.0, phase_step=None,
           adc_bits=None, present=None):
    """Reference over the beats [first_beat, last_beat] (inclusive, counted from 0 at the stream
    start); `present` (bool per beat) drops lost beats exactly as the Master does (their partials
    never arrived).  Sums the per-sample terms of the selected beats directly."""
    pr, pi, e0, el = terms(x, f_s, lag, omega, phase_step, adc_bits)
    sizes = _sizes(pr.shape[0], beat_sizes)
    sel = np.zeros(sizes.shape[0], dtype=bool)
    sel[first_beat:last_beat + 1] = True
    if present is not None:
        sel &= np.asarray(present, dtype=bool)[:sizes.shape[0]]
    mask = np.repeat(sel, sizes)
    mask = np.concatenate((mask, np.zeros(pr.shape[0] - mask.shape[0], dtype=bool)))
    out = from_sums(pr[mask].sum(), pi[mask].sum(), e0[mask].sum(), el[mask].sum())
    out["n"] = int(mask.sum())
    out["beats"] = int(sel.sum())
    return out
