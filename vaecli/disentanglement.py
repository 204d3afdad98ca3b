"""Disentanglement metrics as google-research/disentanglement_lib (dlib) defines them, in JAX.

Observational metrics score samples: codes (N, D) float and the factors behind them (N, F)
int indices, train and test drawn independently:
    mig(codes, factors)                                  mutual information gap
    dci(codes_tr, factors_tr, codes_te, factors_te)      disentanglement, completeness, informativeness
    sap(codes_tr, factors_tr, codes_te, factors_te)      separated attribute predictability
    modularity(codes, factors[, codes_test=, factors_test=])   modularity (+ explicitness)
Interventional metrics choose factor values themselves, so they take `represent(factors, rng)
-> codes`: it draws observations with those factors (rows (n, F) of indices) and encodes them:
    factor_vae_score(represent, factor_sizes, seed)      majority vote on the least-varying code
    beta_vae_score(represent, factor_sizes, seed)        linear classifier on code differences
`METRICS[name].run(represent, factor_sizes, seed, **sizes)` runs any of them with dlib's sample
sizes (sampling the observational ones' codes through `represent`); `parse_metrics` checks a
comma-separated list of names. Every result is a JSON-able dict: `metric`, the headline
`score`, the metric's own numbers, and `protocol` (sample sizes, bins, classifier, seed).

Where this differs from dlib (the rest follows its code and its study's gin defaults):
  - DCI's default regressor is a lasso on standardised codes and factors (Eastwood &
    Williams' own choice), not gradient-boosted trees; importances are |weights|, with
    alpha = 4/sqrt(N) so that pure noise gets no importance at all (a fixed small alpha let
    one chance weight make noise look perfectly disentangled; a ridge leaked weight onto
    every noise code). Informativeness is the accuracy of a least-squares refit on the codes
    the lasso keeps, rounded to the nearest factor value. `regressor="gbt"` is dlib's
    (needs scikit-learn; trees seeded with 0, dlib leaves them unseeded).
  - sklearn's LogisticRegression and LinearSVC are replaced by JAX solvers of the same
    objectives (vaecli.linear_probes); their optima agree, float32 here, float64 there.
  - FactorVAE's `num_active_dims` counts the active dimensions (dlib reports the length of
    its mask, i.e. all of them); votes are indexed by the full latent index.
  - Random draws come from numpy's Generator(seed), not dlib's RandomState: same
    distributions, different numbers. `represent` gets up to CHUNK_ROWS rows per call.
  - Explicitness' AUC averages over the classes seen in training that have both positives
    and negatives in the scored set (sklearn raises otherwise).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from vaecli import linear_probes
from vaecli.errors import UsageError

CHUNK_ROWS = 16384  # rows per represent() call: large batches for an encoder, bounded memory

Represent = Callable[[np.ndarray, np.random.Generator], np.ndarray]


# ---------------------------------------------------------------------------- inputs, sampling
def _codes(codes, what: str = "codes") -> np.ndarray:
    c = np.asarray(codes, np.float32)
    if c.ndim != 2 or c.shape[0] < 2:
        raise UsageError(f"{what} must be an array (N, D) with N >= 2, got shape {c.shape}")
    if not np.isfinite(c).all():
        raise UsageError(f"{what} contain NaN or infinity")
    return c


def _factors(factors, n: int, what: str = "factors") -> np.ndarray:
    f = np.asarray(factors)
    if f.ndim != 2 or f.shape[0] != n or not np.issubdtype(f.dtype, np.integer) or (f < 0).any():
        raise UsageError(f"{what} must be non-negative integer indices (N, F) with N = {n} as the "
                         f"codes, got {f.dtype} {f.shape}")
    return f.astype(np.int32)


def _pair(codes_train, factors_train, codes_test, factors_test):
    ctr, cte = _codes(codes_train, "codes_train"), _codes(codes_test, "codes_test")
    ftr = _factors(factors_train, len(ctr), "factors_train")
    fte = _factors(factors_test, len(cte), "factors_test")
    if ctr.shape[1] != cte.shape[1] or ftr.shape[1] != fte.shape[1]:
        raise UsageError("train and test must have the same number of codes and of factors")
    return ctr, ftr, cte, fte


def sample_factors(factor_sizes, shape, rng: np.random.Generator) -> np.ndarray:
    """Factor rows drawn uniformly and independently: an int64 array `shape + (F,)`."""
    sizes = np.asarray(factor_sizes, np.int64)
    return rng.integers(0, sizes, size=tuple(np.atleast_1d(shape)) + (len(sizes),))


def encode(represent: Represent, factors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """represent() over factor rows of any leading shape (..., F), CHUNK_ROWS rows a call."""
    flat = factors.reshape(-1, factors.shape[-1])
    parts = [np.asarray(represent(flat[i:i + CHUNK_ROWS], rng), np.float32) for i in range(0, len(flat), CHUNK_ROWS)]
    codes = np.concatenate(parts)
    if codes.ndim != 2 or len(codes) != len(flat):
        raise UsageError(f"represent must return codes (n, D) for n factor rows, got {codes.shape} for {len(flat)}")
    return codes.reshape(factors.shape[:-1] + codes.shape[1:])


def sample_codes(represent: Represent, factor_sizes, n: int, rng: np.random.Generator):
    """(codes (n, D), factors (n, F)) for n factor rows drawn uniformly."""
    factors = sample_factors(factor_sizes, n, rng)
    return encode(represent, factors, rng), factors


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


# ---------------------------------------------------------------------- observational metrics
def mig(codes, factors, num_bins: int = 20) -> dict:
    """Mutual information gap: per factor, the gap between the two codes most informative
    about it, over its entropy; averaged over factors."""
    c = _codes(codes)
    f = _factors(factors, len(c))
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


def dci(codes_train, factors_train, codes_test, factors_test, regressor: str = "lasso",
        alpha: float | None = None) -> dict:
    """DCI (Eastwood & Williams): an importance matrix R (D, F) from one regressor per factor;
    disentanglement = how few factors each code matters for, completeness = how few codes each
    factor depends on (1 - entropy, weighted by importance); informativeness = accuracy of
    predicting each factor (train, test). `alpha` (lasso): default 4/sqrt(N_train), so codes
    whose correlation with the residual is within four standard errors of zero get none."""
    ctr, ftr, cte, fte = _pair(codes_train, factors_train, codes_test, factors_test)
    if regressor == "lasso":
        alpha = 4.0 / np.sqrt(len(ctr)) if alpha is None else float(alpha)
        importance, acc_train, acc_test = _lasso_importance(ctr, ftr, cte, fte, alpha)
        protocol = {"regressor": "lasso", "alpha": alpha, "standardized": True,
                    "informativeness": "accuracy of the rounded least-squares prediction from the codes the lasso keeps"}
    elif regressor == "gbt":
        importance, acc_train, acc_test = _gbt_importance(ctr, ftr, cte, fte)
        protocol = {"regressor": "gbt", "informativeness": "accuracy of GradientBoostingClassifier"}
    else:
        raise UsageError(f"unknown DCI regressor {regressor!r}: choose from lasso, gbt")
    d, c = _weighted_entropy_score(importance.T), _weighted_entropy_score(importance)
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
    w = np.asarray(linear_probes.lasso(xs, ys, alpha), np.float64)
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
    return np.abs(w), accuracy(ctr, ftr), accuracy(cte, fte)


def _gbt_importance(ctr, ftr, cte, fte):
    try:
        from sklearn.ensemble import GradientBoostingClassifier
    except ImportError:
        raise UsageError("DCI with regressor 'gbt' needs scikit-learn: pip install scikit-learn") from None
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
    ctr, ftr, cte, fte = _pair(codes_train, factors_train, codes_test, factors_test)
    if ctr.shape[1] < 2:
        raise UsageError("SAP needs at least two codes")
    k = int(max(ftr.max(), fte.max())) + 1
    scores = np.asarray(linear_probes.svc_1d_accuracy(ctr.T, ftr.T, cte.T, fte.T, k), np.float64)
    top = np.sort(scores, axis=0)
    value = float(np.mean(top[-1] - top[-2]))
    return {"metric": "sap", "score": value, "sap": value, "score_matrix": scores.tolist(),
            "protocol": {"num_train": len(ctr), "num_test": len(cte),
                         "classifier": "linear SVM on one code, squared hinge, C=0.01, balanced classes"}}


def modularity(codes, factors, num_bins: int = 20, codes_test=None, factors_test=None) -> dict:
    """Modularity (Ridgeway & Mozer): how much each code's mutual information concentrates on
    one factor, averaged over codes. With test samples, also explicitness: the macro ROC-AUC of
    a logistic regression of each factor on all standardised codes (train and test)."""
    c = _codes(codes)
    f = _factors(factors, len(c))
    sq = mutual_info(discretize(c, num_bins), f) ** 2
    top = sq.max(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        per_code = np.where(top > 0, 1.0 - (sq.sum(1) - top) / (top * (sq.shape[1] - 1.0)), 0.0)
    out = {"metric": "modularity", "score": float(per_code.mean()), "modularity": float(per_code.mean()),
           "per_code": per_code.tolist(),
           "protocol": {"num_train": len(c), "num_bins": num_bins, "discretizer": "histogram"}}
    if codes_test is not None:
        ctr, ftr, cte, fte = _pair(c, f, codes_test, factors_test)
        out["explicitness_train"], out["explicitness_test"] = _explicitness(ctr, ftr, cte, fte)
        out["protocol"].update(num_test=len(cte), classifier="logistic regression, C=1, standardized codes")
    return out


@partial(jax.jit, static_argnames=("num_classes",))
def _explicitness_auc(x_train, y_train, x_test, y_test, num_classes: int):
    """Macro ROC-AUC (train, test) of a logistic regression of one factor on the codes."""
    params, present = linear_probes.fit_logistic(x_train, y_train, num_classes)

    def auc(x, y):
        # Log-probabilities rank as the probabilities do, without float32's ties near 1.
        logp = jax.nn.log_softmax(linear_probes.logistic_logits(params, x, present))
        per_class = jax.vmap(lambda k: linear_probes.roc_auc(logp[:, k], y == k))(jnp.arange(num_classes))
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


# -------------------------------------------------------------------- interventional metrics
def _check_sizes(factor_sizes) -> tuple:
    sizes = tuple(int(s) for s in factor_sizes)
    if len(sizes) < 2 or min(sizes) < 1:
        raise UsageError(f"factor_sizes must list at least two factors of one or more values, got {sizes}")
    return sizes


@partial(jax.jit, static_argnames=("num_factors",))
def _votes(codes, fixed, global_var, active, num_factors: int):
    # The code whose variance (relative to its global variance) drops most votes for the factor.
    local = jnp.var(codes, axis=1, ddof=1)
    argmin = jnp.argmin(jnp.where(active, local / global_var, jnp.inf), axis=1)
    return jnp.zeros((num_factors, codes.shape[-1]), jnp.int32).at[fixed, argmin].add(1)


def factor_vae_score(represent: Represent, factor_sizes, seed: int = 0, batch_size: int = 64,
                     num_train: int = 10000, num_eval: int = 5000, num_variance_estimate: int = 10000,
                     prune_threshold: float = 0.05) -> dict:
    """FactorVAE score (Kim & Mnih): batches with one factor held fixed; the code of least
    normalised variance votes for that factor; a majority-vote classifier from codes to
    factors is fitted on num_train batches and scored on num_eval. Codes whose standard
    deviation is under prune_threshold are left out."""
    sizes = _check_sizes(factor_sizes)
    if batch_size < 2:
        raise UsageError(f"factor_vae_score needs batch_size >= 2 (a variance per batch), got {batch_size}")
    rng = np.random.default_rng(seed)
    global_var = np.var(sample_codes(represent, sizes, num_variance_estimate, rng)[0], axis=0, ddof=1)
    active = np.sqrt(global_var) >= prune_threshold
    protocol = {"batch_size": batch_size, "num_train": num_train, "num_eval": num_eval,
                "num_variance_estimate": num_variance_estimate, "prune_threshold": prune_threshold, "seed": seed}
    base = {"metric": "factor_vae", "num_active_dims": int(active.sum()), "protocol": protocol}
    if not active.any():
        return {**base, "score": 0.0, "train_accuracy": 0.0, "eval_accuracy": 0.0}

    def votes(num_points):
        factors = sample_factors(sizes, (num_points, batch_size), rng)
        fixed = rng.integers(len(sizes), size=num_points)
        rows = np.arange(num_points)
        factors[rows, :, fixed] = factors[rows, 0, fixed][:, None]
        codes = encode(represent, factors, rng)
        return np.asarray(_votes(codes, fixed, global_var.astype(np.float32), active, len(sizes)))

    train = votes(num_train)
    classifier = np.argmax(train, axis=0)  # the factor each code votes for most

    def accuracy(v):
        return float(v[classifier, np.arange(v.shape[1])].sum() / v.sum())
    train_acc, eval_acc = accuracy(train), accuracy(votes(num_eval))
    return {**base, "score": eval_acc, "train_accuracy": train_acc, "eval_accuracy": eval_acc}


@jax.jit
def _abs_diff_mean(a, b):
    return jnp.mean(jnp.abs(a - b), axis=1)


def beta_vae_score(represent: Represent, factor_sizes, seed: int = 0, batch_size: int = 64,
                   num_train: int = 10000, num_eval: int = 5000) -> dict:
    """BetaVAE score (Higgins et al.): pairs of batches sharing one factor's values; a
    logistic regression predicts which factor from the mean absolute code difference;
    accuracy on num_train points (fitted there) and num_eval fresh ones."""
    sizes = _check_sizes(factor_sizes)
    rng = np.random.default_rng(seed)

    def points(num_points):
        fixed = rng.integers(len(sizes), size=num_points)
        first = sample_factors(sizes, (num_points, batch_size), rng)
        second = sample_factors(sizes, (num_points, batch_size), rng)
        rows = np.arange(num_points)
        second[rows, :, fixed] = first[rows, :, fixed]
        diff = _abs_diff_mean(encode(represent, first, rng), encode(represent, second, rng))
        return diff, jnp.asarray(fixed, jnp.int32)

    x_train, y_train = points(num_train)
    params, present = linear_probes.fit_logistic(x_train, y_train, len(sizes))

    def accuracy(x, y):
        return float(jnp.mean(jnp.argmax(linear_probes.logistic_logits(params, x, present), 1) == y))
    train_acc, eval_acc = accuracy(x_train, y_train), accuracy(*points(num_eval))
    return {"metric": "beta_vae", "score": eval_acc, "train_accuracy": train_acc, "eval_accuracy": eval_acc,
            "protocol": {"batch_size": batch_size, "num_train": num_train, "num_eval": num_eval, "seed": seed,
                         "classifier": "logistic regression, C=1"}}


# ------------------------------------------------------------------------------ the registry
def _sampled(score, needs_test: bool = True):
    """A runner for an observational metric: train (and test) codes drawn through represent
    with dlib's sample sizes by default, then score(train, test, **options)."""
    def run(represent: Represent, factor_sizes, seed: int = 0, num_train: int = 10000,
            num_test: int = 5000, **options) -> dict:
        rng = np.random.default_rng(seed)
        sizes = _check_sizes(factor_sizes)
        train = sample_codes(represent, sizes, num_train, rng)
        test = sample_codes(represent, sizes, num_test, rng) if needs_test else None
        result = score(train, test, **options)
        result["protocol"]["seed"] = seed
        return result
    return run


_run_mig = _sampled(lambda train, test, **o: mig(*train, **o), needs_test=False)
_run_dci = _sampled(lambda train, test, **o: dci(*train, *test, **o))
_run_sap = _sampled(lambda train, test, **o: sap(*train, *test, **o))
_run_modularity = _sampled(lambda train, test, **o: modularity(*train, codes_test=test[0], factors_test=test[1], **o))


@dataclass(frozen=True)
class Metric:
    run: Callable[..., dict]  # run(represent, factor_sizes, seed, **sizes or options) -> result
    help: str


METRICS: Mapping[str, Metric] = {
    "mig": Metric(_run_mig, "mutual information gap (10000 points, 20 bins)"),
    "factor_vae": Metric(factor_vae_score, "FactorVAE majority-vote accuracy (batches of 64; 10000 train, 5000 eval)"),
    "dci": Metric(_run_dci, "DCI disentanglement, completeness, informativeness (10000/5000)"),
    "sap": Metric(_run_sap, "SAP score, 1-code linear SVMs (10000/5000)"),
    "beta_vae": Metric(beta_vae_score, "BetaVAE logistic-regression accuracy (batches of 64; 10000 train, 5000 eval)"),
    "modularity": Metric(_run_modularity, "modularity and explicitness (10000/5000, 20 bins)"),
}


def parse_metrics(text: str) -> tuple[str, ...]:
    """'mig, dci' -> ('mig', 'dci'); 'all' -> every metric; an unknown name is a UsageError
    that lists the valid ones."""
    names = [t.strip() for t in str(text).split(",") if t.strip()]
    if names == ["all"]:
        return tuple(METRICS)
    if not names:
        raise UsageError(f"no metric named: choose from {', '.join(METRICS)} (or all)")
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise UsageError(f"unknown metric {unknown[0]!r}: choose from {', '.join(METRICS)} (or all)")
    return tuple(dict.fromkeys(names))
