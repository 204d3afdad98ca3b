"""Bounds of log p(x) as functions of the log-weights, their gradient estimators, and the
β-TCVAE decomposition of the KL. Pure functions of arrays, as in vaecli.models.densities; nothing
here knows about configs or optimizers.

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

Gradient estimators. `objective(vae, x, eps, bound, estimator)` returns a per-example
surrogate to maximise and the log-weights (no gradient) to log `bound(log_w)` from:
    reparam  the bound itself, z reparameterized: the plain pathwise gradient
    stl      sticking the landing (Roeder et al. 2017): log q(z|x) evaluated with q's statistics
             under stop_gradient while z stays reparameterized; the value is still the bound.
             Unbiased for the ELBO only: with K > 1 the dropped score term, weighted by w̃_k
             which depends on z_k, no longer has mean zero (Tucker et al. 2019)
    dreg     doubly reparameterized (Tucker et al. 2019): encoder gradient Σ_k w̃_k² ∂log w_k/∂z_k
             ∂z_k/∂φ for IWAE; for every `Bound`, c_k − ∂c_k/∂log w_k in place of w̃_k², with
             c = ∂bound/∂log w; decoder gradient the bound's. Unbiased; the surrogate's value
             is Σ_k c_k log w_k, not the bound
One jax.grad of the batch-mean surrogate over the whole parameter dict gives every group its
estimator's gradient: no separate passes for the encoder side ({encoder, q2}) and the model side.
The model-agnostic forms are `stl(log_weight_fn, path, bound)` and `dreg(...)`.

β-TCVAE (Chen et al. 2018): `tc_decomposition` splits the Monte Carlo KL of a batch into
index-code mutual information, total correlation and dimension-wise KL, with q(z) and q(z_d)
estimated from the batch; `tcvae_loss` weights them.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import nnx

from vaecli.models import densities

_stop = jax.lax.stop_gradient

# ---------------------------------------------------------------- bounds of log p(x)


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
    # Centred, and through expm1/log1p: a plain log-sum-exp of γ·log w loses small γ to
    # rounding (its result is γ·mean + O(γ²) before the division by γ). The value does not
    # depend on the centre or the shift, so neither needs a gradient.
    centre = _stop(jnp.mean(lw, axis=1))
    t = gamma * (lw - centre[:, None])
    top = _stop(jnp.max(t, axis=1))
    log_mean = top + jnp.log1p(jnp.mean(jnp.expm1(t - top[:, None]), axis=1))
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


# ---------------------------------------------------------------- gradient estimators


@jax.custom_vjp
def _scale_cotangent(z, scale):
    return z


def _scale_fwd(z, scale):
    return z, scale


def _scale_bwd(scale, g):
    return g * scale.reshape(scale.shape + (1,) * (g.ndim - scale.ndim)), jnp.zeros_like(scale)


_scale_cotangent.defvjp(_scale_fwd, _scale_bwd)


def stl(log_weight_fn, path, bound: Bound):
    """(bound value (B,), log_w): `log_weight_fn(path)` -> (S, B) log-weights whose log q is
    evaluated with q's parameters under stop_gradient; `path` the reparameterized latents."""
    log_w = log_weight_fn(path)
    return bound(log_w), _stop(log_w)


def dreg(log_weight_fn, path, bound: Bound):
    """(surrogate (B,), log_w): the doubly reparameterized gradient of `bound`.

    Same contract as `stl`: q's parameters reach the log-weights only through `path` (a
    pytree of (S, B, ...) arrays), so scaling the cotangent arriving at sample k's latents
    by path_k / c_k turns the bound's encoder gradient Σ_k c_k ∂log w_k/∂z_k ∂z_k/∂φ into
    DReG's, while the model's parameters keep the weights c_k. Terms in which q's
    parameters reach log p directly (the VampPrior's components) keep c_k too, as they should.
    """
    log_w = _stop(log_weight_fn(path))
    grad, path_w = (_stop(a) for a in bound.weights(log_w))
    ratio = jnp.where(grad != 0, path_w / jnp.where(grad != 0, grad, 1.0), 0.0)  # c_k = 0: no path either
    hooked = jax.tree.map(lambda z: _scale_cotangent(z, ratio), path)
    # The second call computes the same values as the first from the same inputs: XLA
    # merges the two forward passes, so the cost is one forward and one backward pass.
    return jnp.sum(grad * log_weight_fn(hooked), axis=0), log_w


def _frozen(module: nnx.Module) -> nnx.Module:
    """The same module with its parameters under stop_gradient (inside a traced function)."""
    graphdef, state = nnx.split(module)
    return nnx.merge(graphdef, jax.tree.map(_stop, state))


def stl_parts(vae, x, eps):
    """(log_weight_fn, path) of a vaecli.models model for `stl`/`dreg`: the log-weights with q
    under stop_gradient, and the reparameterized latents at noise `eps` (S, B, noise_dim).

    One stochastic layer: the model's `encode`, `log_likelihood` and `log_prior` (any prior,
    any likelihood). Two (a model with `q2`, `p1`): both layers of q frozen in the density."""
    mean, logvar = vae.encode(x)
    if not hasattr(vae, "q2"):
        z = densities.reparameterize(mean, logvar, eps)

        def log_weight_fn(z):
            return (vae.log_likelihood(x, z) + vae.log_prior(z)
                    - densities.gaussian_log_prob(z, _stop(mean), _stop(logvar)))

        return log_weight_fn, z
    d1 = vae.latent_dim
    z1 = densities.reparameterize(mean, logvar, eps[..., :d1])
    mean2, logvar2 = vae.q2(z1)
    z2 = densities.reparameterize(mean2, logvar2, eps[..., d1:])
    q2 = _frozen(vae.q2)

    def log_weight_fn(path):
        z1, z2 = path
        log_q = densities.gaussian_log_prob(z1, _stop(mean), _stop(logvar)) + densities.gaussian_log_prob(z2, *q2(z1))
        log_p = densities.gaussian_log_prob(z1, *vae.p1(z2)) + densities.standard_normal_log_prob(z2)
        return vae.log_likelihood(x, z1) + log_p - log_q

    return log_weight_fn, (z1, z2)


ESTIMATORS = ("reparam", "stl", "dreg")


def objective(vae, x, eps, bound: Bound, estimator: str = "reparam"):
    """(surrogate (B,), log_w (S, B) without gradient) for a vaecli.models model.

    Maximise the batch mean of the surrogate (its gradient is the estimator's); report
    `bound(log_w)`, the bound's value, which for dreg differs from the surrogate's."""
    if estimator == "reparam":
        log_px, log_pz, log_qz = vae.log_terms(x, vae.encode(x), eps)
        log_w = log_px + log_pz - log_qz
        return bound(log_w), _stop(log_w)
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator '{estimator}' (choose one of {', '.join(ESTIMATORS)})")
    return (stl if estimator == "stl" else dreg)(*stl_parts(vae, x, eps), bound)


ENCODER_SIDE = ("encoder", "q2", "flow")  # the parameters of q; the VampPrior also reads `encoder`


def split_params(params: dict) -> tuple[dict, dict]:
    """(encoder side, model side) of a vaecli.models.Functional parameter dict."""
    return ({k: v for k, v in params.items() if k in ENCODER_SIDE},
            {k: v for k, v in params.items() if k not in ENCODER_SIDE})


# ---------------------------------------------------------------- β-TCVAE


def tc_decomposition(z, mean, logvar, dataset_size: int, estimator: str = "mws") -> dict:
    """Per example (B,): mi, tc, dim_kl, and the log-densities they are made of, for one
    draw z (B, D) from each q(z|x_b) of the batch, the batch's (mean, logvar) (B, D) and
    the number N of training examples; the prior N(0, I).

        mi     = log q(z|x) − log q̂(z)                  index-code mutual information
        tc     = log q̂(z) − Σ_d log q̂(z_d)              total correlation
        dim_kl = Σ_d log q̂(z_d) − log p(z)              dimension-wise KL
        mi + tc + dim_kl = log q(z|x) − log p(z), exactly, for every draw: the Monte Carlo KL

    q̂(z_i) = Σ_j a_ij q(z_i|x_j) over the batch (and each dimension alike):
        mws  a_ij = 1/(N·M) (minibatch-weighted sampling, the paper's estimator). Wherever no
             single posterior dominates the sum it reads q(z)/N: mi is then offset by +log N,
             tc by +(D − 1)·log N, dim_kl by −D·log N; constants, so the gradients are the
             paper's, but the logged values are not the terms'
        mss  a_ii = 1/N, a_ij = (N − 1)/(N·(M − 1)): stratified over the example's own posterior
             and the others, an unbiased estimate of q(z_i) (the logs carry an O(1/M) bias)
    """
    b = z.shape[0]
    # log q(z_id | x_j) for every pair (i, j) and dimension d: (B_i, B_j, D)
    per_dim = -0.5 * (densities.LOG_2PI + logvar[None] + (z[:, None] - mean[None]) ** 2 * jnp.exp(-logvar[None]))
    if estimator == "mws":
        log_a = jnp.full((b, b), -math.log(dataset_size * b))
    elif estimator == "mss":
        log_a = jnp.where(jnp.eye(b, dtype=bool), -math.log(dataset_size),
                          math.log((dataset_size - 1) / (dataset_size * (b - 1))))
    else:
        raise ValueError(f"unknown estimator '{estimator}' (choose mws or mss)")
    log_qz = jax.nn.logsumexp(log_a + per_dim.sum(-1), axis=1)
    log_qz_dims = jax.nn.logsumexp(log_a[..., None] + per_dim, axis=1).sum(-1)
    log_qz_x = densities.gaussian_log_prob(z, mean, logvar)
    log_pz = densities.standard_normal_log_prob(z)
    return {"mi": log_qz_x - log_qz, "tc": log_qz - log_qz_dims, "dim_kl": log_qz_dims - log_pz,
            "log_qz_x": log_qz_x, "log_qz": log_qz, "log_qz_dims": log_qz_dims, "log_pz": log_pz}


def tcvae_loss(recon, terms: dict, beta: float, alpha: float = 1.0, gamma: float = 1.0):
    """Batch mean of recon + α·mi + β·tc + γ·dim_kl; `recon` (B,) is −log p(x|z) at the same draws.
    α = γ = 1 (the paper's and disentanglement_lib's) leaves the ELBO's loss plus (β − 1)·tc."""
    return jnp.mean(recon + alpha * terms["mi"] + beta * terms["tc"] + gamma * terms["dim_kl"])
