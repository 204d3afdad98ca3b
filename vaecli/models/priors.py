"""p(z): the standard normal and the VampPrior (a mixture of the encoder's posteriors at
K learned pseudo-inputs, Tomczak & Welling 2018). Both take the encoder, which only the
VampPrior uses, so the model calls every prior the same way. Registered by name in
vaecli.registry.PRIORS, whose `closed_form_kl` states what `kl_per_dim` returns here
(tests/test_models.py holds them to each other)."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from vaecli.models import densities

_HIGHEST = jax.lax.Precision.HIGHEST  # no TF32 for the mixture's quadratic forms on GPUs


class StandardNormal(nnx.Module):
    def __init__(self, latent_dim: int):
        self.latent_dim = latent_dim

    @classmethod
    def from_config(cls, cfg, in_dim: int):
        return cls(cfg.latent_dim)

    def kl_per_dim(self, q):
        """KL(q(z|x) ‖ N(0, I)) per latent dimension, in closed form: (B, D)."""
        return densities.kl_per_dim(*q)

    def log_prob(self, z, encode):
        return densities.standard_normal_log_prob(z)

    def sample(self, key, n: int, encode):
        return jax.random.normal(key, (n, self.latent_dim))


class VampPrior(nnx.Module):
    """p(z) = (1/K) Σ_k q(z | u_k). The pseudo-inputs are u_k = sigmoid(logits), pixels in
    (0, 1), learned through the encoder with everything else."""

    def __init__(self, k: int, in_dim: int):
        self.logits = nnx.Param(jnp.zeros((k, in_dim)))

    @classmethod
    def from_config(cls, cfg, in_dim: int):
        return cls(cfg.pseudo_inputs, in_dim)

    def kl_per_dim(self, q):
        return None  # a mixture: no closed form (Monte Carlo only)

    def set_pseudo_inputs(self, images):
        """Start the pseudo-inputs at `images` (K, D) in [0, 1], pulled into (0.05, 0.95)."""
        p = 0.05 + 0.9 * jnp.asarray(images, jnp.float32)
        self.logits.value = jnp.log(p) - jnp.log1p(-p)

    def components(self, encode):
        return encode(jax.nn.sigmoid(self.logits[...]))

    def log_prob(self, z, encode):
        mean, logvar = self.components(encode)  # (K, D)
        inv_var = jnp.exp(-logvar)
        # Σ_d (z_d − m_d)²/v_d as matmuls: the (..., K, D) difference never exists in memory
        # (K=500 components against a 2^16-row evaluation chunk would take gigabytes).
        quad = (jnp.einsum("...d,kd->...k", z**2, inv_var, precision=_HIGHEST)
                - 2 * jnp.einsum("...d,kd->...k", z, mean * inv_var, precision=_HIGHEST)
                + jnp.sum(mean**2 * inv_var, -1))
        log_n = -0.5 * (quad + jnp.sum(densities.LOG_2PI + logvar, -1))
        return jax.nn.logsumexp(log_n, axis=-1) - math.log(mean.shape[0])

    def sample(self, key, n: int, encode):
        mean, logvar = self.components(encode)
        k_pick, k_eps = jax.random.split(key)
        idx = jax.random.randint(k_pick, (n,), 0, mean.shape[0])
        return densities.reparameterize(mean[idx], logvar[idx], jax.random.normal(k_eps, (n, mean.shape[1])))
