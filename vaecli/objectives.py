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


def draw_noise(key, model, batch: int, samples: int):
    """Standard-normal numbers for `samples` draws of all of the model's latents: (S, B, noise_dim)."""
    return jax.random.normal(key, (samples, batch, model.noise_dim))


def training_loss(model, x, key, *, name: str = "elbo", samples: int = 1, kl: str = "analytic",
                  kl_weight=1.0, free_bits: float = 0.0):
    """Batch means (loss, recon, kl) of the objective `name`, for any model offering
    `encode` and `log_terms` (vaecli.models). `loss` is what is minimised:

    elbo  recon + kl_weight·KL, from `samples` reparameterized draws; the KL analytic
          (per dimension, floored at `free_bits` nats after the batch mean: Kingma et al.
          2016) or Monte Carlo, log q(z|x) − log p(z) at the draws;
    iwae  −log (1/K) Σ_k p(x, z_k)/q(z_k|x), K = `samples` (Burda et al. 2016);
    ae    −log p(x|z) at z = the encoder's mean: no sampling, no KL.
    `recon` and `kl` are reported as for the ELBO (kl Monte Carlo under iwae, 0 under ae).
    """
    q = model.encode(x)
    batch = x.shape[0]
    if name == "ae":
        eps = jnp.zeros((1, batch, model.noise_dim), x.dtype)
    else:
        eps = draw_noise(key, model, batch, samples)
    log_px, log_pz, log_qz = model.log_terms(x, q, eps)
    recon = -jnp.mean(log_px)
    if name == "ae":
        return recon, recon, jnp.zeros_like(recon)
    kl_mc = jnp.mean(log_qz - log_pz)
    if name == "iwae":
        bound = jax.nn.logsumexp(log_px + log_pz - log_qz, axis=0) - math.log(samples)
        return -jnp.mean(bound), recon, kl_mc
    if kl == "mc":
        return recon + kl_weight * kl_mc, recon, kl_mc
    per_dim = jnp.mean(model.kl_per_dim(q), axis=0)  # (D,): the batch mean per latent dimension
    # a where, not an if: free_bits may be a traced per-replica value (state["hyper"])
    penalty = jnp.where(free_bits > 0, jnp.sum(jnp.maximum(per_dim, free_bits)), jnp.sum(per_dim))
    return recon + kl_weight * penalty, recon, jnp.sum(per_dim)
