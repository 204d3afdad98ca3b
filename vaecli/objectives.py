"""The science: log-densities, KL (analytic and Monte Carlo), the ELBO and the IWAE bound.

Pure functions of arrays and an `encode`/`decode` pair; nothing here knows about
configs, files or optimizers. Conventions: every log-density is summed over the event
dimensions and returned per example; `recon` is the reconstruction *loss*
−E_q[log p(x|z)] in nats, so ELBO = −(recon + kl).

    log p(x) ≥ E_q[log p(x|z)] − KL(q(z|x) ‖ p(z))                         (ELBO)
    log p(x) ≥ E[log (1/K) Σ_k p(x, z_k) / q(z_k|x)],  z_k ~ q(z|x)        (IWAE, K samples)

The K-sample bound is the importance-sampled estimate of log p(x) with q as proposal;
it never decreases with K and tends to log p(x) as K → ∞.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax

LOG_2PI = math.log(2 * math.pi)


def reparameterize(key, mean, logvar, n: int):
    """n samples z = mean + σ·ε, ε ~ N(0, I): differentiable in (mean, logvar). Shape (n, *mean.shape)."""
    eps = jax.random.normal(key, (n, *mean.shape), mean.dtype)
    return mean + jnp.exp(0.5 * logvar) * eps


def gaussian_log_prob(z, mean, logvar):
    """log N(z; mean, diag(exp(logvar))), summed over the last axis."""
    return -0.5 * jnp.sum(LOG_2PI + logvar + (z - mean) ** 2 * jnp.exp(-logvar), axis=-1)


def standard_normal_log_prob(z):
    return -0.5 * jnp.sum(LOG_2PI + z**2, axis=-1)


def kl_per_dim(mean, logvar):
    """KL(N(mean, σ²) ‖ N(0, 1)) for each latent dimension, in closed form."""
    return 0.5 * (jnp.exp(logvar) + mean**2 - 1.0 - logvar)


def kl_analytic(mean, logvar):
    return jnp.sum(kl_per_dim(mean, logvar), axis=-1)


def kl_monte_carlo(z, mean, logvar):
    """Single-sample estimates log q(z|x) − log p(z), one per sample in `z` (leading axes)."""
    return gaussian_log_prob(z, mean, logvar) - standard_normal_log_prob(z)


def bernoulli_log_prob(logits, x):
    """log p(x | logits) for Bernoulli pixels (x may be in [0, 1]), summed over the last (pixel) axis."""
    return -jnp.sum(optax.sigmoid_binary_cross_entropy(logits, x), axis=-1)


def elbo_terms(encode, log_likelihood, x, key, samples: int = 1, kl: str = "analytic"):
    """Per-example (recon, kl) with ELBO = −(recon + kl), from `samples` reparameterized draws.

    `encode(x) -> (mean, logvar)` of q(z|x); `log_likelihood(x, z) -> log p(x|z)` per example.
    """
    mean, logvar = encode(x)
    z = reparameterize(key, mean, logvar, samples)
    recon = -jnp.mean(log_likelihood(x, z), axis=0)
    if kl == "analytic":
        kl_value = kl_analytic(mean, logvar)
    elif kl == "mc":
        kl_value = jnp.mean(kl_monte_carlo(z, mean, logvar), axis=0)
    else:
        raise ValueError(f"unknown KL estimator {kl!r}")
    return recon, kl_value


def log_importance_weights(x, z, mean, logvar, log_likelihood):
    """log w_k = log p(x|z_k) + log p(z_k) − log q(z_k|x) for samples z of shape (K, B, D).

    Returns (log_w, log_px_given_z), both (K, B).
    """
    log_px = log_likelihood(x, z)
    return log_px + standard_normal_log_prob(z) - gaussian_log_prob(z, mean, logvar), log_px
