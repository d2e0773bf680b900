"""The entropy model on the device's features (host/model/features.py): the fit on synthetic
features, held-out and leave-one-load-out AUC, the device-exact threat, MODEL fields, and
device/model_default.py."""
import importlib.util

import numpy as np
import pytest

from device.arbiter import Arbiter
from becomingone.errors import UserError
from becomingone.model import features as F


def synthetic_rows(seed=1):
    """Per-record feature rows like the device's: healthy machines at various levels with
    Gaussian-ish kurtosis, faulty ones louder and/or impulsive; loads 0/1."""
    rng = np.random.default_rng(seed)
    X, y, w, g, loads = [], [], [], [], []
    gi = 0
    for load in (0, 1):
        for k in range(4):
            for faulty in (0, 1):
                n = 60
                level = rng.normal(-3.6 + 0.3 * k + (1.2 if faulty else 0.0), 0.05, n)
                kurt = rng.normal(1.55 + (1.5 if faulty else 0.0), 0.05, n)
                crest = rng.normal(1.9 + (0.8 if faulty else 0.0), 0.1, n)
                anoms = rng.poisson(60 if faulty else 0.2, n)
                X.append(np.stack([level, kurt, crest, anoms], 1))
                y.append(np.full(n, faulty))
                w.append(np.full(n, 1.0 / n))
                g.append(np.full(n, gi))
                loads.append(np.full(n, float(load)))
                gi += 1
    return (np.vstack(X), np.concatenate(y), np.concatenate(w), np.concatenate(g),
            np.concatenate(loads))


def test_fit_separates_and_reports_held_out_auc():
    X, y, w, g, loads = synthetic_rows()
    m = F.train(X[:, :2], y, w, g, ["level", "kurt"], loads=loads)
    assert m.coef["level"] > 0 and m.coef["kurt"] > 0 and m.coef["crest"] == 0.0
    assert m.auc >= 0.99 and m.auc_logo >= 0.99
    assert set(m.lolo) == {"0", "1"} and all(v >= 0.99 for v in m.lolo.values())
    assert m.l2 in F.L2_GRID and len(m.l2_table) == len(F.L2_GRID)
    d = m.as_dict()
    for k in ("bias", "w_level", "w_kurt", "w_crest", "w_anoms", "auc", "auc_holdout",
              "auc_leave_one_load_out", "features", "l2"):
        assert k in d
    # the healthy rows sit well below ALERT, the faulty ones above QUARANTINE (median)
    p = 1 / (1 + np.exp(-(X[:, :2] @ [m.coef["level"], m.coef["kurt"]] + m.bias)))
    assert np.median(p[y == 0]) < 0.2 and np.median(p[y == 1]) > 0.85


def test_weights_balance_classes_and_groups():
    X, y, w, g, _ = synthetic_rows()
    # ten times as many rows of one healthy group must not move the fit (each group weighs 1)
    sel = g == 0
    X2 = np.vstack([X] + [X[sel]] * 9)
    y2 = np.concatenate([y] + [y[sel]] * 9)
    g2 = np.concatenate([g] + [g[sel]] * 9)
    w2 = np.concatenate([w] + [w[sel]] * 9)
    for gid in (0,):
        s = g2 == gid
        w2[s] = 1.0 / s.sum()
    a = F.fit_logistic(X[:, :2], y, F.balance(y, w), 1e-2)
    b = F.fit_logistic(X2[:, :2], y2, F.balance(y2, w2), 1e-2)
    assert np.allclose(a[0], b[0], rtol=0.05) and abs(a[1] - b[1]) < 0.05 * abs(a[1]) + 0.05


def test_stronger_penalty_gives_smaller_weights():
    X, y, w, _, _ = synthetic_rows()
    c1, _ = F.fit_logistic(X[:, :2], y, F.balance(y, w), 1e-1)
    c2, _ = F.fit_logistic(X[:, :2], y, F.balance(y, w), 1e-3)
    assert np.all(np.abs(c1) < np.abs(c2))


def test_errors():
    X, y, w, g, _ = synthetic_rows()
    with pytest.raises(UserError, match="both labels"):
        F.train(X[:, :2], np.zeros_like(y), w, g, ["level", "kurt"])
    bad = X[:, :2].copy()
    bad[3, 0] = np.nan
    with pytest.raises(UserError, match="NaN"):
        F.train(bad, y, w, g, ["level", "kurt"])


def test_device_threat_is_the_arbiters():
    rng = np.random.default_rng(3)
    for model in ((3.19, 3.16, 2.83, 0.0, 0.0), (-2.0, 1.5, -0.7, 0.9, 0.05), F.SEED):
        arb = Arbiter(model=model)
        lv = rng.integers(-2000, 600, 300)
        ku = rng.integers(0, 2000, 300)
        cr = rng.integers(0, 1500, 300)
        an = rng.integers(0, 1100, 300)
        ours = F.device_threat_q16(model, lv, ku, cr, an)
        ref = [arb.threat_q16(int(a), level=int(l), kurt=int(k), crest=int(c))
               for l, k, c, a in zip(lv, ku, cr, an)]
        assert ours.tolist() == ref
    # the seed's validation number: 5 anomalies -> 42315 (0.6457)
    assert F.device_threat_q16(F.SEED, 0, 0, 0, 5) == 42315


def test_model_fields():
    assert F.model_fields({"w": 0.12, "b": -1}) == {"bias": -1.0, "w_level": 0.0, "w_kurt": 0.0,
                                                      "w_crest": 0.0, "w_anoms": 0.12}
    assert F.model_fields({"bias": 1, "w_kurt": 2})["w_level"] == 0.0
    with pytest.raises(UserError, match="w_level = 16.*-16 < w_level < 16"):
        F.model_fields({"bias": 0, "w_level": 16})
    with pytest.raises(UserError, match="not both"):
        F.model_fields({"bias": 0, "w": 1})
    with pytest.raises(UserError, match="needs bias"):
        F.model_fields({})
    with pytest.raises(UserError, match="bias = 'x'"):
        F.model_fields({"bias": "x"})


def test_write_default_round_trips(tmp_path):
    X, y, w, g, loads = synthetic_rows()
    m = F.train(X[:, :2], y, w, g, ["level", "kurt"], loads=loads, l2=1e-2)
    p = tmp_path / "model_default.py"
    text = F.write_default(str(p), m, ["trained on synthetic rows", "AUC %.4f" % m.auc])
    assert "# trained on synthetic rows" in text and text.count("MODEL = (") == 1
    spec = importlib.util.spec_from_file_location("md", str(p))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert np.allclose(mod.MODEL, m.weights(), atol=1e-4)
    Arbiter(model=mod.MODEL)          # the device accepts it


def test_shipped_default_is_a_trained_feature_model():
    from device.model_default import MODEL
    src = open(importlib.util.find_spec("device.model_default").origin, encoding="utf-8").read()
    assert "becomingone model train --from-dataset" in src and "leave-one-load-out" in src
    assert len(MODEL) == 5 and MODEL != F.SEED
    # a healthy Gaussian machine at the emulator's default level (0.05 g rms broadband: level
    # -3.8, kurt log2(3)) sits well below ALERT; strongly impulsive vibration is QUARANTINE
    q = F.device_threat_q16(MODEL, int(-3.8 * 256), int(1.585 * 256), int(1.9 * 256), 0)
    assert q < 0.1 * 65536
    q = F.device_threat_q16(MODEL, int(-2.0 * 256), int(4.0 * 256), int(3.4 * 256), 300)
    assert q >= 0.85 * 65536
