"""KAIROS helpers for the host and the tests (both runtimes; never loaded on a board, where every
loaded name is heap): the omega a phase step really gives, and the device's Emissary run over a
whole recorded stream.

quantized_omega(phase_step, f) -> float        rad/s
beat_partials(values, beat_sizes, **kw) -> [(dT_re, dT_im, dE0, dEL, n, coherence), ...]
"""
from shared.kairos import Emissary


def quantized_omega(phase_step, f_s):
    """The angular frequency the device really uses (rad/s): phase_step * 2 pi f_s / 2^30,
    read as a signed step (a step above 2^29 turns backwards)."""
    import math
    s = phase_step - (1 << 30) if phase_step >= (1 << 29) else phase_step
    return s * 2 * math.pi * f_s / (1 << 30)


def beat_partials(values, beat_sizes, **kwargs):
    """Run the device Emissary over KAIROS samples cut into beats of the given sizes (a list, or
    an int for equal beats). Returns [(dT_re, dT_im, dE0, dEL, n, coherence), ...]; the same
    code path as the device (tests, host cross-checks)."""
    total = len(values)
    if isinstance(beat_sizes, int):
        if beat_sizes < 1:
            raise ValueError("beat size must be >= 1 sample, got %r" % (beat_sizes,))
        nb = (total + beat_sizes - 1) // beat_sizes
        biggest = beat_sizes
    else:
        nb = len(beat_sizes)
        biggest = max(beat_sizes) if nb else 1
    if "max_samples_per_beat" not in kwargs:
        kwargs["max_samples_per_beat"] = max(biggest, 1)
    em = Emissary(**kwargs)
    out = []
    i = 0
    for b in range(nb):
        sz = beat_sizes if isinstance(beat_sizes, int) else beat_sizes[b]
        for _ in range(sz):
            if i >= total:
                break
            if not em.add(values[i]):
                raise ValueError("beat of %d samples exceeds max_samples_per_beat=%d"
                                 % (sz, em.max_samples))
            i += 1
        em.end_beat()
        out.append(em.partials() + (em.coherence,))
    return out
