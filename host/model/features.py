"""The entropy model on the features the device sends (SPEC 4.5, wire v2): training, held-out
AUC, the exact device threat, MODEL fields, and device/model_default.py.

    threat = sigmoid(bias + w_level*level + w_kurt*kurt + w_crest*crest + w_anoms*anoms)

level, kurt, crest in octaves (TELEMETRY's Q8 / 256: log2 of the RMS of the first difference in
g, of its kurtosis, of its crest factor over the device's ~1 s window), anoms a count
(shared/vibration.py, device/arbiter.py).

Fit: logistic regression by Newton's method (IRLS) on the features standardised to mean 0 and
standard deviation 1, with sample weights (each recording or device-run weighs the same, and the
two classes weigh half each, so one long healthy record cannot outvote the faults or the reverse)
and an L2 penalty l2/2 |beta|^2 on the standardised weights (not the bias), which keeps the
weights finite on separable data; the weights are then mapped back to raw feature units.
``l2="auto"`` picks the penalty from a grid by the weighted log-loss of leave-one-group-out
predictions (a group = a recording / synthetic machine / device).

Quality: ROC AUC (host/entropy_train.auc) on the training rows, on leave-one-group-out
predictions (every row scored by a model fitted without its group), and leave-one-load-out
(per load value: fitted without that load's recordings, scored on them against the healthy
rows).

Public API
----------
FEATURES, SEED (the seed model), model_fields(dict) -> MODEL frame fields
device_threat_q16(weights, level_q8, kurt_q8, crest_q8, anoms) -> numpy Q16 (bit-exact with
    device/arbiter.py's model threat)
fit_logistic(X, y, w, l2) -> (coef, bias)
train(X, y, w, groups, features, l2="auto", loads=None, healthy_mask=None) -> FeatureModel
FeatureModel: .weights() (bias, w_level, w_kurt, w_crest, w_anoms), .as_dict(), .auc, ...
load_model_file(path) -> FeatureModel;  write_default(path, model, provenance_lines)
"""
import json
import math

import numpy as np

from becomingone.model.train import auc, sigmoid
from becomingone.errors import UserError

FEATURES = ("level", "kurt", "crest", "anoms")
SEED = (0.0, 0.0, 0.0, 0.0, 0.12)            # threat = sigmoid(0.12 * anoms): the seed's model
LIMITS = {"bias": 64.0, "w_level": 16.0, "w_kurt": 16.0, "w_crest": 16.0, "w_anoms": 8.0}
FIELDS = ("bias", "w_level", "w_kurt", "w_crest", "w_anoms")
L2_GRID = (1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4)


def model_fields(m):
    """MODEL frame fields from a dict with the feature model's fields (missing ones 0) or the
    seed's form {w, b}; UserError naming the value and the device's limit when out of range."""
    if not isinstance(m, dict):
        raise UserError("a model is an object with bias, w_level, w_kurt, w_crest, w_anoms "
                        "(or the seed's w, b)")
    if any(k in m for k in FIELDS):
        out = {k: m.get(k, 0.0) for k in FIELDS}
        if "w" in m or "b" in m:
            raise UserError("give either the feature model (bias, w_level, ...) or the seed's "
                            "w, b, not both")
    elif "w" in m or "b" in m:
        out = {"bias": m.get("b", 0.0), "w_level": 0.0, "w_kurt": 0.0, "w_crest": 0.0,
               "w_anoms": m.get("w", 0.0)}
    else:
        raise UserError("a model needs bias, w_level, w_kurt, w_crest, w_anoms (or w, b)")
    for k, v in out.items():
        try:
            f = float(v)
        except (TypeError, ValueError):
            f = float("nan")
        if not (math.isfinite(f) and -LIMITS[k] < f < LIMITS[k]):
            raise UserError("model %s = %r: allowed a number with -%g < %s < %g (the device's "
                            "fixed-point range)" % (k, v, LIMITS[k], k, LIMITS[k]))
        out[k] = f
    return out


# ---------------------------------------------------------------- the device's threat, exactly

def _sig_table():
    from device.arbiter import _SIG
    return np.frombuffer(bytes(_SIG), dtype=np.uint16).astype(np.int64)


def device_threat_q16(weights, level, kurt, crest, anoms, a_max=1024):
    """Q16 model threat the device computes (device/arbiter.py step: Q12 weights, z clamped to
    +-Z_LIM (12 - 2^-12), the device's sigmoid table in steps of 1/32 with linear
    interpolation) for Q8 features and counts."""
    from device.arbiter import Z_LIM
    b, wl, wk, wc, wa = weights
    bq = int(round(b * 4096))
    wlq, wkq, wcq = (int(round(v * 4096)) for v in (wl, wk, wc))
    waq = int(round(wa * 65536))
    lv = np.asarray(level, dtype=np.int64)
    a = np.clip(np.asarray(anoms, dtype=np.int64), 0, a_max)
    z = (bq + ((wlq * lv) >> 8) + ((wkq * np.asarray(kurt, dtype=np.int64)) >> 8)
         + ((wcq * np.asarray(crest, dtype=np.int64)) >> 8) + ((waq * a + 8) >> 4))
    z = np.clip(z, -Z_LIM, Z_LIM)
    t = _sig_table()
    u = z + (12 << 12)
    i = u >> 7
    f = u & 0x7F
    lo = t[i]
    hi = t[np.minimum(i + 1, t.shape[0] - 1)]
    return np.where(f == 0, lo, lo + (((hi - lo) * f + 64) >> 7))


# ---------------------------------------------------------------- fitting

def fit_logistic(X, y, w, l2, max_iter=100, tol=1e-10):
    """Weighted, L2-penalised (standardised) logistic regression: (coef in raw units, bias)."""
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    w = w / w.sum()
    mu = (w[:, None] * X).sum(0)
    sd = np.sqrt((w[:, None] * (X - mu) ** 2).sum(0))
    sd[sd < 1e-12] = 1.0
    Z = (X - mu) / sd
    n, k = Z.shape
    A = np.hstack([Z, np.ones((n, 1))])
    beta = np.zeros(k + 1)
    p0 = min(max(float((w * y).sum()), 1e-6), 1 - 1e-6)
    beta[k] = math.log(p0 / (1 - p0))
    reg = np.full(k + 1, float(l2))
    reg[k] = 0.0

    def loss(bt):
        z = A @ bt
        return float((w * (np.logaddexp(0.0, z) - y * z)).sum() + 0.5 * (reg * bt * bt).sum())
    cur = loss(beta)
    for _ in range(max_iter):
        p = sigmoid(A @ beta)
        g = A.T @ (w * (p - y)) + reg * beta
        H = (A * (w * p * (1 - p))[:, None]).T @ A + np.diag(reg) + 1e-12 * np.eye(k + 1)
        step = np.linalg.solve(H, g)
        t = 1.0
        while True:
            nb = beta - t * step
            new = loss(nb)
            if new <= cur + 1e-15 or t < 1e-10:
                break
            t *= 0.5
        done = abs(cur - new) <= tol * max(1.0, abs(cur))
        beta, cur = nb, new
        if done:
            break
    coef = beta[:k] / sd
    return coef, float(beta[k] - coef @ mu)


def balance(y, w):
    """Weights rescaled so each class sums to 1/2."""
    w = np.asarray(w, dtype=np.float64).copy()
    y = np.asarray(y)
    for c in (0, 1):
        s = w[y == c].sum()
        if s > 0:
            w[y == c] *= 0.5 / s
    return w


def _logo_scores(X, y, w, groups, l2):
    """Leave-one-group-out decision values (each group scored by a fit without it)."""
    out = np.zeros(X.shape[0])
    for g in np.unique(groups):
        te = groups == g
        tr = ~te
        if len(np.unique(y[tr])) < 2:
            out[te] = np.nan
            continue
        c, b = fit_logistic(X[tr], y[tr], balance(y[tr], w[tr]), l2)
        out[te] = X[te] @ c + b
    return out


def choose_l2(X, y, w, groups, grid=L2_GRID):
    """(best l2, {l2: held-out weighted log-loss}) by leave-one-group-out."""
    table = {}
    for l2 in grid:
        z = _logo_scores(X, y, w, groups, l2)
        ok = np.isfinite(z)
        ll = np.logaddexp(0.0, z[ok]) - y[ok] * z[ok]
        wb = balance(y[ok], w[ok])
        table[l2] = float((wb * ll).sum() / wb.sum())
    best = min(table, key=lambda k: (round(table[k], 6), -k))
    return best, table


class FeatureModel:
    def __init__(self, features, coef, bias, l2, n, positives, auc_train, auc_logo,
                 lolo, l2_table=None, extra=None):
        self.features = tuple(features)
        self.coef = {f: 0.0 for f in FEATURES}
        for f, c in zip(features, coef):
            self.coef[f] = float(c)
        self.bias = float(bias)
        self.l2 = l2
        self.n, self.positives = int(n), int(positives)
        self.auc = auc_train
        self.auc_logo = auc_logo
        self.lolo = lolo or {}
        self.l2_table = l2_table or {}
        self.extra = dict(extra or {})

    def weights(self):
        return (self.bias, self.coef["level"], self.coef["kurt"], self.coef["crest"],
                self.coef["anoms"])

    def fields(self):
        return model_fields(dict(zip(FIELDS, self.weights())))

    def as_dict(self):
        d = dict(zip(FIELDS, (round(v, 6) for v in self.weights())))
        d.update(kind="features", features=list(self.features), l2=self.l2, n=self.n,
                 positives=self.positives, auc=self.auc, auc_holdout=self.auc_logo,
                 auc_leave_one_load_out=self.lolo,
                 l2_logloss={"%g" % k: round(v, 5) for k, v in self.l2_table.items()})
        d.update(self.extra)
        return d


def _auc(s, y):
    y = np.asarray(y)
    ok = np.isfinite(s)
    if ok.sum() == 0 or y[ok].all() or not y[ok].any():
        return None
    return round(auc(s[ok], y[ok]), 4)


def train(X, y, w, groups, features, l2="auto", loads=None, healthy=None):
    """Fit on rows X (n, len(features)) with labels y (1 = faulty), row weights w (summing to
    one per group is the usual choice) and group ids; loads (n,) optional (NaN = no load, e.g.
    synthetic machines) for the leave-one-load-out AUC."""
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y).astype(np.int64)
    w = np.asarray(w, dtype=np.float64)
    groups = np.asarray(groups)
    if X.ndim != 2 or X.shape[1] != len(features) or X.shape[0] != y.shape[0]:
        raise UserError("training rows: %s features for %s labels" % (X.shape, y.shape))
    if not np.all(np.isfinite(X)):
        raise UserError("training features contain NaN or infinity")
    npos = int(y.sum())
    if npos == 0 or npos == y.shape[0]:
        raise UserError("training needs both labels (faulty rows %d of %d)" % (npos, y.shape[0]))
    table = {}
    if l2 == "auto":
        l2, table = choose_l2(X, y, w, groups)
    l2 = float(l2)
    if l2 < 0:
        raise UserError("l2 must be >= 0")
    wb = balance(y, w)
    coef, b = fit_logistic(X, y, wb, l2)
    z = X @ coef + b
    a_train = _auc(z, y)
    zl = _logo_scores(X, y, w, groups, l2) if len(np.unique(groups)) > 2 else None
    a_logo = _auc(zl, y) if zl is not None else None
    extra = {}
    if loads is not None:
        # the same figures on the recordings alone (rows with a load; synthetic rows have none)
        real = np.isfinite(np.asarray(loads, dtype=np.float64))
        extra["auc_recordings"] = _auc(z[real], y[real])
        extra["auc_holdout_recordings"] = _auc(zl[real], y[real]) if zl is not None else None
    lolo = {}
    if loads is not None:
        loads = np.asarray(loads, dtype=np.float64)
        for L in sorted(set(loads[np.isfinite(loads)].tolist())):
            held = loads == L
            tr = ~held
            if len(np.unique(y[tr])) < 2:
                continue
            c2, b2 = fit_logistic(X[tr], y[tr], balance(y[tr], w[tr]), l2)
            # the held-out load's faulty rows against every real healthy row
            neg = (y == 0) & np.isfinite(loads)
            sel = (held & (y == 1)) | neg
            lolo["%g" % L] = _auc(X[sel] @ c2 + b2, y[sel])
    return FeatureModel(features, coef, b, l2, X.shape[0], npos, a_train, a_logo, lolo, table,
                        extra)


# ---------------------------------------------------------------- healthy-only baseline

def baseline(weights, X, quantile=0.999, target=0.1):
    """A model for one machine from its healthy history alone: the feature weights of
    ``weights`` (the shipped model's) kept, the bias moved so that the ``quantile`` of the
    machine's healthy z sits at threat ``target``. X: (n, 4) rows of level, kurt, crest (octaves)
    and anoms. Returns (weights, info). With the shipped weights, ALERT (0.6) then needs z to
    rise logit(0.6) - logit(target) above the machine's healthy extreme: for target 0.1 that is
    2.6, i.e. about 0.8 octave more level (1.8 x the RMS) or 0.9 octave more kurtosis."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != 4 or X.shape[0] < 100:
        raise UserError("a baseline needs at least 100 healthy rows of level, kurt, crest, anoms "
                        "(got %s)" % (X.shape,))
    if not (0.5 <= quantile < 1.0 and 0.0 < target < 0.6):
        raise UserError("baseline: quantile in [0.5, 1) and target threat in (0, 0.6) "
                        "(below ALERT)")
    b0, wl, wk, wc, wa = (float(v) for v in weights)
    z = X @ np.array([wl, wk, wc, wa])
    zq = float(np.quantile(z, quantile))
    b = math.log(target / (1.0 - target)) - zq
    w = (b, wl, wk, wc, wa)
    model_fields(dict(zip(FIELDS, w)))        # within the device's range
    return w, {"rows": int(X.shape[0]), "quantile": quantile, "target_threat": target,
               "bias_shift": round(b - b0, 4), "healthy_z_quantile": round(zq, 4)}


# ---------------------------------------------------------------- files

def load_model_file(path):
    """A model JSON file (`becomingone model train` writes DATA/entropy_model.json)."""
    try:
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
    except OSError as e:
        raise UserError("cannot read model file %s: %s" % (path, e.strerror or e)) from None
    except ValueError as e:
        raise UserError("model file %s is not valid JSON: %s" % (path, e)) from None
    fl = model_fields(d)
    m = FeatureModel(FEATURES, [fl["w_level"], fl["w_kurt"], fl["w_crest"], fl["w_anoms"]],
                     fl["bias"], d.get("l2"), d.get("n", 0), d.get("positives", 0), d.get("auc"),
                     d.get("auc_holdout"), d.get("auc_leave_one_load_out"))
    return m


def write_default(path, model, provenance):
    """device/model_default.py: MODEL = (bias, w_level, w_kurt, w_crest, w_anoms) with the
    provenance lines as comments (the device compiles the file; comments cost it nothing)."""
    w = model.fields()
    lines = ["# The shipped entropy model (docs/DEVICE.md \"The shipped model\"): written by",
             "# `becomingone model train --from-dataset ... --write-default`, do not edit by hand.",
             "# threat = sigmoid(bias + w_level*level + w_kurt*kurt + w_crest*crest + w_anoms*anoms)",
             "#   level, kurt, crest: log2 of the RMS (g), kurtosis and crest factor of the first",
             "#   difference of the samples over the ~1 s window; anoms: a count (shared/vibration.py)"]
    lines += ["# " + p for p in provenance]
    lines.append("MODEL = (%.4f, %.4f, %.4f, %.4f, %.5f)   # bias, w_level, w_kurt, w_crest, w_anoms"
                 % tuple(w[k] for k in FIELDS))
    text = "\n".join(lines) + "\n"
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return text
