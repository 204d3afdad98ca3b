"""The VampPrior paper's hierarchical VAE (vaecli.models.hvae) on real computations: its
log-weights against an independent float64 NumPy evaluation of the same networks, and the
interface the trainer, the estimator and the pictures call."""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import expit, logsumexp

from vaecli import registry
from vaecli.config import ModelConfig
from vaecli.models import vae as models

SHAPE = (2, 3, 1)  # six pixels
D1, D2, K = 2, 3, 3
CFG = ModelConfig(latent_dim=D1, latent_dim2=D2, hierarchy="hvae", hidden=(5, 4), activation="gated", prior="vamp",
                  pseudo_inputs=K)


@pytest.fixture(scope="module", params=[(5, 4), (5,)], ids=["two-widths", "one-width"])
def tiny(request):
    """The model with random parameters (the init's are too tame to make the test sharp); with
    one width, the two-input networks' heads read both first layers side by side."""
    fn = models.functional(dataclasses.replace(CFG, hidden=request.param), SHAPE, seed=0)
    leaves, tree = jax.tree.flatten(fn.params)
    keys = jax.random.split(jax.random.key(7), len(leaves))
    fn.params = jax.tree.unflatten(tree, [1.5 * jax.random.normal(k, a.shape) for k, a in zip(keys, leaves)])
    return fn


# ------------------------------------------------------------ the reference, in float64 NumPy


def _np(tree):
    return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


def _gated(p, h):
    """GatedDense layers dense{i}·sigmoid(gate{i}), all activated."""
    for i in range(sum(name.startswith("dense") for name in p)):
        h = (h @ p[f"dense{i}"]["kernel"] + p[f"dense{i}"]["bias"]) * \
            expit(h @ p[f"gate{i}"]["kernel"] + p[f"gate{i}"]["bias"])
    return h


def _head(p, h):
    return h @ p["mean"]["kernel"] + p["mean"]["bias"], np.clip(h @ p["logvar"]["kernel"] + p["logvar"]["bias"], -6, 2)


def _two(p, a, b):
    ha, hb = _gated(p["a"], a), _gated(p["b"], b)
    h = np.concatenate([np.broadcast_to(ha, hb.shape[:-1] + ha.shape[-1:]), hb], -1)
    return _gated(p["joint"], h) if "joint" in p else h


def _log_normal(z, mean, logvar):
    return -0.5 * np.sum(np.log(2 * np.pi) + logvar + (z - mean) ** 2 / np.exp(logvar), -1)


def reference_log_weights(params, x, eps):
    """log p(x|z1,z2) + log p(z1|z2) + log (1/K Σ_k q(z2|u_k)) − log q(z1|x,z2) − log q(z2|x)
    at z2 = m2 + σ2·eps[..., D1:], z1 = m1(x, z2) + σ1(x, z2)·eps[..., :D1], term by term."""
    p = _np(params)
    enc = p["encoder"]
    q2 = lambda v: _head(enc["top_head"], _gated(enc["top"], v))
    m2, lv2 = q2(x)
    z2 = m2 + np.exp(0.5 * lv2) * eps[..., D1:]
    m1, lv1 = _head(enc["bottom_head"], _two(enc["bottom"], x, z2))
    z1 = m1 + np.exp(0.5 * lv1) * eps[..., :D1]
    pm1, plv1 = _head(p["p1"]["head"], _gated(p["p1"]["trunk"], z2))
    um, ulv = q2(expit(p["prior"]["logits"]))  # (K, D2): the components
    log_vamp = logsumexp(_log_normal(z2[..., None, :], um, ulv), axis=-1) - np.log(K)
    logits = _two(p["decoder"]["trunk"], z1, z2) @ p["decoder"]["out"]["kernel"] + p["decoder"]["out"]["bias"]
    log_px = np.sum(x * logits - np.logaddexp(0, logits), -1)
    log_p = _log_normal(z1, pm1, plv1) + log_vamp
    log_q = _log_normal(z1, m1, lv1) + _log_normal(z2, m2, lv2)
    clipped = np.any((np.abs(np.concatenate([lv1.ravel(), lv2.ravel(), plv1.ravel(), ulv.ravel()]) - 2) < 1e-12) |
                     (np.abs(np.concatenate([lv1.ravel(), lv2.ravel(), plv1.ravel(), ulv.ravel()]) + 6) < 1e-12))
    return (log_px, log_p, log_q), clipped


def test_log_weights_match_an_independent_float64_computation(tiny):
    rng = np.random.default_rng(0)
    x = (rng.random((4, 6)) < 0.5).astype(np.float32)
    eps = rng.standard_normal((3, 4, D1 + D2)).astype(np.float32)
    vae = tiny.bind(tiny.params)
    assert vae.noise_dim == D1 + D2
    got = jax.jit(lambda p: (lambda m: m.log_terms(x, m.encode(x), eps))(tiny.bind(p)))(tiny.params)
    expected, clipped = reference_log_weights(tiny.params, x.astype(np.float64), eps.astype(np.float64))
    assert clipped  # the random parameters push some log-variances to the clip, so it is checked too
    for g, e in zip(got, expected):
        assert g.shape == (3, 4)
        np.testing.assert_allclose(np.asarray(g, np.float64), e, rtol=2e-5, atol=2e-4)
    log_w = sum(np.asarray(t, np.float64) * s for t, s in zip(got, (1, 1, -1)))
    np.testing.assert_allclose(log_w, expected[0] + expected[1] - expected[2], rtol=2e-5, atol=5e-4)


def test_the_code_is_z2_and_pictures_decode_it(tiny):
    """encode gives q(z2|x); decoding z2 reads p(x|z1, z2) at z1 = the mean of p(z1|z2);
    generate draws z2 from the VampPrior and z1 from p(z1|z2); no closed-form KL."""
    vae = tiny.bind(tiny.params)
    x = jnp.asarray((np.random.default_rng(1).random((5, 6)) < 0.5), jnp.float32)
    mean2, logvar2 = vae.encode(x)
    assert mean2.shape == logvar2.shape == (5, D2) and registry.code_dim(CFG) == D2
    assert vae.kl_per_dim((mean2, logvar2)) is None and not registry.closed_form_kl(CFG)
    p = _np(tiny.params)
    pm1, _ = _head(p["p1"]["head"], _gated(p["p1"]["trunk"], np.asarray(mean2, np.float64)))
    logits = _two(p["decoder"]["trunk"], pm1, np.asarray(mean2, np.float64)) @ p["decoder"]["out"]["kernel"] \
        + p["decoder"]["out"]["bias"]
    np.testing.assert_allclose(np.asarray(vae.reconstruct(x), np.float64), expit(logits), rtol=1e-4, atol=1e-6)
    images = np.asarray(vae.generate(jax.random.key(3), 7))
    assert images.shape == (7, 6) and np.all((images >= 0) & (images <= 1))
    assert not np.allclose(images, np.asarray(vae.generate(jax.random.key(4), 7)))


def test_pseudo_inputs_start_at_training_images_and_the_prior_is_over_z2():
    train = (np.random.default_rng(2).random((20, 6)) < 0.5).astype(np.uint8)
    fn = models.functional(CFG, SHAPE, seed=0, train=(train, 1))
    u = np.asarray(jax.nn.sigmoid(fn.params["prior"]["logits"]), np.float64)
    assert u.shape == (K, 6)
    assert all(any(np.allclose(r, 0.05 + 0.9 * t, atol=1e-6) for t in train) for r in u)
    vae = fn.bind(fn.params)
    assert np.asarray(vae.log_prior(jnp.zeros((4, D2)))).shape == (4,)
