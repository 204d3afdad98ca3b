"""The registered losses (vaecli.models.objectives.training_loss, what the trainer calls)
against the mathematics of vaecli.models.bounds, .gradients and .tcvae: the IWAE family's and
the Rényi bound's special cases, PIWAE's two gradients, the estimators' expectations, and β-TCVAE's terms.
(The bounds, estimators and β-TCVAE terms themselves are checked in test_bounds.py,
test_gradients.py and test_tcvae.py; here, their wiring.)"""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from helpers import flat, gaussian_channel_terms, paired_t, standard_errors

from vaecli.config import ModelConfig
from vaecli.config import ObjectiveConfig as OC
from vaecli.models import gradients, objectives, tcvae
from vaecli.models import vae as models

N_DATA = 60_000


@pytest.fixture(scope="module")
def tiny():
    fn = models.functional(ModelConfig(latent_dim=3, hidden=(16,)), (4, 4, 1), seed=0)
    x = jnp.asarray((np.random.default_rng(0).random((8, 16)) < 0.4).astype(np.float32))
    return fn, x


def _value_and_grad(fn, x, key, oc, **values):
    """(loss, gradient) of the registered loss, as the trainer differentiates it."""
    f = lambda p: objectives.training_loss(fn.bind(p), x, key, oc, **values)[0]
    return jax.jit(jax.value_and_grad(f))(fn.params)


def _assert_same(a, b, rtol=1e-5, atol=1e-6):
    (va, ga), (vb, gb) = a, b
    assert float(va) == pytest.approx(float(vb), rel=rtol)
    np.testing.assert_allclose(flat(ga), flat(gb), rtol=1e-4, atol=atol)


@pytest.mark.parametrize("gradient", ["reparam", "dreg"])
def test_miwae_with_one_group_is_iwae_and_with_one_sample_the_elbo(tiny, gradient):
    fn, x = tiny
    key = jax.random.key(1)
    _assert_same(_value_and_grad(fn, x, key, OC(name="miwae", samples=6, groups=1, gradient=gradient)),
                 _value_and_grad(fn, x, key, OC(name="iwae", samples=6, gradient=gradient)))
    # M groups of one draw: the M-sample ELBO (Monte Carlo KL) on the same draws; DReG with K = 1 is STL
    elbo_gradient = "stl" if gradient == "dreg" else "reparam"
    _assert_same(_value_and_grad(fn, x, key, OC(name="miwae", samples=1, groups=6, gradient=gradient)),
                 _value_and_grad(fn, x, key, OC(kl="mc", samples=6, gradient=elbo_gradient)))
    # in between: ELBO(12) ≥ loss of MIWAE(3, 4) ≥ IWAE(12), on the same twelve draws
    losses = [float(_value_and_grad(fn, x, key, oc)[0]) for oc in
              (OC(kl="mc", samples=12), OC(name="miwae", samples=4, groups=3), OC(name="iwae", samples=12))]
    assert losses[0] > losses[1] > losses[2]


def test_ciwae_mixes_the_elbo_and_iwae_by_beta(tiny):
    fn, x = tiny
    key = jax.random.key(2)
    elbo, iwae = (_value_and_grad(fn, x, key, oc) for oc in (OC(kl="mc", samples=5), OC(name="iwae", samples=5)))
    _assert_same(_value_and_grad(fn, x, key, OC(name="ciwae", samples=5, beta=1.0)), elbo)
    _assert_same(_value_and_grad(fn, x, key, OC(name="ciwae", samples=5, beta=0.0)), iwae)
    # β as the trainer passes it, a traced per-replica value
    mixed = _value_and_grad(fn, x, key, OC(name="ciwae", samples=5), kl_weight=jnp.float32(0.3))
    assert float(mixed[0]) == pytest.approx(0.3 * float(elbo[0]) + 0.7 * float(iwae[0]), rel=1e-5)


def test_renyi_bound_is_the_elbo_at_alpha_1_and_iwae_at_alpha_0(tiny):
    fn, x = tiny
    key = jax.random.key(3)
    elbo, iwae = (_value_and_grad(fn, x, key, oc) for oc in (OC(kl="mc", samples=7), OC(name="iwae", samples=7)))
    for alpha in (1.0, jnp.float32(1.0)):  # a number in the config, or traced (objective.alpha is a replica key)
        _assert_same(_value_and_grad(fn, x, key, OC(name="vr", samples=7), replica={"alpha": alpha}), elbo)
    for alpha in (0.0, jnp.float32(0.0)):
        _assert_same(_value_and_grad(fn, x, key, OC(name="vr", samples=7), replica={"alpha": alpha}), iwae)
    # the limit α → 1 is continuous, from both sides; and the bound falls as α grows
    near = [float(_value_and_grad(fn, x, key, OC(name="vr", samples=7, alpha=a))[0]) for a in (1 - 1e-3, 1 + 1e-3)]
    assert near == pytest.approx([float(elbo[0])] * 2, abs=1e-2)
    values = [float(_value_and_grad(fn, x, key, OC(name="vr", samples=7, alpha=a))[0]) for a in (0.0, 0.5, 0.9)]
    assert values[0] < values[1] < values[2] < float(elbo[0])


@pytest.mark.parametrize("gradient", ["reparam", "dreg"])
def test_piwae_trains_the_decoder_on_iwae_and_the_encoder_on_miwae(tiny, gradient):
    """One gradient: the model side is IWAE(M·K)'s, the encoder side MIWAE(M, K)'s, same draws."""
    fn, x = tiny
    key = jax.random.key(4)
    oc = OC(name="piwae", samples=3, groups=4, gradient=gradient)
    value, grad = _value_and_grad(fn, x, key, oc)
    iw_value, iw_grad = _value_and_grad(fn, x, key, OC(name="iwae", samples=12))
    mi_value, mi_grad = _value_and_grad(fn, x, key, OC(name="miwae", samples=3, groups=4, gradient=gradient))
    assert float(value) == pytest.approx(float(iw_value), rel=1e-5)
    terms = jax.jit(lambda p: objectives.training_terms(fn.bind(p), x, key, oc))(fn.params)
    assert float(terms["encoder_loss"]) == pytest.approx(float(mi_value), rel=1e-5)
    (enc, model_side), (iw_enc, iw_model), (mi_enc, _) = (gradients.split_params(g) for g in (grad, iw_grad, mi_grad))
    np.testing.assert_allclose(flat(model_side), flat(iw_model), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(flat(enc), flat(mi_enc), rtol=1e-4, atol=1e-6)
    assert float(jnp.max(jnp.abs(flat(enc) - flat(iw_enc)))) > 1e-3  # not IWAE's on the encoder side


# ---------------------------------------------------------------- the estimators through the registered loss


def _encoder_grads(fn, x, ocs, draws, seed):
    """(draws, len(ocs), encoder parameters): each draw's key shared by every objective (paired)."""
    def one(key):
        grads = [jax.grad(lambda p, oc=oc: objectives.training_loss(fn.bind(p), x, key, oc)[0])(fn.params)
                 for oc in ocs]
        return jnp.stack([flat(gradients.split_params(g)[0]) for g in grads])

    return np.asarray(jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(seed), draws)), np.float64)


def _unbiased(diffs):
    t = paired_t(diffs)
    return np.max(np.abs(t)) < 4.5 and np.mean(t**2) < 1 + 4 * math.sqrt(2 / t.size)


def test_dreg_and_stl_gradients_have_the_expectations_the_literature_gives(tiny):
    """Paired over 1500 draws of the registered IWAE loss, K = 10: DReG's encoder gradient has
    reparam's expectation (t statistics within noise, ≈ 100 live parameters), STL's does not
    (biased for K > 1: Tucker et al. 2019); for the ELBO, STL is unbiased."""
    fn, x = tiny
    g = _encoder_grads(fn, x, [OC(name="iwae", samples=10, gradient=e) for e in ("reparam", "dreg", "stl")],
                       draws=1500, seed=5)
    assert np.mean(np.abs(g[:, 0].mean(0)) > 4 * standard_errors(g[:, 0])) > 0.3  # a clearly non-zero gradient
    assert _unbiased(g[:, 1] - g[:, 0])
    assert np.max(np.abs(paired_t(g[:, 2] - g[:, 0]))) > 10
    g = _encoder_grads(fn, x, [OC(kl="mc", samples=3, gradient=e) for e in ("reparam", "stl")], draws=1500, seed=6)
    assert _unbiased(g[:, 1] - g[:, 0])


@pytest.mark.parametrize("oc", [OC(kl="mc", samples=3, gradient="stl", beta=2.0), OC(name="iwae", samples=4,
                                gradient="dreg"), OC(name="vr", samples=4, alpha=0.3, gradient="dreg")],
                         ids=["elbo-stl-beta2", "iwae-dreg", "vr-dreg"])
def test_estimators_keep_the_value_and_the_model_side_gradient(tiny, oc):
    """Draw by draw: the loss is the reparameterized objective's value and the model side's
    gradient is its gradient (the estimators change only the encoder's)."""
    fn, x = tiny
    key = jax.random.key(7)
    reference = dataclasses.replace(oc, gradient="reparam")
    (value, grad), (ref_value, ref_grad) = (_value_and_grad(fn, x, key, c) for c in (oc, reference))
    assert float(value) == pytest.approx(float(ref_value), rel=1e-5)
    (enc, model_side), (ref_enc, ref_model) = gradients.split_params(grad), gradients.split_params(ref_grad)
    np.testing.assert_allclose(flat(model_side), flat(ref_model), rtol=1e-4, atol=1e-5)
    assert float(jnp.max(jnp.abs(flat(enc) - flat(ref_enc)))) > 1e-4


# ---------------------------------------------------------------- β-TCVAE


class Codes(nnx.Module):
    """q(z|x) = N(x, s²I) on inputs that are themselves the codes: the aggregate posterior is
    the inputs' law convolved with N(0, s²I), whose MI, TC and dimension-wise KL are known."""

    def __init__(self, s2: float):
        self.logvar = nnx.Param(jnp.asarray(math.log(s2), jnp.float32))

    def __call__(self, x):
        return x, jnp.broadcast_to(self.logvar[...], x.shape)


class CodesVAE(models.VAE):
    """A VAE over those codes: p(z) = N(0, I), p(x|z) = N(z, I)."""

    def __init__(self, d: int, s2: float = 0.25):
        super().__init__(Codes(s2), None, d)

    def log_likelihood(self, x, z):
        return -0.5 * jnp.sum((x - z) ** 2 + math.log(2 * math.pi), axis=-1)


def test_btcvae_terms_sum_to_the_kl_and_find_the_total_correlation():
    """Batches of 1024 codes in D = 3 through the registered loss: mi + tc + dim_kl is the
    logged KL, the loss is recon + mi + β·tc + dim_kl, each term within 4 standard errors plus
    the estimator's O(1/M) bias (0.03 nats) of its closed form: TC ≈ 0 for independent
    dimensions, clearly positive for correlated ones."""
    d, m, beta = 3, 1024, 6.0
    vae = CodesVAE(d)
    oc = OC(name="btcvae", beta=beta)

    @jax.jit
    def terms(key, cov):
        x = jax.random.multivariate_normal(jax.random.fold_in(key, 1), jnp.zeros(d), cov, (m,))
        return objectives.training_terms(vae, x, key, oc, dataset_size=N_DATA)

    for rho, tc_range in ((0.0, (-0.03, 0.03)), (0.8, (0.2, 1.0))):
        cov = np.eye(d, dtype=np.float32)
        cov[0, 1] = cov[1, 0] = rho
        runs = jax.device_get([terms(jax.random.key(i), jnp.asarray(cov)) for i in range(8)])
        for r in runs:
            assert r["mi"] + r["tc"] + r["dim_kl"] == pytest.approx(r["kl"], rel=1e-5, abs=1e-4)
            assert r["loss"] == pytest.approx(r["recon"] + r["mi"] + beta * r["tc"] + r["dim_kl"], rel=1e-5)
        for term, exact in gaussian_channel_terms(cov).items():
            means = np.array([r[term] for r in runs], np.float64)
            assert abs(means.mean() - exact) < 4 * standard_errors(means) + 0.03, (rho, term, means.mean(), exact)
        assert tc_range[0] < np.mean([r["tc"] for r in runs]) < tc_range[1]


def test_btcvae_gradient_is_minibatch_weighted_samplings():
    """The gradient is MWS's (Chen et al.'s estimator), though the value logged is MSS's."""
    vae = CodesVAE(2, s2=0.5)
    graphdef, params = nnx.split(vae)
    x = jax.random.normal(jax.random.key(0), (64, 2)) * jnp.array([1.0, 2.0])
    key, beta = jax.random.key(1), 3.0

    def registered(p):
        return objectives.training_loss(nnx.merge(graphdef, p), x, key, OC(name="btcvae", beta=beta),
                                        dataset_size=N_DATA)[0]

    def by_hand(p):
        model = nnx.merge(graphdef, p)
        mean, logvar = model.encode(x)
        z = mean + jnp.exp(0.5 * logvar) * jax.random.normal(key, (1, *x.shape))[0]
        terms = tcvae.tc_decomposition(z, mean, logvar, N_DATA, "mws")
        return tcvae.tcvae_loss(-model.log_likelihood(x, z), terms, beta)

    registered, by_hand = jax.jit(registered), jax.jit(by_hand)  # one program each, not one per operation
    np.testing.assert_allclose(flat(jax.jit(jax.grad(registered))(params)), flat(jax.jit(jax.grad(by_hand))(params)),
                               rtol=1e-5)
    assert float(registered(params)) != pytest.approx(float(by_hand(params)), rel=1e-3)  # MWS's offsets not logged
