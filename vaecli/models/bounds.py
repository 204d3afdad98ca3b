"""Bounds of log p(x) as functions of the log-weights. Pure functions of arrays, as in
vaecli.models.densities; nothing here knows about configs or optimizers. Their gradient
estimators are vaecli.models.gradients.

Log-weights are log w = log p(x, z) − log q(z|x) at S draws z ~ q(z|x), shape (S, B). Every
bound returns one value per example, (B,); a loss is minus its batch mean.

    elbo(log_w)                 (1/S) Σ_s log w_s
    iwae(log_w)                 log (1/S) Σ_s w_s                                  (Burda et al. 2016)
    miwae(log_w, groups, samples)  mean over M groups of the K-sample IWAE, S = M·K (Rainforth et al. 2018)
    ciwae(log_w, beta)          β·elbo + (1 − β)·iwae                              (Rainforth et al. 2018)
    renyi(log_w, alpha)         1/(1−α) log (1/S) Σ_s w_s^{1−α}                    (Li & Turner 2016)

All five are sums of power means (1/γ) log mean_k w_k^γ over groups of samples (γ = 0: the
mean of log w), which is what `Bound` holds: one type for the trainer to call, and one place
that knows each bound's gradient weights.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass

import jax
import jax.numpy as jnp

_stop = jax.lax.stop_gradient


def _grouped(log_w, groups: int):
    s, b = log_w.shape
    if s % groups:
        raise ValueError(f"{s} samples do not split into {groups} equal groups")
    return log_w.reshape(groups, s // groups, b)  # group g holds samples g·K .. g·K + K − 1


def power_mean(log_w, gamma, groups: int = 1):
    """Per example, the mean over `groups` blocks of (1/γ) log mean_k w_k^γ; γ = 0: mean log w.
    γ a traced value (a per-replica Rényi α): both forms, the one γ asks for chosen."""
    lw = _grouped(log_w, groups)
    if isinstance(gamma, numbers.Real):
        return jnp.mean(lw, axis=(0, 1)) if gamma == 0 else _power_mean(lw, gamma)
    zero = gamma == 0
    # the other form at γ = 1 where γ is 0: no 0/0, whose NaN gradient would leak through the where
    return jnp.where(zero, jnp.mean(lw, axis=(0, 1)), _power_mean(lw, jnp.where(zero, 1.0, gamma)))


def _power_mean(lw, gamma):
    # Centred, and the log of the shifted mean m = mean exp(t − top) ∈ [1/K, 1] taken in the
    # form that is exact where it is used: log1p(mean expm1(·)) when m is near 1 (near-equal
    # weights: a plain log-sum-exp loses small γ to rounding, its result γ·mean + O(γ²)
    # before the division by γ), log m when the weights spread (there mean expm1 ≈ m − 1
    # cancels to m's few digits, which 1/γ then magnifies). The value does not depend on the
    # centre or the shift, so neither needs a gradient.
    centre = _stop(jnp.mean(lw, axis=1))
    t = gamma * (lw - centre[:, None])
    top = _stop(jnp.max(t, axis=1))
    shifted = t - top[:, None]
    m = jnp.mean(jnp.exp(shifted), axis=1)
    near_one = jnp.log1p(jnp.mean(jnp.expm1(shifted), axis=1))
    log_mean = top + jnp.where(m > 0.5, near_one, jnp.log(m))
    return jnp.mean(centre + log_mean / gamma, axis=0)


@dataclass(frozen=True)
class Bound:
    """Σ_t coefficient_t · power_mean(log w; γ_t, groups_t): what every bound here is.

    `bound(log_w)` is its value per example; `weights(log_w)` the two (S, B) arrays the
    estimators need: c = ∂bound/∂log w and the doubly reparameterized path weight c − ∂c_k/∂log w_k."""

    name: str
    terms: tuple[tuple[float, float, int], ...]  # (coefficient, γ, groups)

    def __call__(self, log_w):
        return sum(c * power_mean(log_w, g, m) for c, g, m in self.terms)

    def weights(self, log_w):
        grad = path = 0.0
        for coef, gamma, groups in self.terms:
            soft = jax.nn.softmax(gamma * _grouped(log_w, groups), axis=1).reshape(log_w.shape)
            grad = grad + coef * soft / groups
            # ∂soft_k/∂log w_k = γ·soft_k(1 − soft_k): only sample k's own weight moves with z_k
            path = path + coef * soft * (1 - gamma * (1 - soft)) / groups
        return grad, path


def make_bound(name: str, **kw) -> Bound:
    """A bound by name: elbo, iwae, miwae(groups=M), ciwae(beta=β), renyi(alpha=α)."""
    if name not in _BOUNDS:
        raise ValueError(f"unknown bound '{name}' (choose one of {', '.join(_BOUNDS)})")
    return Bound(name, _BOUNDS[name](**kw))


_BOUNDS = {
    "elbo": lambda: ((1.0, 0.0, 1),),
    "iwae": lambda: ((1.0, 1.0, 1),),
    "miwae": lambda groups: ((1.0, 1.0, groups),),
    "ciwae": lambda beta: ((beta, 0.0, 1), (1.0 - beta, 1.0, 1)),
    "renyi": lambda alpha: ((1.0, 1.0 - alpha, 1),),
}


def elbo(log_w):
    return make_bound("elbo")(log_w)


def iwae(log_w):
    return make_bound("iwae")(log_w)


def miwae(log_w, groups: int, samples: int):
    if log_w.shape[0] != groups * samples:
        raise ValueError(f"miwae: {log_w.shape[0]} samples, expected groups·samples = {groups * samples}")
    return make_bound("miwae", groups=groups)(log_w)


def ciwae(log_w, beta: float):
    return make_bound("ciwae", beta=beta)(log_w)


def renyi(log_w, alpha: float):
    return make_bound("renyi", alpha=alpha)(log_w)
