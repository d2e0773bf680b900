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

    d^2 = (d_C^2 + d_threat^2) / 2
    similarity = 1 - d  in [0, 1]     (every component lies in [0, 1]: 1 = the same state)

A block known in one signature and wholly unknown in the other is as far as it can be (d = 1 for
that block): a machine whose windows hold signal is not in the state of one whose windows are
empty (just booted, or a dead or stuck sensor). A block unknown in both drops out and the other
counts alone (two dead sensors are alike by their threat); nothing known in both: not comparable.

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


def _block_ms(diff, known, q_known, m_known, cols):
    """(mean square of diff over the entries known in both, per row; whether the block counts):
    1 where the block is known in only one of the two signatures, not counted where it is
    unknown in both (module docstring)."""
    rows = diff.shape[0]
    if not cols:
        return np.zeros(rows), np.zeros(rows, dtype=bool)
    d = diff[:, cols]
    k = known[:, cols]
    n = k.sum(axis=1)
    s = np.where(k, d * d, 0.0).sum(axis=1)
    q_has = bool(q_known[cols].any())
    m_has = m_known[:, cols].any(axis=1)
    one_side = m_has != q_has
    ms = np.where(n > 0, s / np.maximum(n, 1), 0.0)
    ms = np.where(one_side, 1.0, ms)
    return ms, one_side | (n > 0)


def similarities(query, rows, layout):
    """Similarity (1 - d, module docstring) of each row of `rows` (k x dim) to `query` (dim,),
    both laid out as `layout`; NaN for a row with no component known in both. C values are
    clipped to [0, 1] first (the Master's C may pass 1 by a few 2^-14)."""
    q = np.clip(np.asarray(query, dtype=np.float64), 0.0, 1.0)
    m = np.clip(np.asarray(rows, dtype=np.float64), 0.0, 1.0)
    q_known, m_known = np.isfinite(q), np.isfinite(m)
    known = m_known & q_known[None, :]
    diff = np.where(known, m - np.nan_to_num(q)[None, :], 0.0)
    coh, cond = parse_layout(layout)
    if not coh and not cond:           # a layout-free vector (a user's --vector): one block
        coh = list(range(q.shape[0]))
    ms_c, has_c = _block_ms(diff, known, q_known, m_known, coh)
    ms_t, has_t = _block_ms(diff, known, q_known, m_known, cond)
    n = has_c.astype(np.float64) + has_t
    d2 = (np.where(has_c, ms_c, 0.0) + np.where(has_t, ms_t, 0.0)) / np.maximum(n, 1.0)
    return np.where(n > 0, 1.0 - np.sqrt(d2), np.nan)
