"""Temporal signatures: what the memory stores per device snapshot for similarity search, and the
one definition of how two are compared (issue 11 item 6).

A signature is the device's state in numbers that mean the same on every device, every boot and
every cell:

    [C of each window that exists (the host's Emissary window first, then the Master's windows,
     shortest first) ..., the device's threat]

- C = |T_hat|^2 per window: the coherence, whose magnitude is what the collapse condition
  tests. T_hat's *phase* is not in the signature: it counts from the start of each device's
  KAIROS stream (boot, a new lag), so two streams' phases are not referred to a common epoch (at
  omega = 0, the default, T_hat is real and its sign is the only phase there is). The old
  signature [Re T_hat, Im T_hat per window] compared by cosine dropped |T_hat| and kept that
  arbitrary phase: a collapsed device and pure noise came out at similarity 1.0.
- A window that does not exist yet (fill below core/master.py MIN_FILL) is NaN: "unknown", not 0.
- threat (0..1): the device's own condition verdict from its TELEMETRY (the entropy model over
  the vibration features, floored by sensor and coherence faults). Coherence alone cannot tell
  an impacting bearing from a healthy one: the KAIROS stream is the machine's rhythm at f_k
  (250 Hz), where a 3 kHz bearing ring is averaged away (measured on the real firmware: 0.5 g
  impacts on a steady machine leave C at 0.98 in every window).

Comparison (layout = the components' names, "C@1s,C@10s,...,threat"; only signatures of the
same layout are compared): two blocks, coherence (the C components) and condition (threat), each
a root mean square of the differences over the components known in both signatures, combined
with equal weight:

    d^2 = (d_C^2 + d_threat^2) / 2    (a block unknown in either signature drops out, the other
                                       then counts alone; nothing in common: not comparable)
    similarity = 1 - d  in [0, 1]     (every component lies in [0, 1]: 1 = the same state)

    layout_of(windows_s, threat=True) -> str
    signature(windows, threat=None) -> numpy float64 vector (windows: dicts with C, ready)
    similarities(query, rows, layout) -> numpy array (NaN: nothing in common)
"""
import math

import numpy as np

__all__ = ["layout_of", "signature", "similarities", "parse_layout", "THREAT"]

THREAT = "threat"


def _label(seconds):
    return "C@%gs" % float(seconds)


def layout_of(windows_s, threat=True):
    """The layout string of signatures over these window lengths (seconds, in vector order)."""
    parts = [_label(w) for w in windows_s]
    if threat:
        parts.append(THREAT)
    return ",".join(parts)


def parse_layout(layout):
    """(indices of the coherence block, indices of the condition block) of a layout string."""
    names = layout.split(",") if layout else []
    coh = [i for i, n in enumerate(names) if n.startswith("C@")]
    cond = [i for i, n in enumerate(names) if not n.startswith("C@")]
    return coh, cond


def signature(windows, threat=None):
    """A signature vector: C of each window (NaN where the window is not ready), then the
    threat (NaN when unknown)."""
    v = [float(w["C"]) if w.get("ready", True) and w.get("C") is not None
         and math.isfinite(float(w["C"])) else math.nan for w in windows]
    v.append(math.nan if threat is None else min(1.0, max(0.0, float(threat))))
    return np.asarray(v, dtype="<f8")


def _block_ms(diff, known, cols):
    """Mean square of diff over the known entries of the given columns, per row; NaN where none."""
    if not cols:
        return np.full(diff.shape[0], np.nan), np.zeros(diff.shape[0], dtype=bool)
    d = diff[:, cols]
    k = known[:, cols]
    n = k.sum(axis=1)
    s = np.where(k, d * d, 0.0).sum(axis=1)
    has = n > 0
    return np.where(has, s / np.maximum(n, 1), np.nan), has


def similarities(query, rows, layout):
    """Similarity (1 - d, module docstring) of each row of `rows` (k x dim) to `query` (dim,),
    both laid out as `layout`; NaN for a row with no component known in both. C values are
    clipped to [0, 1] first (the Master's C may pass 1 by a few 2^-14)."""
    q = np.clip(np.asarray(query, dtype=np.float64), 0.0, 1.0)
    m = np.clip(np.asarray(rows, dtype=np.float64), 0.0, 1.0)
    known = np.isfinite(m) & np.isfinite(q)[None, :]
    diff = np.where(known, m - np.nan_to_num(q)[None, :], 0.0)
    coh, cond = parse_layout(layout)
    if not coh and not cond:           # a layout-free vector (a user's --vector): one block
        coh = list(range(q.shape[0]))
    ms_c, has_c = _block_ms(diff, known, coh)
    ms_t, has_t = _block_ms(diff, known, cond)
    both = has_c & has_t
    d2 = np.where(both, (np.nan_to_num(ms_c) + np.nan_to_num(ms_t)) / 2.0,
                  np.where(has_c, ms_c, ms_t))
    return 1.0 - np.sqrt(d2)
