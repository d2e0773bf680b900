"""The Master, fed the partials of the device's own integer KAIROS (shared/kairos.py's
beat_partials, the same code path as the firmware), agrees with the float64 reference over the
raw samples (tests/reference/kairos_ref.py, SPEC 4.2) on the same stream, with and without lost frames."""
import math

import numpy as np
import pytest

from tests.reference import kairos_ref
from becomingone.core.master import Master
from shared import kairos as dk
from shared import kairos_host as KH

FS = 1000
PERIOD_US = 4210


def make_stream(seconds, seed):
    rng = np.random.default_rng(seed)
    n = int(seconds * FS)
    t = np.arange(n) / FS
    # 12-bit ADC counts: a 37 Hz vibration whose amplitude breathes at omega = 2 rad/s, plus noise
    x = 2048 + 900 * (0.6 + 0.4 * np.cos(2.0 * t)) * np.sin(2 * np.pi * 37 * t) + rng.normal(0, 25, n)
    x = np.clip(np.rint(x), 1, 4095).astype(int)
    # beats of 4 or 5 samples (4.21 ms at 1 kHz), as the device's sampler delivers them
    acc, sizes, total = 0.0, [], 0
    while total < n:
        acc += PERIOD_US / 1e6 * FS
        k = min(int(acc) - total, n - total)
        sizes.append(k)
        total += k
    return x, sizes


# the device's KAIROS on this stream: signed samples (x - 2048, |v| < 2^11), 12 bits, one beat
# per window segment, so sum_shift is 0 and the Master's sums are exact
KW = dict(rate_hz=FS, omega=2.0, lag=10, bits=12, max_samples_per_beat=8, seg_beats=1,
          beats_per_s=1e6 / PERIOD_US)


def device_partials(x, sizes):
    em = dk.Emissary(**KW)
    parts = KH.beat_partials(list(int(v) - 2048 for v in x), sizes, **KW)
    return em, np.array(parts, dtype=np.int64)


@pytest.fixture(scope="module")
def stream():
    x, sizes = make_stream(130, seed=5)
    em, parts = device_partials(x, sizes)
    return x, sizes, em, parts


@pytest.mark.parametrize("loss", [0.0, 0.03])
def test_master_agrees_with_reference(stream, loss):
    x, sizes, em, parts = stream
    nb = parts.shape[0]
    present = np.random.default_rng(11).random(nb) >= loss
    m = Master(windows=(1, 10, 60, 120), tau_max=120, fine_span=2.0, beat_s=PERIOD_US / 1e6)
    i = m.open_stream(1, 77, FS, PERIOD_US, sum_shift=em.sum_shift, phase_step=em.phase_step,
                      lag_samples=em.lag)
    beats = np.flatnonzero(present)
    p = parts[present]
    for a in range(0, beats.shape[0], 977):           # batches as the ingest path delivers them
        sl = slice(a, a + 977)
        m.ingest_batch(i, beats[sl], p[sl, 0], p[sl, 1], p[sl, 2], p[sl, 3], p[sl, 4])
    for r in m.windows(1):
        ref = kairos_ref.window(x, sizes, r["first_beat"], r["last_beat"], FS, lag=em.lag,
                                phase_step=em.phase_step, present=present)
        assert r["beats"] == ref["beats"]
        assert r["seconds"] == pytest.approx(ref["n"] / FS)
        # E0/EL: the device's d^2 sums are exact integers (sum_shift 0 here)
        assert em.sum_shift == 0
        assert r["E0"] == ref["E0"] and r["EL"] == ref["EL"]
        # T: Q14 phasor from a 1024-step table, each term rounded: relative error ~1e-4
        assert abs(r["T"] - ref["T"]) <= 2e-4 * math.sqrt(ref["E0"] * ref["EL"])
        assert abs(r["T_hat"] - ref["T_hat"]) < 2e-4
        assert r["C"] == pytest.approx(ref["C"], abs=4e-4)
        expect_cov = ref["beats"] / (r["last_beat"] - r["first_beat"] + 1)
        assert r["coverage"] == pytest.approx(expect_cov)
        if loss == 0:
            assert r["coverage"] == 1.0
        else:
            assert r["coverage"] < 1.0


def test_device_emissary_window_matches_master_1s_window(stream):
    """The device's own 1 s window coherence (Q16) equals the Master's 1 s window over the same
    partials (the sync layer's Emissary value) to Q16 resolution."""
    x, sizes, em, parts = stream
    m = Master(windows=(1,), tau_max=2, fine_span=2.0, beat_s=PERIOD_US / 1e6)
    i = m.open_stream(1, 1, FS, PERIOD_US, sum_shift=em.sum_shift)
    n_last = 500
    m.ingest_batch(i, np.arange(n_last), parts[:n_last, 0], parts[:n_last, 1], parts[:n_last, 2],
                   parts[:n_last, 3], parts[:n_last, 4])
    # the device's window: the newest em.capacity closed segments (one beat each here)
    k = n_last - 1 - em.capacity
    s = parts[k + 1:n_last].sum(axis=0)
    c_dev = dk.coherence_q16(int(s[0]), int(s[1]), int(s[2]), int(s[3])) / 65536.0
    assert parts[n_last - 1, 5] / 65536.0 == pytest.approx(c_dev, abs=2 / 65536)
    r = m.window(1, (n_last - 1 - k) * PERIOD_US / 1e6)
    assert r["first_beat"] == k + 1
    assert r["C"] == pytest.approx(c_dev, abs=2 / 65536)


def test_reference_against_a_plain_loop():
    rng = np.random.default_rng(2)
    x = rng.integers(0, 4096, 300)
    f_s, lag, step = 500.0, 3, dk.phase_step_for(2.0, 500)
    T, E0, EL = 0j, 0.0, 0.0
    for n in range(300):
        d = float(x[n] - x[n - 1]) if n >= 1 else 0.0
        dl = float(x[n - lag] - x[n - lag - 1]) if n - lag >= 1 else 0.0
        theta = 2 * math.pi * ((n * step) % (1 << 30)) / (1 << 30)
        T += (d * f_s) * (dl * f_s) * complex(math.cos(theta), math.sin(theta)) / f_s
        E0 += (d * f_s) ** 2 / f_s
        EL += (dl * f_s) ** 2 / f_s
    r = kairos_ref.kairos(x, f_s, lag=lag, phase_step=step)
    assert r["T"] == pytest.approx(T, rel=1e-12) and r["E0"] == pytest.approx(E0, rel=1e-12)
    assert r["EL"] == pytest.approx(EL, rel=1e-12)
    assert 0 <= r["C"] <= 1
    # the exact omega and the device's quantized omega differ by < 2 pi f_s / 2^31 rad/s
    r2 = kairos_ref.kairos(x, f_s, lag=lag, omega=2.0)
    assert abs(r2["T_hat"] - r["T_hat"]) < 1e-6
    sizes = [7] * 40 + [20]
    b = kairos_ref.beat_sums(x, sizes, f_s, lag=lag, phase_step=step)
    assert b[:, 4].sum() == 300
    assert b[:, 0].sum() == pytest.approx(T.real, rel=1e-9)
    w = kairos_ref.window(x, sizes, 0, len(sizes) - 1, f_s, lag=lag, phase_step=step)
    assert w["T"] == pytest.approx(T, rel=1e-12) and w["beats"] == 41
