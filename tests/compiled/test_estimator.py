"""The importance-sampled estimator of log p(x) and the ELBO: against closed forms, numerical
integration and each other; independent of batching and chunking; bounded in memory."""
from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from helpers import standard_error
from scipy import stats

from vaecli.compiled import estimator, summaries
from vaecli.config import ModelConfig
from vaecli.models import priors
from vaecli.models import vae as models

# ---------------------------------------------------------------- the K-sample bound on a Bernoulli VAE


@pytest.fixture(scope="module")
def bernoulli_vae():
    fn = models.functional(ModelConfig(latent_dim=4, hidden=(16,)), (4, 4, 1), seed=0)
    x = (np.random.default_rng(0).random((256, 16)) < 0.5).astype(np.float32)
    return fn, x


def test_k_sample_bound_grows_with_k_and_exceeds_the_elbo(bernoulli_vae):
    """E[log p̂_K] is non-decreasing in K and ≥ the ELBO.

    A single realization need not be monotone: per_example reuses samples 0..K-1 across
    K (randomness is per (example, sample index)), and adding samples whose weights are
    below the running mean lowers log-mean-exp. So each step is tested as a paired
    difference over examples, allowed to dip by at most 3 of its own standard errors,
    while the big K=1 -> 10 gain must be significant.
    """
    fn, x = bernoulli_vae
    ll, elbo = {}, {}
    for k in (1, 10, 100, 1000):
        r = estimator.per_example(fn, fn.params, x, scale=1, k=k, seed=0, batch_size=128)
        assert r["log_likelihood"].shape == (len(x),)
        assert np.all(np.isfinite(r["log_likelihood"]))
        ll[k] = r["log_likelihood"].astype(np.float64)
        elbo[k] = -(r["recon"] + r["kl"]).astype(np.float64)

    gain = ll[10] - ll[1]
    assert gain.mean() > 3 * standard_error(gain)
    for lo, hi in [(1, 10), (10, 100), (100, 1000)]:
        step = ll[hi] - ll[lo]
        assert step.mean() > -3 * standard_error(step), (lo, hi, step.mean(), standard_error(step))

    # At K=1000, recon is averaged over 1000 draws: -(recon + kl) is a precise ELBO.
    gap = ll[1000] - elbo[1000]
    assert gap.mean() > 0
    assert gap.mean() > 4 * standard_error(gap)


def test_uint8_images_and_scale_match_float_input(bernoulli_vae):
    fn, x = bernoulli_vae
    x = x[:40]
    as_float = estimator.per_example(fn, fn.params, x, scale=1, k=5, seed=3, batch_size=16)
    as_255 = estimator.per_example(fn, fn.params, (x * 255).astype(np.uint8), scale=255, k=5, seed=3, batch_size=16)
    for name in ("recon", "kl", "log_likelihood"):
        np.testing.assert_allclose(as_255[name], as_float[name], rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------- a linear-Gaussian model with exact log p(x)

D, P, SIGMA = 3, 6, 0.7  # latent dim, observed dim, observation noise


class LinearGaussian(models.VAE):
    """p(z) = N(0, I), p(x|z) = N(W z + b, σ² I), and a fixed diagonal Gaussian q(z|x).

    A vaecli.models.VAE with its own `encoder(x) -> (mean, logvar)` and
    `log_likelihood(x, z)` summed over the last axis, z of shape (K, B, D).
    """

    def __init__(self, w, b, enc_matrix, enc_shift, q_logvar):
        self.latent_dim = int(np.shape(enc_matrix)[0])
        self.prior = priors.StandardNormal(self.latent_dim)
        self.w = nnx.Param(jnp.asarray(w, jnp.float32))
        self.b = nnx.Param(jnp.asarray(b, jnp.float32))
        self.enc_matrix = nnx.Param(jnp.asarray(enc_matrix, jnp.float32))
        self.enc_shift = nnx.Param(jnp.asarray(enc_shift, jnp.float32))
        self.q_logvar = nnx.Param(jnp.asarray(q_logvar, jnp.float32))

    def encoder(self, x):
        mean = (x - self.b[...]) @ self.enc_matrix[...].T + self.enc_shift[...]
        return mean, jnp.broadcast_to(self.q_logvar[...], mean.shape)

    def log_likelihood(self, x, z):
        loc = z @ self.w[...].T + self.b[...]
        return jnp.sum(-0.5 * ((x - loc) / SIGMA) ** 2 - 0.5 * math.log(2 * math.pi * SIGMA**2), axis=-1)


@pytest.fixture(scope="module")
def linear_gaussian():
    """The model, 200 examples drawn from it, exact log p(x) and the exact KL(q ‖ posterior)."""
    rng = np.random.default_rng(0)
    w, b = rng.normal(size=(P, D)), rng.normal(size=P)
    # Exact posterior: N(A (x - b), S) with S = (I + WᵀW/σ²)⁻¹, A = S Wᵀ/σ².
    post_cov = np.linalg.inv(np.eye(D) + w.T @ w / SIGMA**2)
    enc_matrix = post_cov @ w.T / SIGMA**2
    # q: right mean map, shifted by one posterior sd, diagonal, variances doubled.
    shift = np.sqrt(np.diag(post_cov))
    q_cov = np.diag(2 * np.diag(post_cov))
    # Importance weights p/q have finite variance iff 2·S⁻¹ − Q⁻¹ is positive definite.
    assert np.all(np.linalg.eigvalsh(2 * np.linalg.inv(post_cov) - np.linalg.inv(q_cov)) > 0)
    # KL(N(μ+shift, Q) ‖ N(μ, S)): the same for every x, and exactly the ELBO gap.
    s_inv = np.linalg.inv(post_cov)
    gap = 0.5 * (np.trace(s_inv @ q_cov) + shift @ s_inv @ shift - D
                 + np.linalg.slogdet(post_cov)[1] - np.linalg.slogdet(q_cov)[1])

    marginal = stats.multivariate_normal(b, w @ w.T + SIGMA**2 * np.eye(P))
    x = marginal.rvs(size=200, random_state=rng).astype(np.float32)
    exact = marginal.logpdf(x.astype(np.float64))
    fn = models.Functional(LinearGaussian(w, b, enc_matrix, shift, np.log(np.diag(q_cov))))
    return fn, x, exact, gap


def test_linear_gaussian_model_pieces_match_scipy(linear_gaussian):
    """Sanity of the test model itself: log p(x|z) is the Gaussian of scipy."""
    fn, x, _, _ = linear_gaussian
    vae = fn.bind(fn.params)
    z = np.random.default_rng(5).normal(size=(2, 3, D)).astype(np.float32)
    got = np.asarray(vae.log_likelihood(jnp.asarray(x[:3]), jnp.asarray(z)))
    w, b = np.asarray(fn.params["w"], np.float64), np.asarray(fn.params["b"], np.float64)
    expected = np.array([[stats.multivariate_normal(w @ z[k, i] + b, SIGMA**2 * np.eye(P)).logpdf(x[i])
                          for i in range(3)] for k in range(2)])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)


def test_importance_sampled_log_px_matches_the_closed_form(linear_gaussian):
    fn, x, exact, gap = linear_gaussian
    r = estimator.per_example(fn, fn.params, x, scale=1, k=2000, seed=0, batch_size=100)
    err = r["log_likelihood"].astype(np.float64) - exact
    se = standard_error(err)  # paired: per-example estimate minus its exact value
    assert se < 0.02  # K=2000 makes the estimate precise ...
    assert abs(err.mean()) < 4 * se  # ... and it agrees with log p(x)
    # The summary's standard error (spread over examples) also covers the difference.
    summary = summaries.summarize(r, num_pixels=P)
    assert abs(summary["log_likelihood"] - exact.mean()) < 3 * summary["log_likelihood_stderr"]
    # With recon averaged over 2000 draws, -(recon + kl) is the ELBO: log p(x) − KL(q ‖ posterior).
    elbo_err = -(r["recon"] + r["kl"]).astype(np.float64) - (exact - gap)
    assert abs(elbo_err.mean()) < 4 * standard_error(elbo_err)


def test_single_sample_estimate_shows_the_elbo_gap(linear_gaussian):
    fn, x, exact, gap = linear_gaussian
    assert gap > 2  # q is deliberately poor: the gap is several nats
    r = estimator.per_example(fn, fn.params, x, scale=1, k=1, seed=0, batch_size=100)
    shortfall = exact - r["log_likelihood"].astype(np.float64)
    se = standard_error(shortfall)
    assert shortfall.mean() > 4 * se  # clearly below log p(x)
    # log w for one z ~ q is an unbiased estimate of the ELBO: its mean shortfall is the KL.
    assert abs(shortfall.mean() - gap) < 4 * se


def test_chunk_size_respects_max_rows_and_k():
    for k in (1, 2, 7, 50, 1000):
        for batch in (1, 3, 64, 1000):
            for max_rows in (1, 10, 64, 999, 2**16):
                c = estimator.chunk_size(k, batch, max_rows)
                assert 1 <= c <= k
                assert c * batch <= max_rows or c == 1  # one sample at a time is the floor
                assert c == k or (c + 1) * batch > max_rows  # and no smaller than it has to be


def test_per_example_does_not_depend_on_batch_size_or_chunking(linear_gaussian):
    """Randomness is per (example, sample index): batching, padding and chunking change nothing."""
    fn, x, _, _ = linear_gaussian
    k, n = 50, len(x)
    reference = estimator.per_example(fn, fn.params, x, scale=1, k=k, seed=7, batch_size=n, max_rows=10**9)
    layouts = [  # (batch_size, max_rows)
        (n, 13 * n),  # one batch, chunks of 13: 50 % 13 = 11 -> the last chunk is padded
        (7, 7 * 6),  # 29 batches, the last one padded; chunks of 6, 50 % 6 = 2
        (33, 1),  # max_rows below the batch size: one sample per chunk
    ]
    chunks = [estimator.chunk_size(k, min(bs, n), max_rows) for bs, max_rows in layouts]
    assert any(k % c for c in chunks) and any(n % bs for bs, _ in layouts)  # padding paths are exercised
    for batch_size, max_rows in layouts:
        got = estimator.per_example(fn, fn.params, x, scale=1, k=k, seed=7, batch_size=batch_size, max_rows=max_rows)
        for name in ("recon", "kl", "log_likelihood"):
            assert got[name].shape == (n,)
            np.testing.assert_allclose(got[name], reference[name], rtol=1e-5, atol=1e-5,
                                       err_msg=f"{name}, batch_size={batch_size}, max_rows={max_rows}")
    # The invariance is not vacuous: another seed gives other estimates.
    other = estimator.per_example(fn, fn.params, x, scale=1, k=k, seed=8, batch_size=n)
    assert np.mean(np.abs(other["log_likelihood"] - reference["log_likelihood"])) > 1e-3


def test_importance_sampled_log_px_converges_as_k_grows(linear_gaussian):
    """The error against the exact log p(x) shrinks as K grows: at K=1 it is the whole ELBO gap,
    it falls significantly from K=1 to 10 to 100 (paired over examples), it does not rise from
    100 to 1000 (by then the remaining bias, ~0.02 nats, is about one standard error), and at
    the largest K it is within its standard error of zero."""
    fn, x, exact, gap = linear_gaussian
    errors = {}
    for k in (1, 10, 100, 1000):
        r = estimator.per_example(fn, fn.params, x, scale=1, k=k, seed=1, batch_size=100)
        errors[k] = exact - r["log_likelihood"].astype(np.float64)  # ≥ 0 in expectation (a lower bound)
    for lo, hi in [(1, 10), (10, 100)]:
        drop = errors[lo] - errors[hi]
        assert drop.mean() > 3 * standard_error(drop), (lo, hi, drop.mean(), standard_error(drop))
    drop = errors[100] - errors[1000]
    assert drop.mean() > -3 * standard_error(drop)
    assert errors[1].mean() > 0.5 * gap
    assert abs(errors[1000].mean()) < 4 * standard_error(errors[1000])


def test_monte_carlo_kl_matches_the_analytic_kl_within_its_standard_error(linear_gaussian):
    fn, x, _, _ = linear_gaussian
    r = estimator.per_example(fn, fn.params, x, scale=1, k=1, seed=0, batch_size=64, kl_mc_samples=50)
    s = summaries.summarize(r, num_pixels=P)
    # The analytic KL of the test model's q against N(0, I), written out with numpy.
    mean, logvar = (np.asarray(a, np.float64) for a in fn.bind(fn.params).encoder(jnp.asarray(x)))
    kl_numpy = 0.5 * np.sum(np.exp(logvar) + mean**2 - 1 - logvar, axis=1)
    np.testing.assert_allclose(r["kl"], kl_numpy, rtol=1e-5)
    assert 0 < s["kl_mc_stderr"] < 0.05 * s["kl"]
    assert abs(s["kl_mc"] - s["kl"]) < 4 * s["kl_mc_stderr"]
    # The per-dimension KL sums to the KL, and M draws change the MC estimate, not the analytic one.
    np.testing.assert_allclose(r["kl_per_dim"].sum(1), r["kl"], rtol=1e-5)
    other = estimator.per_example(fn, fn.params, x, scale=1, k=1, seed=0, batch_size=64, kl_mc_samples=7)
    np.testing.assert_array_equal(other["kl"], r["kl"])
    assert np.mean(np.abs(other["kl_mc"] - r["kl_mc"])) > 1e-3


def test_active_units_on_a_model_with_known_dead_dimensions():
    """A linear encoder whose mean ignores x in some dimensions: those are dead (variance 0,
    and with q = prior there they cost no KL); one live dimension sits just under the 0.01
    threshold and one just over it."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(400, P)).astype(np.float32)
    enc = rng.normal(size=(5, P))
    enc[1] = 0.0  # dead
    enc[3] = 0.0  # dead
    centred = x.astype(np.float64) - x.mean(0)
    for d, target in ((2, 0.008), (4, 0.012)):  # scale row d so that Var_x(mean_d) is exactly `target`
        enc[d] *= math.sqrt(target / np.var(centred @ enc[d]))
    q_logvar = np.array([-1.0, 0.0, -0.5, 0.0, -2.0])
    w, b = rng.normal(size=(P, 5)), np.zeros(P)
    fn = models.Functional(LinearGaussian(w, b, enc, np.zeros(5), q_logvar))

    r = estimator.per_example(fn, fn.params, x, scale=1, k=3, seed=0, batch_size=128)
    units = summaries.latent_units(r)
    expected_variance = np.var(x.astype(np.float64) @ enc.T, axis=0)
    np.testing.assert_allclose(units["encoder_mean_variance"], expected_variance, rtol=1e-4, atol=1e-9)
    assert units["active"] == [True, False, False, False, True]
    assert units["active_units"] == 2 and units["latent_dim"] == 5
    kl = np.asarray(units["kl_per_dim"])
    assert kl[1] == 0.0 and kl[3] == 0.0  # q(z_d|x) = N(0, 1) = p(z_d) exactly
    assert np.all(kl[[0, 2, 4]] > 0)


def test_automatic_chunking_fits_a_memory_budget_without_changing_the_numbers(linear_gaussian, monkeypatch):
    fn, x, _, _ = linear_gaussian
    k = 64
    estimate, plan = estimator.compile_estimator(fn, fn.params, x, 1, k, batch_size=50)
    assert plan["sample_chunk"] == k and plan["scratch_bytes"] <= plan["memory_budget_bytes"]
    reference = estimate(fn.params, 5)
    budget = plan["scratch_bytes"] // 8
    monkeypatch.setattr(estimator, "memory_budget", lambda: budget)
    small, tight = estimator.compile_estimator(fn, fn.params, x, 1, k, batch_size=50)
    assert tight["sample_chunk"] < k
    assert tight["scratch_bytes"] <= budget or tight["sample_chunk"] == 1
    got = small(fn.params, 5)
    for name in ("recon", "kl", "log_likelihood"):
        np.testing.assert_allclose(got[name], reference[name], rtol=1e-5, atol=1e-5)


def test_progress_reports_each_call_and_leaves_the_numbers_as_one_call_gives_them(bernoulli_vae, monkeypatch):
    """A split runs in several calls of one program (so a long K can say how far it is): the
    reports climb to N, and every per-example number equals that of the split in one call."""
    fn, x = bernoulli_vae
    x = x[:100]  # 13 batches of 8: calls of 3 batches, the last one padded
    monkeypatch.setattr(estimator, "PROGRESS_STEPS", 5)
    estimate, _ = estimator.compile_estimator(fn, fn.params, x, 1, 7, 8)
    seen = []
    sliced = estimate(fn.params, 4, seen.append)
    assert seen == [24, 48, 72, 96, 100]
    monkeypatch.setattr(estimator, "PROGRESS_STEPS", 1)
    whole, _ = estimator.compile_estimator(fn, fn.params, x, 1, 7, 8)
    for name, values in whole(fn.params, 4).items():
        np.testing.assert_array_equal(sliced[name], values, err_msg=name)


def test_a_deadline_stops_between_calls_and_otherwise_changes_no_number(bernoulli_vae, monkeypatch):
    """With a deadline the calls are checked as they finish: when the pace of those done says
    the rest would end past it, the split stops there with OutOfTime (before any call when it
    had passed already); a deadline far away gives every number the queued-at-once calls give.
    The clock is a fake one that advances 10 s per reading, so the outcome is the same on any machine."""
    import itertools

    from vaecli import clock
    from vaecli.errors import OutOfTime

    fn, x = bernoulli_vae
    x = x[:100]
    monkeypatch.setattr(estimator, "PROGRESS_STEPS", 5)
    estimate, _ = estimator.compile_estimator(fn, fn.params, x, 1, 7, 8)
    free = estimate(fn.params, 4)
    monkeypatch.setattr(clock, "clock", itertools.count(0, 10).__next__)
    seen = []
    bounded = estimate(fn.params, 4, seen.append, 1e9)
    assert seen == [24, 48, 72, 96, 100]
    for name, values in free.items():
        np.testing.assert_array_equal(bounded[name], values, err_msg=name)
    seen.clear()
    monkeypatch.setattr(clock, "clock", itertools.count(0, 10).__next__)
    # start 0; after the first call 10 s spent, read at 20 s, four more calls ≈ 40 s: 60 > 55
    with pytest.raises(OutOfTime, match="after 1 of 5 parts"):
        estimate(fn.params, 4, seen.append, 55)
    assert seen == [24]
    monkeypatch.setattr(clock, "clock", itertools.count(0, 10).__next__)
    with pytest.raises(OutOfTime, match="after 2 of 5 parts"):  # 20 + 40 ≤ 65, then 40 + 45 > 65
        estimate(fn.params, 4, seen.append, 65)
    assert seen == [24, 24, 48]
    with pytest.raises(OutOfTime, match="had passed before it started"):
        estimate(fn.params, 4, seen.append, -1)
    assert seen == [24, 24, 48]
