"""vaecli.models.flows against brute force: log-determinants against slogdet of the autodiff
Jacobian, the IAF's autoregressive structure, the planar invertibility condition, and an
importance-sampled log p(x) with a flow proposal against a dense-grid integral of a 2-D
latent model (as tests/models/test_vae.py checks the Gaussian proposal against a closed form).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy.special import expit, log_expit, logsumexp

from vaecli.models import bounds as vb
from vaecli.models import densities, flows
from vaecli.models import vae as models


def _perturbed(module, key, scale):
    """The module with every parameter moved by N(0, scale²): away from the identity start."""
    graphdef, state = nnx.split(module)
    leaves, treedef = jax.tree.flatten(state)
    keys = jax.random.split(key, len(leaves))
    return nnx.merge(graphdef, jax.tree.unflatten(treedef, [a + scale * jax.random.normal(k, a.shape)
                                                           for a, k in zip(leaves, keys)]))


CONTEXT = 3


def _make(kind: str, dim: int, steps: int, seed: int = 0, scale: float = 0.3):
    rngs = nnx.Rngs(seed)
    if kind == "planar":
        flow = flows.planar_flow(dim, steps, rngs=rngs) if steps > 1 else flows.Planar(dim, rngs=rngs)
        return _perturbed(flow, jax.random.key(seed + 1), 2.0)
    if kind == "iaf":
        flow = (flows.iaf_flow(dim, steps, (8, 8), CONTEXT, rngs=rngs) if steps > 1
                else flows.IAF(dim, (8, 8), CONTEXT, rngs=rngs))
        return _perturbed(flow, jax.random.key(seed + 1), scale)
    # both kinds in one chain
    steps_ = [flows.Planar(dim, rngs=rngs), flows.IAF(dim, (8,), CONTEXT, rngs=rngs),
              flows.Planar(dim, rngs=rngs), flows.IAF(dim, (8,), CONTEXT, rngs=rngs, reverse=True)]
    return _perturbed(flows.Flow(steps_), jax.random.key(seed + 1), scale)


def _slogdet_of_jacobian_float64(flow, z, h):
    """slogdet of the flow's autodiff Jacobian, all in float64: some of these Jacobians reach
    condition numbers near 1e5, where a float32 slogdet is itself off by ~3e-3 and moves with
    the CPU and the compiled program."""
    with jax.enable_x64(True):
        graphdef, state = nnx.split(flow)
        flow64 = nnx.merge(graphdef, jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), state))
        one = lambda zi, hi: flow64(zi, hi)[0]
        z64, h64 = (jnp.asarray(np.asarray(a), jnp.float64) for a in (z, h))
        # jitted: one program, not one per operation (the suite compiles thousands of those)
        jac = jax.jit(jax.vmap(jax.vmap(jax.jacfwd(one)), in_axes=(0, None)))(z64, h64)  # (S, B, D, D)
        assert jac.dtype == jnp.float64
        sign, ref = np.linalg.slogdet(np.asarray(jac))
    return sign, ref


@pytest.mark.parametrize("dim", [2, 3, 5])
@pytest.mark.parametrize("kind, steps", [("planar", 1), ("planar", 3), ("iaf", 1), ("iaf", 3), ("mixed", 4)])
def test_log_det_matches_slogdet_of_the_jacobian(kind, steps, dim):
    flow = _make(kind, dim, steps, seed=dim)
    z = 1.3 * jax.random.normal(jax.random.key(10), (4, 3, dim))  # leading (S, B) axes
    h = jax.random.normal(jax.random.key(11), (3, CONTEXT))  # one context per example, shared by its samples

    out, log_det = jax.jit(lambda z, h: flow(z, h))(z, h)
    sign, ref = _slogdet_of_jacobian_float64(flow, z, h)
    assert out.shape == z.shape and log_det.shape == (4, 3)
    assert np.all(np.asarray(sign) > 0)  # orientation-preserving, and invertible
    assert float(jnp.std(log_det)) > 0.05  # a Jacobian that varies with z: not a trivial check
    np.testing.assert_allclose(log_det, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("reverse", [False, True])
def test_iaf_jacobian_is_triangular_in_its_order(reverse):
    dim = 5
    step = _perturbed(flows.IAF(dim, (16, 16), CONTEXT, rngs=nnx.Rngs(1), reverse=reverse), jax.random.key(2), 0.3)
    h = jax.random.normal(jax.random.key(3), (CONTEXT,))
    jac = np.asarray(jax.jit(jax.jacfwd(lambda z: step(z, h)[0]))(jax.random.normal(jax.random.key(4), (dim,))))
    above = np.triu(np.ones((dim, dim), bool), 1)  # ∂out_i/∂z_j, j > i
    hidden_side = above.T if reverse else above
    assert np.all(jac[hidden_side] == 0.0)  # exactly: the masks cut those paths
    assert np.all(np.abs(jac[~hidden_side & ~np.eye(dim, dtype=bool)]) > 0)  # and the others are used
    # the masks' connectivity: output d reachable from input j only for j earlier in the order
    masks = flows.made_masks(dim, (16, 16), reverse)
    reach = masks[0] @ masks[1] @ masks[2][:, :dim]
    np.testing.assert_array_equal(reach.T > 0, ~hidden_side & ~np.eye(dim, dtype=bool))


def test_flows_start_at_or_near_the_identity():
    z = jax.random.normal(jax.random.key(0), (6, 4, 3))
    h = jnp.ones((4, CONTEXT))
    out, log_det = flows.iaf_flow(3, 4, (8,), CONTEXT, rngs=nnx.Rngs(0))(z, h)
    np.testing.assert_array_equal(out, z)
    np.testing.assert_array_equal(log_det, 0.0)
    out, log_det = flows.planar_flow(3, 4, rngs=nnx.Rngs(0))(z)
    assert float(jnp.max(jnp.abs(out - z))) < 0.1 and float(jnp.max(jnp.abs(log_det))) < 0.05


def test_planar_stays_invertible_when_u_points_against_w():
    """wᵀu = −5 would fold the map (1 + tanh'·wᵀu < 0 near the hyperplane); the constrained û
    keeps wᵀû > −1, so along w the map is strictly increasing and its log-det finite."""
    step = flows.Planar(2, rngs=nnx.Rngs(0))
    w = jnp.array([1.0, 0.5])
    step.w.value, step.b.value = w, jnp.array(0.3)
    step.u.value = -5.0 * w / jnp.sum(w**2)
    assert float(jnp.sum(w * step.u_hat())) > -1.0
    s = jnp.linspace(-6, 6, 2001)[:, None] * w / jnp.linalg.norm(w)
    out, log_det = step(s)
    assert np.all(np.isfinite(np.asarray(log_det)))
    assert np.all(np.diff(np.asarray(out @ w)) > 0)
    folded = s + jnp.tanh(s @ w + 0.3)[:, None] * step.u[...]  # the same step with u unconstrained
    assert np.any(np.diff(np.asarray(folded @ w)) < 0)


# ---------------------------------------------------------------- importance sampling with a flow proposal

LOADINGS = np.array([[1.5, -0.5], [0.3, 2.0], [-1.2, 1.0], [2.0, 1.5], [0.5, -1.8], [-0.8, -0.6]])
OFFSETS = np.array([0.2, -0.4, 0.1, 0.0, 0.3, -0.2])
X_OBS = np.array([1.0, 1.0, 0.0, 1.0, 0.0, 1.0])


def _log_joint_np(z):
    """log p(x, z) of the toy: z ~ N(0, I_2), x_j ~ Bernoulli(sigmoid(a_jᵀz + c_j)); float64."""
    logits = z @ LOADINGS.T + OFFSETS
    log_lik = np.sum(X_OBS * log_expit(logits) + (1 - X_OBS) * log_expit(-logits), axis=-1)
    return log_lik - 0.5 * np.sum(z**2, -1) - math.log(2 * math.pi)


def _log_joint(z):
    logits = z @ jnp.asarray(LOADINGS.T, jnp.float32) + jnp.asarray(OFFSETS, jnp.float32)
    x = jnp.asarray(X_OBS, jnp.float32)
    log_lik = jnp.sum(x * jax.nn.log_sigmoid(logits) + (1 - x) * jax.nn.log_sigmoid(-logits), axis=-1)
    return log_lik - 0.5 * jnp.sum(z**2, -1) - math.log(2 * math.pi)


def test_toy_model_is_what_the_numpy_reference_says():
    z = np.random.default_rng(0).normal(size=(7, 2))
    np.testing.assert_allclose(_log_joint(jnp.asarray(z, jnp.float32)), _log_joint_np(z), rtol=1e-5)
    p = expit(z @ LOADINGS.T + OFFSETS)
    joint = np.prod(np.where(X_OBS == 1, p, 1 - p), -1) * np.exp(-0.5 * np.sum(z**2, -1)) / (2 * np.pi)
    np.testing.assert_allclose(np.exp(_log_joint_np(z)), joint)


def test_importance_sampled_log_px_with_a_flow_proposal_matches_a_grid_integral():
    grid = np.linspace(-9, 9, 1201)
    zz = np.stack(np.meshgrid(grid, grid, indexing="ij"), -1)
    step = grid[1] - grid[0]
    exact = logsumexp(_log_joint_np(zz)) + 2 * math.log(step)  # a Riemann sum: the integrand is smooth
    # a proposal that is neither the posterior nor Gaussian: a wide base through four random steps
    flow = _make("mixed", 2, 4, seed=3)
    mean, logvar = jnp.array([0.3, 0.1]), jnp.array([0.5, 0.3])
    h = jnp.full((1, CONTEXT), 0.5)
    k = 40_000

    @jax.jit
    def log_weights(key):
        eps = jax.random.normal(key, (k, 1, 2))
        z, log_q = flows.sample(flow, mean, logvar, eps, h)
        z0 = mean + jnp.exp(0.5 * logvar) * eps
        return (_log_joint(z) - log_q)[:, 0], (_log_joint(z) - densities.gaussian_log_prob(z0, mean, logvar))[:, 0]

    log_w, log_w_no_det = (np.asarray(a, np.float64) for a in log_weights(jax.random.key(0)))
    w = np.exp(log_w - log_w.max())
    se = w.std(ddof=1) / (math.sqrt(k) * w.mean())  # delta method: the standard error of log mean w
    estimate = float(vb.iwae(jnp.asarray(log_w[:, None]))[0])
    assert se < 0.02
    assert abs(estimate - exact) < 4 * se + 1e-3, (estimate, exact, se)
    # the log-determinant matters: leaving it out misses by many standard errors
    assert abs(logsumexp(log_w_no_det) - math.log(k) - exact) > 6 * se


def test_a_flow_splits_into_a_parameter_dict_a_trainer_can_differentiate():
    """As vaecli.models.Functional splits a model: a dict of arrays in, the flow rebuilt inside jit."""
    fn = models.Functional(flows.iaf_flow(3, 2, (8,), CONTEXT, rngs=nnx.Rngs(0)))
    assert all(isinstance(v, nnx.Param) for _, v in nnx.to_flat_state(nnx.split(fn.bind(fn.params))[1]))

    @jax.jit
    def grads(params, eps, h):
        def loss(params):
            z, log_q = flows.sample(fn.bind(params), jnp.zeros(3), jnp.zeros(3), eps, h)
            return -jnp.mean(vb.iwae(-0.5 * jnp.sum((z - 1.0) ** 2, -1) - log_q))

        return jax.grad(loss)(params)

    leaves = jax.tree.leaves(grads(fn.params, jax.random.normal(jax.random.key(0), (5, 2, 3)), jnp.ones((2, CONTEXT))))
    assert all(np.all(np.isfinite(np.asarray(g))) for g in leaves)
    assert max(float(jnp.max(jnp.abs(g))) for g in leaves) > 0
