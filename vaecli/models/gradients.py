"""Gradient estimators of the bounds of vaecli.models.bounds. Pure functions of arrays and
models, as in vaecli.models.densities; nothing here knows about configs or optimizers.

`objective(vae, x, eps, bound, estimator)` returns a per-example surrogate to maximise and the
log-weights (no gradient) to log `bound(log_w)` from:
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
estimator's gradient: no separate passes for the encoder side (ENCODER_SIDE) and the model side.
The model-agnostic forms are `stl(log_weight_fn, path, bound)` and `dreg(...)`.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from vaecli.models import densities
from vaecli.models.bounds import Bound

_stop = jax.lax.stop_gradient


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
