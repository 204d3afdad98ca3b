"""The training objectives' losses, one function each, named by `objective.name` in
vaecli.registry.OBJECTIVES (which also says what each reads and whether it defines a
density). Each takes a bound model, a batch x, a key, the run's ObjectiveConfig, the
step's KL weight (β after the warm-up) and free bits, and returns batch means
(loss, recon, kl): `recon` is the reconstruction loss −E_q[log p(x|z)] in nats and `kl`
the KL as for the ELBO, so the logs read the same whatever is minimised.

    log p(x) ≥ E_q[log p(x|z)] − KL(q(z|x) ‖ p(z))                         (ELBO)
    log p(x) ≥ E[log (1/K) Σ_k p(x, z_k) / q(z_k|x)],  z_k ~ q(z|x)        (IWAE, K samples)

The K-sample bound is the importance-sampled estimate of log p(x) with q as proposal;
it never decreases with K and tends to log p(x) as K → ∞. Models offer `encode`,
`noise_dim`, `log_terms` and `kl_per_dim` (vaecli.models.vae); the math they are made of
is vaecli.models.densities. `kl_weight` and `free_bits` may be traced values: replicas of
one program differ in them (the state's "hyper").
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from vaecli import registry
from vaecli.models.densities import draw_noise


def _log_terms(model, x, key, samples: int, draw: bool):
    """(log p(x|z), log p(z), log q(z|x)), each (S, B), at `samples` reparameterized draws of
    all latents, or at z = the encoder's mean (S = 1) when `draw` is False; and q."""
    q = model.encode(x)
    if draw:
        eps = draw_noise(key, model, x.shape[0], samples)
    else:
        eps = jnp.zeros((1, x.shape[0], model.noise_dim), x.dtype)
    return model.log_terms(x, q, eps), q


def elbo(model, x, key, cfg, kl_weight=1.0, free_bits=None):
    """recon + kl_weight·KL from `samples` reparameterized draws; the KL analytic (per
    dimension, floored at `free_bits` nats after the batch mean: Kingma et al. 2016) or
    Monte Carlo, log q(z|x) − log p(z) at the draws."""
    free_bits = cfg.free_bits if free_bits is None else free_bits
    (log_px, log_pz, log_qz), q = _log_terms(model, x, key, cfg.samples, draw=True)
    recon = -jnp.mean(log_px)
    if cfg.kl == "mc":
        kl_mc = jnp.mean(log_qz - log_pz)
        return recon + kl_weight * kl_mc, recon, kl_mc
    per_dim = jnp.mean(model.kl_per_dim(q), axis=0)  # (D,): the batch mean per latent dimension
    # a where, not an if: free_bits may be a traced per-replica value
    penalty = jnp.where(free_bits > 0, jnp.sum(jnp.maximum(per_dim, free_bits)), jnp.sum(per_dim))
    return recon + kl_weight * penalty, recon, jnp.sum(per_dim)


def iwae(model, x, key, cfg, kl_weight=1.0, free_bits=None):
    """−log (1/K) Σ_k p(x, z_k)/q(z_k|x), K = `samples` (Burda et al. 2016); kl reported is
    the Monte Carlo KL at the same draws."""
    (log_px, log_pz, log_qz), _ = _log_terms(model, x, key, cfg.samples, draw=True)
    bound = jax.nn.logsumexp(log_px + log_pz - log_qz, axis=0) - math.log(cfg.samples)
    return -jnp.mean(bound), -jnp.mean(log_px), jnp.mean(log_qz - log_pz)


def autoencoder(model, x, key, cfg, kl_weight=1.0, free_bits=None):
    """−log p(x|z) at z = the encoder's mean: no sampling, no KL (kl reported as 0)."""
    (log_px, _, _), _ = _log_terms(model, x, key, 1, draw=False)
    recon = -jnp.mean(log_px)
    return recon, recon, jnp.zeros_like(recon)


def training_loss(model, x, key, cfg, kl_weight=1.0, free_bits=None):
    """Batch means (loss, recon, kl) of the objective `cfg` (an ObjectiveConfig) names."""
    return registry.OBJECTIVES[cfg.name].load()(model, x, key, cfg, kl_weight, free_bits)
