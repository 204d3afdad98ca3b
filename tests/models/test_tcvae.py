"""vaecli.models.tcvae against Gaussian aggregate posteriors whose total correlation, mutual
information and dimension-wise KL are known in closed form."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import gaussian_channel_terms, standard_errors

from vaecli.models import densities, tcvae

N_DATA = 60_000


def _gaussian_codes(key, cov, batch, s2=0.25):
    """Encoder means x ~ N(0, cov), fixed variance s2: the aggregate posterior is N(0, cov + s2·I)."""
    k_x, k_z = jax.random.split(key)
    d = cov.shape[0]
    mean = jax.random.multivariate_normal(k_x, jnp.zeros(d), jnp.asarray(cov, jnp.float32), (batch,))
    logvar = jnp.full((batch, d), math.log(s2))
    return mean + math.sqrt(s2) * jax.random.normal(k_z, (batch, d)), mean, logvar


def test_tc_terms_sum_to_the_monte_carlo_kl_exactly():
    rng = np.random.default_rng(8)
    mean = jnp.asarray(rng.normal(0, 1, (512, 4)), jnp.float32)
    logvar = jnp.asarray(rng.uniform(-2, 0.5, (512, 4)), jnp.float32)
    z = mean + jnp.exp(0.5 * logvar) * jax.random.normal(jax.random.key(9), mean.shape)
    kl_mc = np.asarray(jax.jit(densities.kl_monte_carlo)(z, mean, logvar), np.float64)
    for estimator in ("mws", "mss"):  # jitted: one program, not one per operation
        t = jax.jit(tcvae.tc_decomposition, static_argnums=(3, 4))(z, mean, logvar, N_DATA, estimator)
        np.testing.assert_allclose(t["mi"] + t["tc"] + t["dim_kl"], kl_mc, rtol=1e-5, atol=1e-4)
    # and the Monte Carlo KL is the KL in expectation: within its standard error of the closed form
    diff = kl_mc - np.asarray(densities.kl_analytic(mean, logvar), np.float64)
    assert abs(diff.mean()) < 4 * standard_errors(diff)
    with pytest.raises(ValueError, match="mws or mss"):
        tcvae.tc_decomposition(z, mean, logvar, N_DATA, "exact")


def test_tc_is_zero_for_independent_codes_and_the_gaussian_tc_for_correlated_ones():
    """Batches of M = 1024, D = 3; 8 batches each. MSS: each term within 4 standard errors plus
    its O(1/M) bias (0.03 nats here) of the closed form. MWS: the same once its constant offsets
    (+log N, +(D − 1)·log N, −D·log N) are taken off, so its gradients are MSS's in this regime."""
    d, m = 3, 1024
    terms = ("mi", "tc", "dim_kl")

    @jax.jit
    def batch_means(key, cov):
        codes = _gaussian_codes(key, cov, m)
        return {e: {t: jnp.mean(v) for t, v in tcvae.tc_decomposition(*codes, N_DATA, e).items() if t in terms}
                for e in ("mss", "mws")}

    offsets = {"mi": math.log(N_DATA), "tc": (d - 1) * math.log(N_DATA), "dim_kl": -d * math.log(N_DATA)}
    tcs = {}
    for rho in (0.0, 0.8):
        cov = np.eye(d)
        cov[0, 1] = cov[1, 0] = rho
        exact = gaussian_channel_terms(cov)
        runs = jax.device_get([batch_means(jax.random.key(i), cov) for i in range(8)])
        for est in ("mss", "mws"):
            for term, value in exact.items():
                means = np.array([r[est][term] for r in runs], np.float64)
                got = means.mean() - (offsets[term] if est == "mws" else 0.0)
                assert abs(got - value) < 4 * standard_errors(means) + 0.03, (rho, est, term, got, value)
                tcs[rho, est, term] = got
    assert tcs[0.8, "mss", "tc"] > 0.2 and abs(tcs[0.0, "mss", "tc"]) < 0.03


def test_tcvae_loss_weights_the_terms():
    rng = np.random.default_rng(10)
    terms = {k: jnp.asarray(rng.normal(size=8), jnp.float32) for k in ("mi", "tc", "dim_kl")}
    recon = jnp.asarray(rng.uniform(50, 60, 8), jnp.float32)
    kl = terms["mi"] + terms["tc"] + terms["dim_kl"]
    np.testing.assert_allclose(tcvae.tcvae_loss(recon, terms, beta=1.0), jnp.mean(recon + kl), rtol=1e-6)
    np.testing.assert_allclose(tcvae.tcvae_loss(recon, terms, beta=6.0), jnp.mean(recon + kl + 5 * terms["tc"]),
                               rtol=1e-6)
    np.testing.assert_allclose(tcvae.tcvae_loss(recon, terms, beta=2.0, alpha=0.0, gamma=3.0),
                               jnp.mean(recon + 2 * terms["tc"] + 3 * terms["dim_kl"]), rtol=1e-6)
