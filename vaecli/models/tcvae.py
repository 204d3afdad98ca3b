"""β-TCVAE (Chen et al. 2018): `tc_decomposition` splits the Monte Carlo KL of a batch into
index-code mutual information, total correlation and dimension-wise KL, with q(z) and q(z_d)
estimated from the batch; `tcvae_loss` weights them. Pure functions of arrays, as in
vaecli.models.densities.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from vaecli.models import densities


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
