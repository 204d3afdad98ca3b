"""vaecli.models.gradients (reparam, STL, DReG) against independent mathematics: a
linear-Gaussian toy whose ELBO and its gradient are known in closed form, and paired Monte
Carlo comparisons on the real tiny VAE of vaecli.models."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from helpers import flat, paired_t, standard_errors

from vaecli.config import ModelConfig
from vaecli.models import bounds as vb
from vaecli.models import gradients, priors
from vaecli.models import vae as models

SHAPE = (4, 4, 1)


@pytest.fixture(scope="module")
def tiny():
    """The real tiny VAE, one layer (normal prior, and VampPrior) and two layers, with a batch."""
    x = jnp.asarray((np.random.default_rng(0).random((4, 16)) < 0.5).astype(np.float32))
    cfgs = {"normal": ModelConfig(latent_dim=4, hidden=(16,)),
            "vamp": ModelConfig(latent_dim=4, hidden=(16,), prior="vamp", pseudo_inputs=3),
            "two_layer": ModelConfig(latent_dim=4, hidden=(16,), latent_dim2=2, hidden2=(8,))}
    return {k: models.functional(c, SHAPE, seed=0) for k, c in cfgs.items()}, x


def _objective_grad(fn, bound, estimator):
    """grad(params, x, eps) of the batch-mean surrogate: the whole parameter dict, as a trainer takes it."""
    return jax.grad(lambda p, x, eps: jnp.mean(gradients.objective(fn.bind(p), x, eps, bound, estimator)[0]))


def _grad(fn, x, eps, bound, estimator):
    return _objective_grad(fn, bound, estimator)(fn.params, x, eps)


@pytest.mark.parametrize("kind", ["normal", "vamp", "two_layer"])
def test_stl_and_dreg_keep_the_values_and_the_model_side_gradient(tiny, kind):
    """The log-weights they report are the model's (log_terms); STL's value is the bound; the
    model-side gradient (decoder, prior, p1: all but encoder and q2) of both is the bound's, draw by draw."""
    fns, x = tiny
    fn = fns[kind]
    bound = vb.make_bound("iwae")

    @jax.jit
    def run(params, eps):
        vae = fn.bind(params)
        log_px, log_pz, log_qz = vae.log_terms(x, vae.encode(x), eps)
        out = {"log_terms": log_px + log_pz - log_qz}
        for est in gradients.ESTIMATORS:
            out[est] = (*gradients.objective(vae, x, eps, bound, est), _grad(fn, x, eps, bound, est))
        return out

    out = run(fn.params, jax.random.normal(jax.random.key(1), (10, x.shape[0], fn.bind(fn.params).noise_dim)))
    ref_value, ref_log_w, ref_grad = out["reparam"]
    np.testing.assert_allclose(ref_log_w, out["log_terms"], rtol=1e-6)
    ref_enc, ref_model = gradients.split_params(ref_grad)
    for est in ("stl", "dreg"):
        value, log_w, grad = out[est]
        np.testing.assert_allclose(log_w, ref_log_w, rtol=1e-5, atol=1e-4)
        if est == "stl":
            np.testing.assert_allclose(value, ref_value, rtol=1e-5, atol=1e-4)
        enc, model_side = gradients.split_params(grad)
        assert set(enc) == {"encoder", "q2"} & set(fn.params) and "decoder" in model_side
        for a, b in zip(jax.tree.leaves(model_side), jax.tree.leaves(ref_model)):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
        assert float(jnp.max(jnp.abs(flat(enc) - flat(ref_enc)))) > 1e-3  # the encoder's does change


@pytest.mark.parametrize("kind", ["normal", "two_layer"])
def test_dreg_encoder_gradient_is_tucker_et_al_formula(tiny, kind):
    """Encoder side: Σ_k w̃_k² ∂log w_k/∂z_k ∂z_k/∂φ, built by hand from two vector-Jacobian products."""
    fns, x = tiny
    fn = fns[kind]
    eps = jax.random.normal(jax.random.key(2), (10, x.shape[0], fn.bind(fn.params).noise_dim))

    @jax.jit
    def by_hand(params):
        enc, model_side = gradients.split_params(params)
        path_of = lambda e: gradients.stl_parts(fn.bind({**e, **model_side}), x, eps)[1]
        log_weight_fn, path = gradients.stl_parts(fn.bind(params), x, eps)
        log_w, dlogw_dz = jax.vjp(log_weight_fn, path)
        normalised = jax.nn.softmax(log_w, axis=0)
        (cot_z,) = dlogw_dz(normalised**2 / x.shape[0])  # the objective is the batch mean
        return jax.vjp(path_of, enc)[1](cot_z)[0]

    expected = by_hand(fn.params)
    got = gradients.split_params(jax.jit(_objective_grad(fn, vb.make_bound("iwae"), "dreg"))(fn.params, x, eps))[0]
    np.testing.assert_allclose(flat(got), flat(expected), rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------- a Gaussian toy with known gradients

TOY_D, TOY_P, TOY_SIGMA = 2, 4, 0.8


class ToyEncoder(nnx.Module):
    """q(z|x) = N(E x + shift, diag(exp(logvar)))."""

    def __init__(self, e, shift, logvar):
        self.e, self.shift, self.logvar = (nnx.Param(jnp.asarray(a, jnp.float32)) for a in (e, shift, logvar))

    def __call__(self, x):
        mean = x @ self.e[...].T + self.shift[...]
        return mean, jnp.broadcast_to(self.logvar[...], mean.shape)


class GaussianToy(models.VAE):
    """p(z) = N(0, I), p(x|z) = N(A z, σ² I): a vaecli.models.VAE with its own likelihood."""

    def __init__(self, a, encoder):
        self.latent_dim, self.encoder = TOY_D, encoder
        self.prior = priors.StandardNormal(TOY_D)
        self.a = nnx.Param(jnp.asarray(a, jnp.float32))

    def log_likelihood(self, x, z):
        r = x - z @ self.a[...].T
        return jnp.sum(-0.5 * (r / TOY_SIGMA) ** 2 - 0.5 * math.log(2 * math.pi * TOY_SIGMA**2), axis=-1)


def _toy_elbo(params, x):
    """The ELBO in closed form: E_q log p(x|z) + E_q log p(z) + H(q), batch mean."""
    a, enc = params["a"], params["encoder"]
    mean = x @ enc["e"].T + enc["shift"]
    var = jnp.exp(enc["logvar"])
    fit = jnp.sum((x - mean @ a.T) ** 2, -1) + jnp.sum(var * jnp.sum(a**2, 0))
    e_lik = -0.5 * TOY_P * math.log(2 * math.pi * TOY_SIGMA**2) - fit / (2 * TOY_SIGMA**2)
    e_prior = -0.5 * TOY_D * math.log(2 * math.pi) - 0.5 * (jnp.sum(mean**2, -1) + jnp.sum(var))
    entropy = 0.5 * TOY_D * (1 + math.log(2 * math.pi)) + 0.5 * jnp.sum(enc["logvar"])
    return jnp.mean(e_lik + e_prior + entropy)


@pytest.fixture(scope="module")
def toy():
    """A with orthogonal columns, so the exact posterior is diagonal and q can equal it."""
    rng = np.random.default_rng(4)
    q, _ = np.linalg.qr(rng.normal(size=(TOY_P, TOY_D)))
    a = q * np.array([1.5, 0.7])
    post_cov = np.linalg.inv(np.eye(TOY_D) + a.T @ a / TOY_SIGMA**2)  # diagonal
    exact = (post_cov @ a.T / TOY_SIGMA**2, np.zeros(TOY_D), np.log(np.diag(post_cov)))
    x = jnp.asarray(rng.normal(size=(5, TOY_P)) * 1.5, jnp.float32)
    return a, exact, x


def _toy_grads(fn, x, bound, estimator, k, draws, seed=0):
    """(encoder side, model side) gradients, each (draws, parameters)."""
    grad = _objective_grad(fn, bound, estimator)

    def one(key):
        eps = jax.random.normal(key, (k, x.shape[0], TOY_D))
        return tuple(flat(side) for side in gradients.split_params(grad(fn.params, x, eps)))

    out = jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(seed), draws))
    return tuple(np.asarray(a, np.float64) for a in out)


def test_elbo_gradient_estimates_agree_with_the_closed_form(toy):
    a, (e, shift, logvar), x = toy
    fn = models.Functional(GaussianToy(a, ToyEncoder(e + 0.3, shift + 0.5, logvar + 0.7)))  # q off the posterior
    exact = [np.asarray(flat(side), np.float64)
             for side in gradients.split_params(jax.jit(jax.grad(_toy_elbo))(fn.params, x))]
    for est in gradients.ESTIMATORS:  # with K = 1 DReG is STL
        for g, want in zip(_toy_grads(fn, x, vb.make_bound("elbo"), est, k=1, draws=3000), exact):
            err = (g.mean(0) - want) / standard_errors(g)
            assert np.max(np.abs(err)) < 4.5, (est, err)
            assert standard_errors(g).max() < 0.02 * np.abs(want).max()  # precise enough to mean something


def test_stl_and_dreg_stick_the_landing_at_the_exact_posterior(toy):
    """q = p(z|x): log w = log p(x) for every z, so their encoder gradients vanish draw by
    draw; the plain reparameterized estimate still has its score-term noise."""
    a, exact, x = toy
    fn = models.Functional(GaussianToy(a, ToyEncoder(*exact)))
    for bound, est in [("elbo", "stl"), ("iwae", "dreg"), ("iwae", "stl")]:
        enc, _ = _toy_grads(fn, x, vb.make_bound(bound), est, k=5, draws=64)
        assert np.max(np.abs(enc)) < 1e-4, (bound, est, np.max(np.abs(enc)))
    enc, _ = _toy_grads(fn, x, vb.make_bound("iwae"), "reparam", k=5, draws=64)
    assert np.min(enc.std(0)) > 1e-2


# ---------------------------------------------------------------- expectations and SNR on the tiny VAE


def _encoder_grads(fn, x, bound, estimators, k, draws, seed):
    """(draws, estimators, encoder parameters): each draw's eps shared by all estimators (paired)."""
    grads = [_objective_grad(fn, bound, e) for e in estimators]

    def one(key):
        eps = jax.random.normal(key, (k, x.shape[0], fn.bind(fn.params).noise_dim))
        return jnp.stack([flat(gradients.split_params(g(fn.params, x, eps))[0]) for g in grads])

    return np.asarray(jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(seed), draws)), np.float64)


@pytest.mark.parametrize("bound", [vb.make_bound("iwae"), vb.make_bound("miwae", groups=2),
                                   vb.make_bound("ciwae", beta=0.5), vb.make_bound("renyi", alpha=0.5)],
                         ids=lambda b: b.name)
def test_dreg_has_the_expected_encoder_gradient_of_the_bound(tiny, bound):
    """Paired over 1500 draws of K = 10: the DReG − reparam differences have mean zero within
    their standard errors, parameter by parameter (≈ 300 live ones), while the gradient itself
    is clearly non-zero (the comparison has power). STL keeps its known bias for K > 1
    (Tucker et al. 2019: the score term's expectation is not zero once w̃ depends on z)."""
    fns, x = tiny
    g = _encoder_grads(fns["normal"], x, bound, ("reparam", "dreg", "stl"), k=10, draws=1500, seed=5)
    reference = g[:, 0]
    assert np.mean(np.abs(reference.mean(0)) > 4 * standard_errors(reference)) > 0.3
    t = paired_t(g[:, 1] - reference)
    assert np.max(np.abs(t)) < 4.5 and np.mean(t**2) < 1 + 4 * math.sqrt(2 / t.size), (np.max(np.abs(t)), np.mean(t**2))
    assert np.max(np.abs(paired_t(g[:, 2] - reference))) > 10


def test_stl_has_the_expected_encoder_gradient_of_the_elbo(tiny):
    fns, x = tiny
    g = _encoder_grads(fns["normal"], x, vb.make_bound("elbo"), ("reparam", "stl"), k=3, draws=1500, seed=6)
    t = paired_t(g[:, 1] - g[:, 0])
    assert np.max(np.abs(t)) < 4.5 and np.mean(t**2) < 1 + 4 * math.sqrt(2 / t.size)


def test_dreg_encoder_snr_beats_reparameterization_at_k50(tiny, capsys):
    """SNR = |mean| / std of each encoder gradient over 400 draws, averaged over parameters.
    Rainforth et al. (2018): the reparameterized IWAE encoder SNR falls as K grows; DReG's does not."""
    fns, x = tiny
    snr = {}
    for k in (1, 10, 50):
        g = _encoder_grads(fns["normal"], x, vb.make_bound("iwae"), ("reparam", "dreg"), k=k, draws=400, seed=7)
        live = g.std(0).min(0) > 0
        snr[k] = (np.abs(g.mean(0)) / np.where(live, g.std(0), 1))[:, live].mean(1)
    with capsys.disabled():
        print("\nencoder-gradient SNR, tiny VAE, IWAE:  K  reparam  dreg")
        for k, (r, d) in snr.items():
            print(f"                                     {k:>2}  {r:7.3f}  {d:5.3f}")
    assert snr[50][1] > snr[50][0]


def test_unknown_estimators_are_refused():
    with pytest.raises(ValueError, match="choose one of"):
        gradients.objective(None, None, None, vb.make_bound("iwae"), "rws")
