"""vaecli.models.bounds against independent mathematics: numpy/scipy formulas for the bounds,
and autodiff of the bounds for their gradient weights."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp

from vaecli.models import bounds as vb


@pytest.fixture(scope="module")
def log_w():
    rng = np.random.default_rng(0)
    return rng.normal(-80, 4, (12, 6)).astype(np.float32)  # S = 12 draws, B = 6 examples


# ---------------------------------------------------------------- bounds as functions of log w


def test_elbo_iwae_miwae_match_numpy(log_w):
    lw = log_w.astype(np.float64)
    np.testing.assert_allclose(vb.elbo(log_w), lw.mean(0), rtol=1e-6)
    np.testing.assert_allclose(vb.iwae(log_w), logsumexp(lw, axis=0) - math.log(12), rtol=1e-6)
    groups = [logsumexp(lw[4 * g: 4 * g + 4], axis=0) - math.log(4) for g in range(3)]
    np.testing.assert_allclose(vb.miwae(log_w, 3, 4), np.mean(groups, axis=0), rtol=1e-6)
    # the special cases: one group is the K-sample IWAE, one sample per group the M-sample ELBO
    np.testing.assert_allclose(vb.miwae(log_w, 1, 12), vb.iwae(log_w), rtol=1e-7)
    np.testing.assert_allclose(vb.miwae(log_w, 12, 1), vb.elbo(log_w), rtol=1e-7)
    assert np.all(np.asarray(vb.elbo(log_w)) <= np.asarray(vb.miwae(log_w, 3, 4)))
    assert np.all(np.asarray(vb.miwae(log_w, 3, 4)) <= np.asarray(vb.iwae(log_w)))
    with pytest.raises(ValueError, match="groups"):
        vb.miwae(log_w, 5, 2)


@pytest.mark.parametrize("alpha, mean, sd", [(0.99, -1000.0, 300.0), (0.5, -1000.0, 300.0), (0.99, -100.0, 1.0),
                                           (0.999, -100.0, 0.01), (-1.5, -100.0, 5.0)])
def test_renyi_is_float32_exact_for_spread_and_near_equal_weights(alpha, mean, sd):
    """Against float64 on the same float32 inputs, within 2 float32 ulps of the largest input: widely
    spread log-weights with α near 1 (where 1/(1 − α) magnifies any cancellation) as well as
    near-equal ones (where a plain log-sum-exp loses 1 − α to rounding)."""
    lw = np.random.default_rng(1).normal(mean, sd, (1000, 4)).astype(np.float32)
    gamma = 1.0 - alpha
    ref = (logsumexp(gamma * lw.astype(np.float64), axis=0) - math.log(1000)) / gamma
    got = np.asarray(vb.renyi(jnp.asarray(lw), alpha), np.float64)
    np.testing.assert_allclose(got, ref, rtol=0, atol=2 * float(np.spacing(np.abs(lw).max())))
    grad = jax.grad(lambda x: vb.renyi(x, alpha).sum())(jnp.asarray(lw))
    assert np.all(np.isfinite(np.asarray(grad))) and float(grad.sum()) == pytest.approx(4.0, rel=1e-4)


def test_ciwae_interpolates_elbo_and_iwae(log_w):
    np.testing.assert_allclose(vb.ciwae(log_w, 1.0), vb.elbo(log_w), rtol=1e-7)
    np.testing.assert_allclose(vb.ciwae(log_w, 0.0), vb.iwae(log_w), rtol=1e-7)
    np.testing.assert_allclose(vb.ciwae(log_w, 0.3), 0.3 * vb.elbo(log_w) + 0.7 * vb.iwae(log_w), rtol=1e-6)


def test_renyi_limits_reference_and_monotonicity(log_w):
    lw = log_w.astype(np.float64)
    np.testing.assert_array_equal(vb.renyi(log_w, 1.0), vb.elbo(log_w))  # the α → 1 limit, exactly
    np.testing.assert_allclose(vb.renyi(log_w, 0.0), vb.iwae(log_w), rtol=1e-7)
    for alpha in (1 - 1e-4, 1 + 1e-4):
        # VR_α = ELBO + (1 − α)/2 · Var_S(log w) + O((1 − α)²): 1e-4 · 16/2 ≈ 1e-3 nats here
        expected = lw.mean(0) + (1 - alpha) / 2 * lw.var(0)
        np.testing.assert_allclose(vb.renyi(log_w, alpha), expected, atol=2e-4)
    alphas = [-2.0, -0.5, 0.0, 0.25, 0.5, 0.9, 1.0, 1.5, 3.0]
    values = np.array([vb.renyi(log_w, a) for a in alphas])
    for a, v in zip(alphas, values):
        if a != 1:
            ref = (logsumexp((1 - a) * lw, axis=0) - math.log(12)) / (1 - a)  # Li & Turner, eq. (6)
            np.testing.assert_allclose(v, ref, rtol=1e-6)
    assert np.all(np.diff(values, axis=0) < 0)  # non-increasing in α (strictly: the weights differ)


@pytest.mark.parametrize("bound", [vb.make_bound("elbo"), vb.make_bound("iwae"), vb.make_bound("miwae", groups=3),
                                   vb.make_bound("ciwae", beta=0.3), vb.make_bound("renyi", alpha=0.4),
                                   vb.make_bound("renyi", alpha=-1.5)], ids=lambda b: f"{b.name}{b.terms}")
def test_bound_weights_are_its_gradient_and_the_dreg_path_weights(log_w, bound):
    """c = ∂bound/∂log w and the DReG weight c_k − ∂c_k/∂log w_k, against autodiff of the value."""
    f = lambda v: bound(v[:, None])[0]  # one example's value from its S log-weights
    per_example = jnp.asarray(log_w.T)
    grad = jax.jit(jax.vmap(jax.grad(f)))(per_example).T
    hess_diag = jax.jit(jax.vmap(lambda v: jnp.diag(jax.hessian(f)(v))))(per_example).T
    c, path = bound.weights(jnp.asarray(log_w))
    np.testing.assert_allclose(c, grad, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(path, grad - hess_diag, rtol=1e-5, atol=1e-7)


def test_unknown_names_are_refused():
    with pytest.raises(ValueError, match="choose one of"):
        vb.make_bound("vimco")
