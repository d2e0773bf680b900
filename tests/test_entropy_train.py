"""Entropy-model training: recovers a known logistic model, AUC equals the pairwise definition,
separable data stays finite, MODEL frame fields, bad input."""
import numpy as np
import pytest

from becomingone.model.train import auc, fit, load_labelled, sigmoid
from becomingone.errors import UserError


def synthetic(n, w, b, seed):
    rng = np.random.default_rng(seed)
    anoms = rng.poisson(lam=rng.choice([1.0, 4.0, 12.0], size=n)).astype(float)
    y = (rng.random(n) < sigmoid(w * anoms + b)).astype(int)
    return anoms, y


def test_recovers_known_model():
    x, y = synthetic(40000, 0.55, -3.0, seed=1)
    m = fit(x, y, l2=0.0)
    assert m.converged and m.iterations < 30
    assert m.w == pytest.approx(0.55, abs=0.03) and m.b == pytest.approx(-3.0, abs=0.1)
    # the AUC of the fitted scores equals the AUC of the true model's scores (same ranking)
    assert m.auc == pytest.approx(auc(0.55 * x - 3.0, y), abs=1e-12)
    assert 0.8 < m.auc < 1.0
    p = m.predict(x)
    assert p.shape == x.shape and np.all((p > 0) & (p < 1))


def test_auc_matches_pairwise_definition_with_ties():
    rng = np.random.default_rng(3)
    s = rng.integers(0, 6, 400).astype(float)
    y = rng.random(400) < 0.3
    pos, neg = s[y], s[~y]
    pair = ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (pos.size * neg.size)
    assert auc(s, y) == pytest.approx(pair, abs=1e-12)
    assert auc([1, 2, 3, 4], [0, 0, 1, 1]) == 1.0
    assert auc([4, 3, 2, 1], [0, 0, 1, 1]) == 0.0
    with pytest.raises(ValueError):
        auc([1, 2], [1, 1])


def test_separable_data_gives_finite_weights_and_perfect_auc():
    x = np.concatenate([np.arange(0, 5), np.arange(10, 15)]).astype(float)
    y = np.array([0] * 5 + [1] * 5)
    m = fit(x, y, l2=1e-3)
    assert np.isfinite(m.w) and m.w > 0 and m.auc == 1.0
    f = m.frame_fields(7)
    assert f == {"model_version": 7, "bias": m.b, "w_level": 0.0, "w_kurt": 0.0, "w_crest": 0.0,
                 "w_anoms": m.w}           # the seed-style anomaly-count model as MODEL weights
    # the device's threat at 5 anoms with the seed's defaults
    assert float(sigmoid(0.12 * 5 + 0.0)) == pytest.approx(0.6457, abs=1e-4)


def test_multi_feature_and_holdout():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(5000, 2))
    y = (rng.random(5000) < sigmoid(2.0 * X[:, 0] - 1.0 * X[:, 1] + 0.5)).astype(int)
    m = fit(X, y, holdout=0.3, seed=2)
    assert m.w[0] == pytest.approx(2.0, abs=0.25) and m.w[1] == pytest.approx(-1.0, abs=0.2)
    assert m.auc_holdout is not None and abs(m.auc_holdout - m.auc) < 0.05
    assert m.n == 3500
    with pytest.raises(UserError, match="one weight"):
        m.frame_fields(1)


def test_bad_input_and_csv(tmp_path):
    with pytest.raises(UserError, match="both labels"):
        fit([1, 2, 3], [0, 0, 0])
    with pytest.raises(UserError, match="0 or 1"):
        fit([1, 2, 3], [0, 2, 1])
    with pytest.raises(UserError, match="labels"):
        fit([1, 2, 3], [0, 1])
    with pytest.raises(UserError, match="NaN"):
        fit([1, float("nan")], [0, 1])
    p = tmp_path / "h.csv"
    p.write_text("anoms,label\n0,0\n1,0\n7,1\n9,1\n")
    X, y = load_labelled(str(p))
    assert X.shape == (4, 1) and list(y) == [0, 0, 1, 1]
    p.write_text("anoms,lbl\n0,0\n")
    with pytest.raises(UserError, match="label"):
        load_labelled(str(p))
    p.write_text("anoms,label\nx,0\n")
    with pytest.raises(UserError, match="line 2"):
        load_labelled(str(p))
