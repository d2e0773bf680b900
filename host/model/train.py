"""Entropy-model training (SPEC 4.5): logistic regression threat = sigmoid(w * anoms + b).

The device's EntropyCore computes threat = sigmoid(w . anoms + b) each beat (default w = 0.12,
b = 0).  The host fits w, b on labelled history: features = anomalies per beat (or per window),
labels = 1 for beats inside a fault (emulated faults, or marked by the user), 0 otherwise.

Fit: Newton's method (IRLS) on the mean log-loss with an L2 penalty l2/2 * |w|^2 on the weights
(not the bias), which keeps w finite on perfectly separable data; step halving guarantees the
penalised loss never increases.  Quality: the ROC AUC, rank-based (Mann-Whitney U with average
ranks for ties), on the training data and, with holdout > 0, on a held-out part.

Public API
----------
    fit(X, y, l2=1e-3, max_iter=100, tol=1e-10, holdout=0.0, seed=0) -> Model
        X: (n,) or (n, k) features; y: (n,) 0/1 labels (both classes present)
    Model: w (float for one feature, else tuple), b, auc (train), auc_holdout (or None),
           loss, iterations, converged, n, positives;  model.predict(X) -> probabilities;
           model.frame_fields(version) -> the MODEL frame fields (the seed form: bias b, w_anoms w)
           (one feature only: the device model is scalar)
    auc(scores, labels) -> float
    sigmoid(z) -> numpy array
    load_labelled(path) -> (X, y) from a CSV with a header: feature column(s) then `label`
"""
import csv

import numpy as np

from becomingone.errors import UserError

F32_MAX = 3.4028234663852886e38


def sigmoid(z):
    z = np.asarray(z, dtype=np.float64)
    out = np.empty_like(z)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    e = np.exp(z[~pos])
    out[~pos] = e / (1.0 + e)
    return out


def auc(scores, labels):
    """ROC AUC = P(score of a positive > score of a negative), ties count 1/2 (rank-based)."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel().astype(bool)
    if s.shape != y.shape:
        raise ValueError("scores and labels differ in length")
    n1 = int(y.sum())
    n0 = y.shape[0] - n1
    if n1 == 0 or n0 == 0:
        raise ValueError("AUC needs both classes (positives %d, negatives %d)" % (n1, n0))
    order = np.argsort(s, kind="mergesort")
    ss = s[order]
    ranks = np.empty(s.shape[0], dtype=np.float64)
    # average ranks over ties (1-based)
    starts = np.flatnonzero(np.concatenate(([True], ss[1:] != ss[:-1])))
    ends = np.concatenate((starts[1:], [ss.shape[0]]))
    avg = (starts + ends + 1) / 2.0
    ranks[order] = np.repeat(avg, ends - starts)
    u = ranks[y].sum() - n1 * (n1 + 1) / 2.0
    return float(u / (n1 * n0))


class Model:
    """A fitted entropy model: the weights (coef, intercept), the fit's loss, iterations and
    convergence, and its AUC on the training and held-out rows. Raises nothing."""
    def __init__(self, w, b, loss, iterations, converged, n, positives, auc_train, auc_holdout):
        self.coef = np.asarray(w, dtype=np.float64)
        self.w = float(self.coef[0]) if self.coef.shape[0] == 1 else tuple(float(x) for x in self.coef)
        self.b = float(b)
        self.loss, self.iterations, self.converged = float(loss), int(iterations), bool(converged)
        self.n, self.positives = int(n), int(positives)
        self.auc, self.auc_holdout = auc_train, auc_holdout

    def predict(self, X):
        X = _features(X)
        return sigmoid(X @ self.coef + self.b)

    def frame_fields(self, version):
        if self.coef.shape[0] != 1:
            raise UserError("the device model has one weight (anoms); this model has %d features"
                            % self.coef.shape[0])
        if not (abs(self.w) < F32_MAX and abs(self.b) < F32_MAX):
            raise UserError("model weights do not fit a float32 MODEL frame")
        return {"model_version": int(version), "bias": self.b, "w_level": 0.0, "w_kurt": 0.0,
                "w_crest": 0.0, "w_anoms": self.w}

    def as_dict(self):
        return dict(w=self.w, b=self.b, auc=self.auc, auc_holdout=self.auc_holdout, loss=self.loss,
                    iterations=self.iterations, converged=self.converged, n=self.n,
                    positives=self.positives)

    def __repr__(self):
        return "Model(%r)" % (self.as_dict(),)


def _features(X):
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2:
        raise ValueError("features must be (n,) or (n, k)")
    if not np.all(np.isfinite(X)):
        raise UserError("features contain NaN or infinity")
    return X


def _loss(X, y, w, b, l2):
    z = X @ w + b
    # log(1 + e^z) - y z, stable
    ll = np.logaddexp(0.0, z) - y * z
    return float(ll.mean() + 0.5 * l2 * float(w @ w))


def _newton(X, y, l2, max_iter, tol):
    n, k = X.shape
    w = np.zeros(k)
    p0 = min(max(y.mean(), 1e-6), 1 - 1e-6)
    b = float(np.log(p0 / (1 - p0)))
    loss = _loss(X, y, w, b, l2)
    A = np.hstack([X, np.ones((n, 1))])
    reg = np.full(k + 1, l2)
    reg[-1] = 0.0
    converged = False
    it = 0
    for it in range(1, max_iter + 1):
        p = sigmoid(X @ w + b)
        g = A.T @ (p - y) / n + reg * np.concatenate([w, [0.0]])
        s = p * (1 - p)
        H = (A * s[:, None]).T @ A / n + np.diag(reg) + 1e-12 * np.eye(k + 1)
        try:
            step = np.linalg.solve(H, g)
        except np.linalg.LinAlgError:
            step = np.linalg.lstsq(H, g, rcond=None)[0]
        t = 1.0
        while True:
            w_new, b_new = w - t * step[:k], b - t * step[k]
            new = _loss(X, y, w_new, b_new, l2)
            if new <= loss + 1e-15 or t < 1e-10:
                break
            t *= 0.5
        done = abs(loss - new) <= tol * max(1.0, abs(loss)) and float(np.abs(t * step).max()) < 1e-8 + tol
        w, b, loss = w_new, b_new, new
        if done or float(np.abs(g).max()) < 1e-12:
            converged = True
            break
    return w, b, loss, it, converged


def fit(X, y, l2=1e-3, max_iter=100, tol=1e-10, holdout=0.0, seed=0):
    X = _features(X)
    y = np.asarray(y).ravel()
    if y.shape[0] != X.shape[0]:
        raise UserError("%d feature rows but %d labels" % (X.shape[0], y.shape[0]))
    if not np.all((y == 0) | (y == 1)):
        raise UserError("labels must be 0 or 1")
    y = y.astype(np.float64)
    if not 0.0 <= holdout < 1.0:
        raise UserError("holdout must be in [0, 1)")
    if l2 < 0:
        raise UserError("l2 must be >= 0")
    train = np.ones(y.shape[0], dtype=bool)
    if holdout > 0:
        rng = np.random.default_rng(seed)
        train[rng.permutation(y.shape[0])[:int(round(holdout * y.shape[0]))]] = False
    Xt, yt = X[train], y[train]
    npos = int(yt.sum())
    if npos == 0 or npos == yt.shape[0]:
        raise UserError("training needs both labels (positives %d of %d rows)" % (npos, yt.shape[0]))
    w, b, loss, it, conv = _newton(Xt, yt, float(l2), int(max_iter), float(tol))
    a_train = auc(Xt @ w + b, yt)
    a_hold = None
    if holdout > 0:
        yh = y[~train]
        if 0 < yh.sum() < yh.shape[0]:
            a_hold = auc(X[~train] @ w + b, yh)
    return Model(w, b, loss, it, conv, yt.shape[0], npos, a_train, a_hold)


def read_csv_rows(path, what="file"):
    """Every row of a CSV file as lists of strings; UserError naming the file if unreadable."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.reader(f))
    except OSError as e:
        raise UserError("cannot read %s %s: %s" % (what, path, e.strerror or e)) from None
    except (UnicodeDecodeError, csv.Error) as e:
        raise UserError("%s %s is not a UTF-8 CSV file: %s" % (what, path, e)) from None


def load_labelled(path):
    """(X, y) from a CSV file with a header row: one or more feature columns and `label`."""
    rows = read_csv_rows(path, "labelled history")
    if not rows or "label" not in rows[0]:
        raise UserError("%s: needs a header row with a `label` column and feature columns" % path)
    head = rows[0]
    li = head.index("label")
    fi = [i for i in range(len(head)) if i != li]
    if not fi:
        raise UserError("%s: no feature column" % path)
    X, y = [], []
    for n, r in enumerate(rows[1:], start=2):
        if not r:
            continue
        try:
            X.append([float(r[i]) for i in fi])
            y.append(int(r[li]))
        except (ValueError, IndexError):
            raise UserError("%s line %d: expected numbers in %d columns" % (path, n, len(head))) from None
    return np.asarray(X), np.asarray(y)
