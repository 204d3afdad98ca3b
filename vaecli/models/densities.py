"""The math the objectives are made of: log-densities, the KL (analytic and Monte Carlo),
reparameterized draws. Pure functions of arrays; nothing here knows about configs,
files or optimizers. Every log-density is summed over the event dimensions and returned
per example. The objectives themselves (ELBO, IWAE, ...) are in vaecli.models.objectives.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax

LOG_2PI = math.log(2 * math.pi)


def reparameterize(mean, logvar, eps):
    """z = mean + σ·eps, σ = exp(logvar / 2), for standard-normal `eps` broadcasting against
    mean: differentiable in (mean, logvar). Every draw from a diagonal Gaussian goes through
    here, in this order of operations (the runs' bits depend on it)."""
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


def draw_noise(key, model, batch: int, samples: int):
    """Standard-normal numbers for `samples` draws of all of the model's latents: (S, B, noise_dim)."""
    return jax.random.normal(key, (samples, batch, model.noise_dim))
