"""The model zoo's pieces on real computations: likelihoods against scipy, the VampPrior and
the two-stochastic-layer model's importance-sampled log p(x) against brute-force numerical
integration, the conv nets' shapes, and the data-dependent init."""
from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from vaecli import registry as choices
from vaecli.compiled import estimator
from vaecli.config import FlowConfig, ModelConfig
from vaecli.errors import ConfigError
from vaecli.models import densities, likelihoods
from vaecli.models import vae as models

# ---------------------------------------------------------------- likelihoods


def test_discretized_logistic_is_a_distribution_over_the_256_levels():
    levels = jnp.arange(256, dtype=jnp.float32) / 255
    for loc, log_scale in [(0.3, -3.0), (0.0, -1.0), (0.97, -5.0), (1.4, 0.5), (0.5, -7.0)]:
        logp = likelihoods.logistic_bin_log_prob(levels, jnp.float32(loc), jnp.float32(log_scale))
        assert np.all(np.isfinite(np.asarray(logp)))
        assert float(jnp.sum(jnp.exp(logp))) == pytest.approx(1.0, abs=2e-5)
        # interior bins: the logistic CDF at the bin edges, by scipy in float64
        s = math.exp(log_scale)
        with np.errstate(divide="ignore"):
            edges = stats.logistic.cdf((np.arange(0, 255) + 0.5) / 255, loc, s)  # between bins k and k+1
            expected = np.log(np.maximum(0, np.diff(edges)))  # bins 1..254
        ok = expected > -30  # far tails underflow in scipy's float64 difference
        np.testing.assert_allclose(np.asarray(logp)[1:255][ok], expected[ok], rtol=2e-4, atol=2e-4)


def test_gaussian_likelihood_fixed_and_learned_match_scipy():
    rng = np.random.default_rng(0)
    x, loc = rng.random((3, 6)).astype(np.float32), rng.normal(0.5, 0.3, (3, 6)).astype(np.float32)
    fixed = likelihoods.Gaussian(6, learned=False, std=0.2)
    np.testing.assert_allclose(np.asarray(fixed.log_prob(loc, x)), stats.norm(loc, 0.2).logpdf(x).sum(-1), rtol=1e-5)
    learned = likelihoods.Gaussian(6, learned=True, std=0.2)
    log_std = rng.normal(-1, 0.5, 6).astype(np.float32)
    learned.log_std.value = jnp.asarray(log_std)
    np.testing.assert_allclose(np.asarray(learned.log_prob(loc, x)),
                               stats.norm(loc, np.exp(log_std)).logpdf(x).sum(-1), rtol=1e-5)
    assert not choices.LIKELIHOODS["gaussian"].discrete and choices.LIKELIHOODS["logistic"].discrete


# ---------------------------------------------------------------- priors and the IS estimator vs brute force

ALL_4PX = np.array(list(itertools.product([0, 1], repeat=4)), np.uint8)  # every 2x2 binary image


def _is_tolerance(fn, x, k, key):
    """4 standard errors of log p̂ = log mean(w), per example, from the relative spread of w."""
    def log_weights(params, x):
        vae = fn.bind(params)
        eps = jax.random.normal(key, (k, len(x), vae.noise_dim))
        log_px, log_pz, log_qz = vae.log_terms(x, vae.encode(x), eps)
        return log_px + log_pz - log_qz

    # jitted: one program (the suite compiles each test's programs, and eagerly this is dozens)
    log_w = np.asarray(jax.jit(log_weights)(fn.params, jnp.asarray(x, jnp.float32)), np.float64)
    w = np.exp(log_w - log_w.max(0))
    return 4 * w.std(0) / (w.mean(0) * math.sqrt(k))


def _check_is_against(fn, exact, k=100_000):
    est = estimator.per_example(fn, fn.params, ALL_4PX, scale=1, k=k, seed=0, batch_size=16)["log_likelihood"]
    # Float32 sums of a few hundred terms add ~1e-4; the IS error is bounded by its standard error.
    tol = _is_tolerance(fn, ALL_4PX, k, jax.random.key(1)) + 1e-3
    assert np.all(tol < 0.1)  # the check is sharp: K=100000 pins log p(x) to a few hundredths
    np.testing.assert_array_less(np.abs(est - exact), tol)
    assert abs(np.exp(exact).sum() - 1) < 1e-3  # the brute force itself: p(x) sums to 1 over all 16 images


def _randomize(fn, seed, scale=1.0, proposals=("encoder",)):
    """Random parameters (the init's are too tame to make the test sharp), except that the
    Gaussians in `proposals` get a broad log-variance (σ ≈ 2.1, weakly input-dependent): a
    proposal broader than the posterior keeps the importance weights bounded, so K=100000
    pins log p(x) to a few hundredths and the comparison is sharp."""
    leaves, tree = jax.tree.flatten(fn.params)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    fn.params = jax.tree.unflatten(tree, [scale * jax.random.normal(k, l.shape) for k, l in zip(keys, leaves)])
    for name in proposals:
        head = fn.params[name]["logvar"]
        head["kernel"], head["bias"] = 0.1 * head["kernel"], jnp.full_like(head["bias"], 1.5)
    return fn


def test_vampprior_log_density_is_the_mixture_and_integrates_to_one():
    fn = _randomize(models.functional(ModelConfig(latent_dim=1, hidden=(8,), prior="vamp", pseudo_inputs=3),
                                      (2, 2, 1), seed=0), seed=1)
    vae = fn.bind(fn.params)
    z = jnp.linspace(-15, 15, 30001)[:, None]
    logp = np.asarray(vae.log_prior(z), np.float64)
    assert np.exp(logp).sum() * (30 / 30000) == pytest.approx(1.0, abs=1e-4)
    mean, logvar = vae.prior.components(vae.encoder)
    mix = np.mean([stats.norm(float(m), math.exp(0.5 * float(v))).pdf(np.asarray(z[:, 0]))
                   for m, v in zip(mean[:, 0], logvar[:, 0])], axis=0)
    np.testing.assert_allclose(np.exp(logp), mix, rtol=1e-4, atol=1e-9)


def test_vampprior_importance_sampled_log_px_matches_numerical_integration():
    fn = _randomize(models.functional(ModelConfig(latent_dim=1, hidden=(8,), prior="vamp", pseudo_inputs=3),
                                      (2, 2, 1), seed=0), seed=2, scale=0.7)
    z = jnp.linspace(-15, 15, 30001)[:, None, None]  # (grid, 1, 1) against the 16 images
    x = jnp.asarray(ALL_4PX, jnp.float32)
    @jax.jit  # one program
    def joint(params):
        vae = fn.bind(params)
        return vae.log_likelihood(x, z) + vae.log_prior(z)

    log_joint = np.asarray(joint(fn.params), np.float64)  # (grid, 16)
    exact = np.log(np.exp(log_joint).sum(0) * (30 / 30000))
    _check_is_against(fn, exact)


def test_two_layer_importance_sampled_log_px_matches_numerical_integration():
    cfg = ModelConfig(latent_dim=1, hidden=(8,), latent_dim2=1, hidden2=(8,))
    fn = _randomize(models.functional(cfg, (2, 2, 1), seed=0), seed=3, scale=0.7, proposals=("encoder", "q2"))
    vae = fn.bind(fn.params)
    assert vae.noise_dim == 2 and vae.kl_per_dim(vae.encode(jnp.zeros((1, 4)))) is None
    # p(x) = ∫∫ p(x|z1) p(z1|z2) p(z2) dz1 dz2 on a 1201 x 1201 grid over [-12, 12]².
    g = jnp.linspace(-12, 12, 1201)
    h = 24 / 1200

    @jax.jit  # one program
    def brute_force(params):
        vae = fn.bind(params)
        m1, lv1 = vae.p1(g[:, None])  # (G, 1): p(z1 | z2) for z2 on the grid
        log_p_z1_given_z2 = -0.5 * (math.log(2 * math.pi) + lv1.T + (g[:, None] - m1.T) ** 2 * jnp.exp(-lv1.T))
        log_p_z1 = jax.nn.logsumexp(log_p_z1_given_z2 - 0.5 * (math.log(2 * math.pi) + g[None, :] ** 2), axis=1) + math.log(h)
        log_px_z1 = vae.log_likelihood(jnp.asarray(ALL_4PX, jnp.float32), g[:, None, None])  # (G, 16)
        return log_p_z1, jax.nn.logsumexp(log_px_z1 + log_p_z1[:, None], axis=0) + math.log(h)

    log_p_z1, exact = brute_force(fn.params)
    assert float(jnp.exp(log_p_z1).sum() * h) == pytest.approx(1.0, abs=1e-4)  # the marginal p(z1) integrates to 1
    _check_is_against(fn, np.asarray(exact, np.float64))


# ---------------------------------------------------------------- flow posteriors

FLOWS = {"planar": FlowConfig(kind="planar", steps=3), "iaf": FlowConfig(kind="iaf", steps=2, hidden=(8,))}


def _flow_model(kind: str, latent_dim: int, seed: int):
    """A flow-posterior model with every parameter random, the flow's too (off its identity
    start), and a broad base Gaussian (as `_randomize`); small enough weights that the
    importance weights stay tame with two latent dimensions."""
    cfg = ModelConfig(latent_dim=latent_dim, hidden=(8,), flow=FLOWS[kind])
    return cfg, _randomize(models.functional(cfg, (2, 2, 1), seed=0), seed=seed, scale=0.35)


@pytest.mark.parametrize("kind", sorted(FLOWS))
def test_flow_posterior_density_is_the_base_density_minus_the_log_det_of_the_jacobian(kind):
    """The model's log q(z|x) against slogdet of the flow's autodiff Jacobian at each draw;
    z is the flow of the base draw; no closed-form KL; the point estimate is the flowed mean."""
    cfg, fn = _flow_model(kind, latent_dim=3, seed=4)
    assert not choices.closed_form_kl(cfg)
    x = jnp.asarray(ALL_4PX[:5], jnp.float32)
    eps = jax.random.normal(jax.random.key(5), (4, 5, 3))

    @jax.jit
    def run(params):
        vae = fn.bind(params)
        q = vae.encode(x)
        log_px, _, log_q = vae.log_terms(x, q, eps)
        h = jnp.concatenate(q, -1)
        z0 = q[0] + jnp.exp(0.5 * q[1]) * eps
        step = lambda z, hb: vae.flow(z, hb)[0]
        jac = jax.vmap(jax.vmap(jax.jacfwd(step)), in_axes=(0, None))(z0, h)  # (S, B, D, D)
        base = densities.gaussian_log_prob(z0, *q)
        return (log_px, vae.log_likelihood(x, step(z0, h)), log_q, base, jac, vae.point(q), step(q[0], h), q[0])

    log_px, log_px_flowed, log_q, base, jac, point, flowed_mean, mean = run(fn.params)
    # the determinant in float64: a float32 slogdet of an ill-conditioned Jacobian moves with the CPU
    expected = np.asarray(base, np.float64) - np.linalg.slogdet(np.asarray(jac, np.float64))[1]
    np.testing.assert_allclose(log_px, log_px_flowed, rtol=1e-6)
    np.testing.assert_allclose(log_q, expected, rtol=1e-5, atol=1e-4)
    assert float(jnp.std(log_q - base)) > 0.05  # a log-determinant that varies with z: not a trivial check
    assert fn.bind(fn.params).kl_per_dim(None) is None
    np.testing.assert_array_equal(point, flowed_mean)
    assert float(jnp.max(jnp.abs(point - mean))) > 1e-2


@pytest.mark.parametrize("kind", sorted(FLOWS))
def test_flow_posterior_importance_sampled_log_px_matches_numerical_integration(kind):
    """vaecli.compiled.estimator with a flow proposal against p(x) = ∫ p(x|z) p(z) dz on a
    1201 x 1201 grid over [-12, 12]² (the prior and likelihood are the model's own)."""
    _, fn = _flow_model(kind, latent_dim=2, seed=6)
    g = jnp.linspace(-12, 12, 1201)
    z = jnp.stack(jnp.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 1, 2)

    @jax.jit  # one program
    def brute_force(params):
        vae = fn.bind(params)
        log_joint = vae.log_likelihood(jnp.asarray(ALL_4PX, jnp.float32), z) + vae.log_prior(z)  # (G², 16)
        return jax.nn.logsumexp(log_joint, axis=0) + 2 * math.log(24 / 1200)

    _check_is_against(fn, np.asarray(brute_force(fn.params), np.float64))


# ---------------------------------------------------------------- nets and init


@pytest.mark.parametrize("shape", [(28, 28, 1), (32, 32, 3)])
def test_conv_nets_map_images_and_sample_batches(shape):
    fn = models.functional(ModelConfig(kind="conv", latent_dim=5, hidden=(16,), channels=(4, 8)), shape, seed=0)
    vae = fn.bind(fn.params)
    d = math.prod(shape)
    mean, logvar = vae.encode(jnp.zeros((3, d)))
    assert mean.shape == logvar.shape == (3, 5)
    assert vae.decoder(jnp.zeros((2, 3, 5))).shape == (2, 3, d)  # (samples, batch, latent) in, pixels out
    assert vae.generate(jax.random.key(0), 4).shape == (4, d)


def test_conv_refuses_image_sizes_its_strides_cannot_halve():
    with pytest.raises(ConfigError, match="divisible by 4"):
        models.functional(ModelConfig(kind="conv", channels=(4, 8)), (30, 30, 1), seed=0)


@pytest.mark.parametrize("kind, likelihood", [("mlp", "bernoulli"), ("conv", "bernoulli"), ("mlp", "gaussian"),
                                              ("conv", "logistic")])
def test_output_bias_starts_at_the_training_pixel_mean(kind, likelihood):
    rng = np.random.default_rng(0)
    train = (rng.random((50, 64)) < np.linspace(0.0, 0.9, 64)).astype(np.uint8)  # column 0 is always black
    cfg = ModelConfig(kind=kind, latent_dim=3, hidden=(8,), channels=(4,), likelihood=likelihood,
                      output_bias="data_mean")
    fn = models.functional(cfg, (8, 8, 1), seed=0, train=(train, 1))
    bias = np.asarray(fn.bind(fn.params).decoder.output_bias[...])
    p = train.mean(0)
    if likelihood == "bernoulli":
        np.testing.assert_allclose(1 / (1 + np.exp(-bias)), np.clip(p, 1e-4, 1 - 1e-4), rtol=1e-4)
    else:
        np.testing.assert_allclose(bias, p, rtol=1e-6)
    zero = models.functional(cfg.__class__(**{**cfg.__dict__, "output_bias": "zero"}), (8, 8, 1), seed=0,
                             train=(train, 1))
    assert not np.any(np.asarray(zero.bind(zero.params).decoder.output_bias[...]))


def test_vampprior_pseudo_inputs_start_at_training_images():
    train = (np.random.default_rng(1).random((40, 16)) < 0.5).astype(np.uint8)
    fn = models.functional(ModelConfig(latent_dim=2, hidden=(8,), prior="vamp", pseudo_inputs=5), (4, 4, 1),
                           seed=0, train=(train, 1))
    u = np.asarray(jax.nn.sigmoid(fn.params["prior"]["logits"]))
    assert u.shape == (5, 16)
    rows = {tuple(r) for r in train}
    assert all(tuple(np.round((r - 0.05) / 0.9).astype(np.uint8)) in rows for r in u)


@pytest.mark.parametrize("prior", list(choices.PRIORS))
@pytest.mark.parametrize("latent_dim2", [None, 2])
def test_the_model_has_a_closed_form_kl_exactly_where_choices_says(prior, latent_dim2):
    cfg = ModelConfig(latent_dim=3, hidden=(8,), prior=prior, pseudo_inputs=2, latent_dim2=latent_dim2,
                      hidden2=(4,))
    vae = models.build(cfg, (2, 2, 1), jax.random.key(0))
    kl = vae.kl_per_dim(vae.encode(jnp.zeros((5, 4))))
    assert (kl is not None) == choices.closed_form_kl(cfg)
    if kl is not None:
        assert kl.shape == (5, 3)
