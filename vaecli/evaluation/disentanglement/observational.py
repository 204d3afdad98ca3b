"""The observational metrics: they score samples of codes (N, D) float and the factors behind
them (N, F) int indices, train and test drawn independently.

    mig(codes, factors)                                  mutual information gap
    dci(codes_tr, factors_tr, codes_te, factors_te)      disentanglement, completeness, informativeness
    sap(codes_tr, factors_tr, codes_te, factors_te)      separated attribute predictability
    modularity(codes, factors[, codes_test=, factors_test=])   modularity (+ explicitness)

`run_mig`, `run_dci`, `run_sap`, `run_modularity` draw those samples through `represent`
with disentanglement_lib's sample sizes by default (what METRICS runs).
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from vaecli.errors import UsageError
from vaecli.evaluation.disentanglement import probes
from vaecli.evaluation.disentanglement.sampling import (Represent, check_codes, check_factors, check_pair,
                                                        check_sizes, sample_codes)


# ------------------------------------------------------------------------ discrete information
@partial(jax.jit, static_argnames=("num_bins",))
def discretize(codes: jax.Array, num_bins: int = 20) -> jax.Array:
    """Each code column into num_bins equal-width bins between its min and max, 0..num_bins-1:
    dlib's histogram discretizer (np.digitize on np.histogram's edges). A constant column
    goes to one bin, as np.histogram's (min - 0.5, max + 0.5) range puts it."""
    lo, hi = codes.min(0), codes.max(0)
    same = hi == lo
    lo, hi = jnp.where(same, lo - 0.5, lo), jnp.where(same, hi + 0.5, hi)
    edges = lo + (hi - lo) / num_bins * jnp.arange(num_bins)[:, None]  # (num_bins, D), left edges
    return jnp.sum(codes[None] >= edges[:, None], axis=0).astype(jnp.int32) - 1


@partial(jax.jit, static_argnames=("num_bins", "num_values"))
def _mutual_info(binned, factors, num_bins: int, num_values: int):
    # All (code, factor) joints at once: one-hot counts contracted over the points.
    a = jax.nn.one_hot(binned, num_bins)  # (N, D, B)
    b = jax.nn.one_hot(factors, num_values)  # (N, F, K)
    joint = jnp.einsum("ndb,nfk->dfbk", a, b) / binned.shape[0]
    pa, pb = joint.sum(3, keepdims=True), joint.sum(2, keepdims=True)
    terms = jnp.where(joint > 0, joint * (jnp.log(joint) - jnp.log(pa) - jnp.log(pb)), 0.0)
    return jnp.sum(terms, axis=(2, 3))


def mutual_info(binned, factors) -> np.ndarray:
    """Mutual information in nats (D, F) between discrete codes (N, D) and factors (N, F),
    from their empirical joint: sklearn's mutual_info_score for every pair."""
    binned, factors = np.asarray(binned, np.int32), np.asarray(factors, np.int32)
    return np.asarray(_mutual_info(binned, factors, int(binned.max()) + 1, int(factors.max()) + 1), np.float64)


def entropy(factors) -> np.ndarray:
    """Empirical entropy in nats of each factor column (F,)."""
    f = np.asarray(factors, np.int64)
    out = []
    for col in f.T:
        p = np.bincount(col) / len(col)
        p = p[p > 0]
        out.append(float(-(p * np.log(p)).sum()))
    return np.array(out)


# ---------------------------------------------------------------------------------- the metrics
def mig(codes, factors, num_bins: int = 20) -> dict:
    """Mutual information gap: per factor, the gap between the two codes most informative
    about it, over its entropy; averaged over factors."""
    c = check_codes(codes)
    f = check_factors(factors, len(c))
    if c.shape[1] < 2:
        raise UsageError("MIG needs at least two codes")
    h = entropy(f)
    if (h == 0).any():
        raise UsageError(f"factor {int(np.argmin(h))} takes one value only: MIG divides by its entropy")
    m = mutual_info(discretize(c, num_bins), f)
    top = np.sort(m, axis=0)[::-1]
    per_factor = (top[0] - top[1]) / h
    return {"metric": "mig", "score": float(per_factor.mean()), "mig": float(per_factor.mean()),
            "per_factor": per_factor.tolist(), "mutual_info": m.tolist(), "factor_entropy": h.tolist(),
            "protocol": {"num_train": len(c), "num_bins": num_bins, "discretizer": "histogram"}}


def _weighted_entropy_score(importance: np.ndarray) -> float:
    """1 - entropy (base = rows) of each column, weighted by the column's share of importance."""
    p = importance + 1e-11
    p = p / p.sum(0, keepdims=True)
    score = 1.0 + (p * np.log(p)).sum(0) / np.log(importance.shape[0])
    weights = importance if importance.sum() > 0 else np.ones_like(importance)
    return float((score * weights.sum(0) / weights.sum()).sum())


def dci_disentanglement(importance) -> float:
    """DCI disentanglement of an importance matrix (codes, factors): how few factors each code matters for."""
    return _weighted_entropy_score(np.asarray(importance, np.float64).T)


def dci_completeness(importance) -> float:
    """DCI completeness of an importance matrix (codes, factors): how few codes each factor depends on."""
    return _weighted_entropy_score(np.asarray(importance, np.float64))


def dci(codes_train, factors_train, codes_test, factors_test, regressor: str = "lasso",
        alpha: float | None = None) -> dict:
    """DCI (Eastwood & Williams): an importance matrix R (D, F) from one regressor per factor;
    disentanglement = how few factors each code matters for, completeness = how few codes each
    factor depends on (1 - entropy, weighted by importance); informativeness = accuracy of
    predicting each factor (train, test). `alpha` (lasso): by default chosen per factor by
    5-fold cross-validation (probes.lasso_cv), so weak dependence spread over every code is
    kept wherever it predicts (and scores as entangled) at every sample size, and codes that
    predict nothing get no weight; a number fixes it for every factor."""
    ctr, ftr, cte, fte = check_pair(codes_train, factors_train, codes_test, factors_test)
    if regressor == "lasso":
        importance, acc_train, acc_test, alphas = _lasso_importance(ctr, ftr, cte, fte, alpha)
        rule = f"{probes.CV_FOLDS}-fold cross-validation per factor" if alpha is None else "fixed"
        protocol = {"regressor": "lasso", "alpha": alphas, "alpha_rule": rule, "standardized": True,
                    "informativeness": "accuracy of the rounded least-squares prediction from the codes the lasso keeps"}
    elif regressor == "gbt":
        importance, acc_train, acc_test = _gbt_importance(ctr, ftr, cte, fte)
        protocol = {"regressor": "gbt", "informativeness": "accuracy of GradientBoostingClassifier"}
    else:
        raise UsageError(f"unknown DCI regressor {regressor!r}: choose from lasso, gbt")
    d, c = dci_disentanglement(importance), dci_completeness(importance)
    return {"metric": "dci", "score": d, "disentanglement": d, "completeness": c,
            "informativeness_train": acc_train, "informativeness_test": acc_test,
            "importance": importance.tolist(),
            "protocol": {"num_train": len(ctr), "num_test": len(cte), **protocol}}


def _lasso_importance(ctr, ftr, cte, fte, alpha):
    mu, sd = ctr.mean(0), ctr.std(0)
    sd = np.where(sd > 0, sd, 1.0)  # a constant code standardises to zeros: no weight
    y_mu, y_sd = ftr.mean(0), ftr.std(0)
    y_sd = np.where(y_sd > 0, y_sd, 1.0)
    xs, ys = (ctr - mu) / sd, (ftr - y_mu) / y_sd
    if alpha is None:
        w, alphas = probes.lasso_cv(xs, ys)
    else:
        w, alphas = probes.lasso(xs, ys, float(alpha)), np.full(ys.shape[1], float(alpha))
    w = np.asarray(w, np.float64)
    # Predictions refit least squares on the codes the lasso kept: its shrinkage, which keeps
    # importances sparse, would otherwise round predictions to the wrong factor values.
    refit = np.zeros_like(w)
    for j in range(w.shape[1]):
        keep = w[:, j] != 0
        if keep.any():
            refit[keep, j] = np.linalg.lstsq(xs[:, keep], ys[:, j], rcond=None)[0]
    lo, hi = ftr.min(0), ftr.max(0)

    def accuracy(codes, factors):
        pred = np.clip(np.rint(((codes - mu) / sd) @ refit * y_sd + y_mu), lo, hi)
        return float((pred == factors).mean())
    return np.abs(w), accuracy(ctr, ftr), accuracy(cte, fte), [float(a) for a in np.asarray(alphas)]


def require_scikit_learn() -> None:
    """UsageError (exit 2) naming the extra to install, unless scikit-learn imports."""
    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise UsageError("DCI with regressor 'gbt' needs scikit-learn: pip install 'vaecli[disentanglement]' "
                         "(or use the lasso regressor)") from None


def _gbt_importance(ctr, ftr, cte, fte):
    require_scikit_learn()
    from sklearn.ensemble import GradientBoostingClassifier

    importance, acc_train, acc_test = np.zeros((ctr.shape[1], ftr.shape[1])), [], []
    for j in range(ftr.shape[1]):
        model = GradientBoostingClassifier(random_state=0).fit(ctr, ftr[:, j])
        importance[:, j] = np.abs(model.feature_importances_)
        acc_train.append(np.mean(model.predict(ctr) == ftr[:, j]))
        acc_test.append(np.mean(model.predict(cte) == fte[:, j]))
    return importance, float(np.mean(acc_train)), float(np.mean(acc_test))


def sap(codes_train, factors_train, codes_test, factors_test) -> dict:
    """SAP score: per factor, the gap between the two codes whose 1-input linear SVM predicts
    it best (test accuracy), averaged over factors. Factors are treated as discrete, as in
    dlib's study."""
    ctr, ftr, cte, fte = check_pair(codes_train, factors_train, codes_test, factors_test)
    if ctr.shape[1] < 2:
        raise UsageError("SAP needs at least two codes")
    k = int(max(ftr.max(), fte.max())) + 1
    scores = np.asarray(probes.svc_1d_accuracy(ctr.T, ftr.T, cte.T, fte.T, k), np.float64)
    top = np.sort(scores, axis=0)
    value = float(np.mean(top[-1] - top[-2]))
    return {"metric": "sap", "score": value, "sap": value, "score_matrix": scores.tolist(),
            "protocol": {"num_train": len(ctr), "num_test": len(cte),
                         "classifier": "linear SVM on one code, squared hinge, C=0.01, balanced classes"}}


def modularity(codes, factors, num_bins: int = 20, codes_test=None, factors_test=None) -> dict:
    """Modularity (Ridgeway & Mozer): how much each code's mutual information concentrates on
    one factor, averaged over codes. With test samples, also explicitness: the macro ROC-AUC of
    a logistic regression of each factor on all standardised codes (train and test)."""
    c = check_codes(codes)
    f = check_factors(factors, len(c))
    sq = mutual_info(discretize(c, num_bins), f) ** 2
    top = sq.max(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        per_code = np.where(top > 0, 1.0 - (sq.sum(1) - top) / (top * (sq.shape[1] - 1.0)), 0.0)
    out = {"metric": "modularity", "score": float(per_code.mean()), "modularity": float(per_code.mean()),
           "per_code": per_code.tolist(),
           "protocol": {"num_train": len(c), "num_bins": num_bins, "discretizer": "histogram"}}
    if codes_test is not None:
        ctr, ftr, cte, fte = check_pair(c, f, codes_test, factors_test)
        out["explicitness_train"], out["explicitness_test"] = _explicitness(ctr, ftr, cte, fte)
        out["protocol"].update(num_test=len(cte), classifier="logistic regression, C=1, standardized codes")
    return out


@partial(jax.jit, static_argnames=("num_classes",))
def _explicitness_auc(x_train, y_train, x_test, y_test, num_classes: int):
    """Macro ROC-AUC (train, test) of a logistic regression of one factor on the codes."""
    params, present = probes.fit_logistic(x_train, y_train, num_classes)

    def auc(x, y):
        # Log-probabilities rank as the probabilities do, without float32's ties near 1.
        logp = jax.nn.log_softmax(probes.logistic_logits(params, x, present))
        per_class = jax.vmap(lambda k: probes.roc_auc(logp[:, k], y == k))(jnp.arange(num_classes))
        return jnp.nanmean(jnp.where(present, per_class, jnp.nan))
    return auc(x_train, y_train), auc(x_test, y_test)


def _explicitness(ctr, ftr, cte, fte):
    mu, sd = ctr.mean(0), ctr.std(0)
    sd = np.where(sd > 0, sd, 1.0)
    xtr, xte = jnp.asarray((ctr - mu) / sd), jnp.asarray((cte - mu) / sd)
    k = int(max(ftr.max(), fte.max())) + 1
    # One factor a call (one compiled program for all): vmapping L-BFGS's line search over
    # factors ran and compiled several times slower.
    aucs = np.array([_explicitness_auc(xtr, ftr[:, j], xte, fte[:, j], k) for j in range(ftr.shape[1])])
    return float(aucs[:, 0].mean()), float(aucs[:, 1].mean())


# ------------------------------------------------------------------ runners: samples, then score
def _sampled(score, needs_test: bool = True):
    """A runner for an observational metric: train (and test) codes drawn through represent
    with dlib's sample sizes by default, then score(train, test, **options)."""
    def run(represent: Represent, factor_sizes, seed: int = 0, num_train: int = 10000,
            num_test: int = 5000, **options) -> dict:
        rng = np.random.default_rng(seed)
        sizes = check_sizes(factor_sizes)
        train = sample_codes(represent, sizes, num_train, rng)
        test = sample_codes(represent, sizes, num_test, rng) if needs_test else None
        result = score(train, test, **options)
        result["protocol"]["seed"] = seed
        return result
    return run


run_mig = _sampled(lambda train, test, **o: mig(*train, **o), needs_test=False)
run_dci = _sampled(lambda train, test, **o: dci(*train, *test, **o))
run_sap = _sampled(lambda train, test, **o: sap(*train, *test, **o))
run_modularity = _sampled(lambda train, test, **o: modularity(*train, codes_test=test[0], factors_test=test[1], **o))
