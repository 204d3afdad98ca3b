"""The densities the objectives are made of: KL (analytic and Monte Carlo), Gaussian and
Bernoulli log-densities, reparameterized draws, against scipy and closed forms."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import standard_error
from scipy import integrate, stats

from vaecli.models import densities


def kl_1d_closed_form(mu: float, sigma: float) -> float:
    """KL(N(mu, sigma²) ‖ N(0, 1)), written out by hand."""
    return -math.log(sigma) + (sigma**2 + mu**2) / 2 - 0.5


# ---------------------------------------------------------------- KL


def test_kl_of_standard_normal_to_itself_is_exactly_zero():
    zeros = jnp.zeros((3, 5))
    kl = densities.kl_analytic(zeros, zeros)
    assert kl.shape == (3,)
    assert np.array_equal(np.asarray(kl), np.zeros(3))


def test_kl_analytic_is_non_negative_and_positive_away_from_the_prior():
    rng = np.random.default_rng(0)
    mean = jnp.asarray(rng.normal(0, 2, (1000, 8)), jnp.float32)
    logvar = jnp.asarray(rng.uniform(-4, 4, (1000, 8)), jnp.float32)
    kl = np.asarray(densities.kl_analytic(mean, logvar))
    assert kl.shape == (1000,)
    assert np.all(np.isfinite(kl))
    assert np.all(kl > 0)  # no row of random (mean, logvar) is exactly the prior


@pytest.mark.parametrize("mu, sigma", [(0.0, 1.0), (1.5, 1.0), (0.0, 0.3), (-0.7, 2.5), (2.0, 0.1)])
def test_kl_analytic_matches_1d_closed_form_and_numerical_integration(mu, sigma):
    expected = kl_1d_closed_form(mu, sigma)
    if sigma >= 0.3:  # the integrand is well behaved: check the closed form itself by quadrature
        q, p = stats.norm(mu, sigma), stats.norm(0, 1)
        integral, _ = integrate.quad(lambda z: q.pdf(z) * (q.logpdf(z) - p.logpdf(z)), mu - 12 * sigma,
                                     mu + 12 * sigma)
        assert integral == pytest.approx(expected, abs=1e-7)
    got = densities.kl_analytic(jnp.array([mu]), jnp.array([2 * math.log(sigma)]))
    assert float(got) == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_kl_analytic_sums_independent_dimensions():
    mus, sigmas = [0.3, -1.2, 2.0], [0.5, 1.7, 1.0]
    expected = sum(kl_1d_closed_form(m, s) for m, s in zip(mus, sigmas))
    got = densities.kl_analytic(jnp.array(mus), 2 * jnp.log(jnp.array(sigmas)))
    assert float(got) == pytest.approx(expected, rel=1e-5)


def test_reparameterize_draws_from_the_requested_gaussian():
    mean = jnp.array([[0.5, -1.0, 2.0], [0.0, 3.0, -0.2]])
    logvar = jnp.array([[0.3, -0.7, 1.2], [0.0, -2.0, 0.5]])
    n = 100_000
    eps = jax.random.normal(jax.random.key(1), (n, *mean.shape))
    z = np.asarray(densities.reparameterize(mean, logvar, eps), np.float64)
    assert z.shape == (n, 2, 3)
    sd = np.exp(0.5 * np.asarray(logvar, np.float64))
    # sample mean: standard error sd/√n; sample variance: standard error ≈ sd²·√(2/n)
    assert np.all(np.abs(z.mean(0) - np.asarray(mean)) < 4 * sd / math.sqrt(n))
    assert np.all(np.abs(z.var(0) - sd**2) < 4 * sd**2 * math.sqrt(2 / n))


def test_monte_carlo_kl_agrees_with_analytic_kl():
    mean = jnp.array([0.5, -1.0, 2.0, 0.0])
    logvar = jnp.array([0.3, -0.7, 1.2, -3.0])
    z = densities.reparameterize(mean, logvar, jax.random.normal(jax.random.key(0), (200_000, *mean.shape)))
    samples = np.asarray(densities.kl_monte_carlo(z, mean, logvar), np.float64)
    assert samples.shape == (200_000,)
    analytic = float(densities.kl_analytic(mean, logvar))
    se = standard_error(samples)
    assert se < 0.05 * analytic  # enough samples for the comparison to mean something
    assert abs(samples.mean() - analytic) < 4 * se


# ---------------------------------------------------------------- log-densities


def test_gaussian_log_prob_matches_scipy_diagonal_normal():
    rng = np.random.default_rng(1)
    d = 5
    mean = rng.normal(size=d)
    logvar = rng.uniform(-2, 2, d)
    z = rng.normal(size=(7, 4, d)) * 2  # leading (K, B) axes broadcast against mean (D,)
    got = np.asarray(densities.gaussian_log_prob(jnp.asarray(z, jnp.float32), jnp.asarray(mean, jnp.float32),
                                                  jnp.asarray(logvar, jnp.float32)))
    expected = stats.multivariate_normal(mean, np.diag(np.exp(logvar))).logpdf(z)
    assert got.shape == (7, 4)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)


def test_standard_normal_log_prob_matches_scipy():
    z = np.random.default_rng(2).normal(size=(10, 6)) * 1.5
    got = np.asarray(densities.standard_normal_log_prob(jnp.asarray(z, jnp.float32)))
    expected = stats.multivariate_normal(np.zeros(6), np.eye(6)).logpdf(z)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)


def test_bernoulli_log_prob_matches_numpy_formula():
    rng = np.random.default_rng(3)
    logits = rng.uniform(-8, 8, (3, 4, 20))
    # binary pixels in two rows, grey levels in [0, 1] in the third
    x = np.concatenate([(rng.random((2, 4, 20)) < 0.5).astype(np.float64), rng.random((1, 4, 20))])
    p = 1 / (1 + np.exp(-logits))
    expected = np.sum(x * np.log(p) + (1 - x) * np.log(1 - p), axis=-1)
    got = np.asarray(densities.bernoulli_log_prob(jnp.asarray(logits, jnp.float32), jnp.asarray(x, jnp.float32)))
    assert got.shape == (3, 4)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)
