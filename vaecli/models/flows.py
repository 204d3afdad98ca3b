"""Normalizing-flow posteriors: q(z|x) is a diagonal Gaussian draw z0 pushed through N
invertible steps, z_K = f_N ∘ … ∘ f_1(z0), so that

    log q(z_K|x) = log N(z0; mean, diag(exp(logvar))) − Σ_n log |det ∂z_n/∂z_{n−1}|.

Every step maps z (..., D) with any leading axes (S, B) to (z_out, log|det|) (...,), and
takes an optional context h (B, H) broadcast over the sample axis; `Flow` chains steps and
sums their log-determinants; `sample` gives (z_K, log q(z_K|x)) for the bounds of
vaecli.models.bounds (log w = log p(x, z_K) − log q(z_K|x)). Steps start at, or near,
the identity, so a flow posterior starts as the Gaussian one.

    Planar(dim)            z + û·tanh(wᵀz + b)                       (Rezende & Mohamed 2015)
    IAF(dim, hidden, ...)  z·exp(s(z_<d, h)) + m(z_<d, h), MADE nets  (Kingma et al. 2016)

Planar parameters are global (one flow for all x), so they ignore h; the IAF's MADE takes h
into its first hidden layer, as in Kingma et al. (context_dim = 0: unconditioned). In a
vaecli model (`from_config`, vaecli.models.vae.FlowVAE) h is the base Gaussian's (mean,
logvar): features of x the encoder computes anyway. The flows
give the density only along their own samples (there is no inverse), which suffices for
the reparameterized bounds but not for STL or DReG, which evaluate log q at a fixed z.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vaecli.models import densities

# wᵀu = log(e − 1) makes û = 0 (softplus(log(e − 1)) = 1): the planar step's identity point
_PLANAR_IDENTITY = math.log(math.e - 1)


class Planar(nnx.Module):
    """f(z) = z + û tanh(wᵀz + b), log|det| = log(1 + tanh'(wᵀz + b)·wᵀû).

    Invertible because û = u + (−1 + softplus(wᵀu) − wᵀu)·w/‖w‖² has wᵀû = −1 + softplus(wᵀu)
    > −1 (Rezende & Mohamed 2015, appendix A), so 1 + tanh'·wᵀû > 0 everywhere."""

    def __init__(self, dim: int, *, rngs: nnx.Rngs, init_scale: float = 0.01):
        k_w, k_u = jax.random.split(rngs.params())
        w = jax.random.normal(k_w, (dim,)) / math.sqrt(dim)  # ‖w‖ ≈ 1
        self.w = nnx.Param(w)
        # u on the identity point plus a little noise: û starts small but not zero, so both
        # u and w receive gradients from the first step
        self.u = nnx.Param(_PLANAR_IDENTITY * w / jnp.sum(w**2) + init_scale * jax.random.normal(k_u, (dim,)))
        self.b = nnx.Param(jnp.zeros(()))

    def u_hat(self):
        w, u = self.w[...], self.u[...]
        wu = jnp.sum(w * u)
        return u + (jax.nn.softplus(wu) - 1.0 - wu) * w / jnp.sum(w**2)

    def __call__(self, z, h=None):
        w = self.w[...]
        t = jnp.tanh(z @ w + self.b[...])
        # 1 + tanh'·wᵀû = t² + (1 − t²)·softplus(wᵀu): a sum of non-negative terms, where the
        # direct form cancels to 0 in float32 at t = 0 once wᵀu is very negative
        log_det = jnp.log(t**2 + (1.0 - t**2) * jax.nn.softplus(jnp.sum(w * self.u[...])))
        return z + t[..., None] * self.u_hat(), log_det


@functools.cache
def made_masks(dim: int, hidden: tuple[int, ...], reverse: bool) -> tuple[np.ndarray, ...]:
    """MADE's masks (Germain et al. 2015), (in, out) each: output d sees inputs earlier than d
    in the order (0, 1, ..., D−1), or its reverse. Static shapes: numpy, folded into the program."""
    order = np.arange(dim)[::-1] if reverse else np.arange(dim)
    deg_in = np.empty(dim, int)
    deg_in[order] = np.arange(1, dim + 1)  # degree of input d: its position in the order, 1-based
    # hidden degrees cycle through 1..D−1 (D = 1: 0, a unit that sees only the context)
    degs = [deg_in] + [np.arange(n) % max(dim - 1, 1) + (1 if dim > 1 else 0) for n in hidden]
    masks = [(d_out[None, :] >= d_in[:, None]).astype(np.float32) for d_in, d_out in zip(degs[:-1], degs[1:])]
    out = (deg_in[None, :] > degs[-1][:, None]).astype(np.float32)
    return (*masks, np.concatenate([out, out], axis=1))  # (m, s) heads share the output mask


class IAF(nnx.Module):
    """z_out = z ⊙ exp(s) + m, (m, s) = MADE(z, h): output d depends on z_<d only, so
    ∂z_out/∂z is triangular with diagonal exp(s) and log|det| = Σ_d s_d.

    The affine update of Kingma et al. (2016, eq. 10): with the output layer at zero it is
    exactly the identity (their gated variant σ·z + (1 − σ)·m is so only as σ → 1). `reverse`
    flips the variable order; `iaf_flow` alternates it between steps."""

    def __init__(self, dim: int, hidden: tuple[int, ...] = (32,), context_dim: int = 0, *, rngs: nnx.Rngs,
                 reverse: bool = False, activation=jax.nn.elu):
        self.dim, self.hidden, self.reverse, self.activation = dim, tuple(hidden), reverse, activation
        widths = [dim, *self.hidden]
        self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(widths[:-1], widths[1:])])
        self.context = nnx.Linear(context_dim, self.hidden[0], use_bias=False, rngs=rngs) if context_dim else None
        self.out = nnx.Linear(widths[-1], 2 * dim, kernel_init=nnx.initializers.zeros, rngs=rngs)

    def __call__(self, z, h=None):
        masks = made_masks(self.dim, self.hidden, self.reverse)
        a = z
        for i, (layer, mask) in enumerate(zip(self.layers, masks)):
            a = a @ (layer.kernel[...] * mask) + layer.bias[...]
            if i == 0 and self.context is not None:
                a = a + self.context(h)  # (B, H) broadcasts over the sample axis of (S, B, H)
            a = self.activation(a)
        ms = a @ (self.out.kernel[...] * masks[-1]) + self.out.bias[...]
        m, s = ms[..., : self.dim], ms[..., self.dim:]
        return z * jnp.exp(s) + m, jnp.sum(s, axis=-1)


class Flow(nnx.Module):
    """Steps applied in turn: (z_K, Σ log|det|)."""

    def __init__(self, steps):
        self.steps = nnx.List(list(steps))

    def __call__(self, z, h=None):
        total = jnp.zeros(z.shape[:-1], z.dtype)
        for step in self.steps:
            z, log_det = step(z, h)
            total = total + log_det
        return z, total


def planar_flow(dim: int, steps: int, *, rngs: nnx.Rngs) -> Flow:
    return Flow([Planar(dim, rngs=rngs) for _ in range(steps)])


def iaf_flow(dim: int, steps: int, hidden: tuple[int, ...] = (32,), context_dim: int = 0, *,
             rngs: nnx.Rngs) -> Flow:
    """`steps` IAF steps, the variable order reversed at every other one (else the first
    variable of the order would only ever be scaled and shifted by constants)."""
    return Flow([IAF(dim, hidden, context_dim, rngs=rngs, reverse=bool(i % 2)) for i in range(steps)])


def sample(flow, mean, logvar, eps, h=None):
    """(z_K, log q(z_K|x)) for z0 = mean + σ·eps, eps (S, B, D): reparameterized, both (S, B[, D])."""
    z0 = densities.reparameterize(mean, logvar, eps)
    z, log_det = flow(z0, h)
    return z, densities.gaussian_log_prob(z0, mean, logvar) - log_det


def from_config(cfg, dim: int, *, rngs: nnx.Rngs) -> Flow:
    """The flow of `model.flow` (a vaecli.config.FlowConfig) over `dim` latents; the IAF
    takes the base Gaussian's (mean, logvar), 2·dim numbers per example, as its context."""
    if cfg.kind == "planar":
        return planar_flow(dim, cfg.steps, rngs=rngs)
    if cfg.kind == "iaf":
        return iaf_flow(dim, cfg.steps, tuple(cfg.hidden), 2 * dim, rngs=rngs)
    raise ValueError(f"unknown flow '{cfg.kind}' (choose planar or iaf)")
