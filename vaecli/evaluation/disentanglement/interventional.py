"""The interventional metrics: they choose factor values themselves (batches with one factor
held fixed, pairs of batches sharing one factor), so they take `represent(factors, rng) ->
codes`, which draws observations with those factors and encodes them.

    factor_vae_score(represent, factor_sizes, seed)      majority vote on the least-varying code
    beta_vae_score(represent, factor_sizes, seed)        linear classifier on code differences
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from vaecli.errors import UsageError
from vaecli.evaluation.disentanglement import probes
from vaecli.evaluation.disentanglement.sampling import (Represent, check_sizes, encode, sample_codes,
                                                        sample_factors)


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
    sizes = check_sizes(factor_sizes)
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
    sizes = check_sizes(factor_sizes)
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
    params, present = probes.fit_logistic(x_train, y_train, len(sizes))

    def accuracy(x, y):
        return float(jnp.mean(jnp.argmax(probes.logistic_logits(params, x, present), 1) == y))
    train_acc, eval_acc = accuracy(x_train, y_train), accuracy(*points(num_eval))
    return {"metric": "beta_vae", "score": eval_acc, "train_accuracy": train_acc, "eval_accuracy": eval_acc,
            "protocol": {"batch_size": batch_size, "num_train": num_train, "num_eval": num_eval, "seed": seed,
                         "classifier": "logistic regression, C=1"}}
