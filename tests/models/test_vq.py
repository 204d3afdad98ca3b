"""The VQ-VAE's quantiser (vaecli.models.vq): nearest codes, the straight-through gradient, the
commitment and codebook losses, and the moving-average codebook against float64 NumPy."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from helpers import make_bars

from vaecli import config
from vaecli.compiled import state as state_lib
from vaecli.compiled.epoch import make_epoch_fn
from vaecli.models import objectives, vq
from vaecli.models import vae as models

VQ = ["model.latent=vq", "objective.name=vq", "model.hidden=[16]", "model.latent_dim=6", "model.code_dim=2",
      "model.codebook_size=5"]


def vq_config(*more):
    return config.load(None, [*VQ, *more])


class Fixed(nnx.Module):
    """An encoder whose output is a parameter: the gradient with respect to z_e itself."""

    def __init__(self, z):
        self.z = nnx.Param(z)

    def __call__(self, x):
        return self.z[...]


def _model_at(cfg, z):
    model = models.build(cfg.model, (8, 8, 1), jax.random.key(0))
    model.encoder = Fixed(z)
    return model


def _np_nearest(flat, codebook):
    d2 = ((flat[:, None, :] - codebook[None]) ** 2).sum(-1)
    return d2.argmin(-1)


@pytest.mark.parametrize("beta", [0.0, 0.7])
@pytest.mark.parametrize("update", ["ema", "loss"])
def test_straight_through_gradient_and_commitment(beta, update):
    """d loss/d z_e = d recon/d z_q (at z_q) + 2β(z_e − e)/B: the decoder's gradient passes the
    quantiser unchanged, the commitment term adds its own; the codebook loss moves only e."""
    cfg = vq_config(f"objective.commitment={beta}", f"model.codebook_update={update}")
    x = jnp.asarray(make_bars(4, 0).reshape(4, -1), jnp.float32)
    z = jax.random.normal(jax.random.key(1), (4, 6)) * 0.3
    model = _model_at(cfg, z)
    # jitted: one program each, not one per operation
    grads = nnx.jit(nnx.grad(lambda m: objectives.training_terms(m, x, jax.random.key(2), cfg.objective)["loss"]))(model)
    codebook = np.asarray(model.quantizer.codebook[...], np.float64)
    flat = np.asarray(z, np.float64).reshape(-1, 2)
    e = codebook[_np_nearest(flat, codebook)]
    z_q = jnp.asarray(e.reshape(4, 6), jnp.float32)
    d_recon = jax.jit(jax.grad(lambda zq: -jnp.mean(model.likelihood.log_prob(model.decoder(zq), x))))(z_q)
    expected = np.asarray(d_recon, np.float64) + 2 * beta * (flat - e).reshape(4, 6) / 4
    np.testing.assert_allclose(np.asarray(grads.encoder.z[...]), expected, rtol=1e-4, atol=1e-6)
    d_codebook = np.asarray(grads.quantizer.codebook[...], np.float64)
    if update == "ema":  # set by moving averages: no gradient at all
        assert not d_codebook.any()
    else:  # |sg[z_e] − e|² / B: 2(e − z_e)/B summed over the rows that chose e
        want = np.zeros_like(codebook)
        np.add.at(want, _np_nearest(flat, codebook), 2 * (e - flat) / 4)
        np.testing.assert_allclose(d_codebook, want, rtol=1e-4, atol=1e-6)


def test_terms_logged_are_the_quantisation_figures():
    cfg = vq_config()
    x = jnp.asarray(make_bars(8, 0).reshape(8, -1), jnp.float32)
    z = jax.random.normal(jax.random.key(3), (8, 6))
    model = _model_at(cfg, z)
    terms = objectives.training_terms(model, x, jax.random.key(0), cfg.objective)
    codebook = np.asarray(model.quantizer.codebook[...], np.float64)
    flat = np.asarray(z, np.float64).reshape(-1, 2)
    idx = _np_nearest(flat, codebook)
    freq = np.bincount(idx, minlength=5) / len(idx)
    used = freq[freq > 0]
    np.testing.assert_allclose(float(terms["perplexity"]), np.exp(-(used * np.log(used)).sum()), rtol=1e-5)
    assert float(terms["codes_used"]) == len(used)
    np.testing.assert_allclose(float(terms["commitment"]), ((flat - codebook[idx]) ** 2).sum() / 8, rtol=1e-5)
    np.testing.assert_allclose(float(terms["kl"]), 3 * np.log(5), rtol=1e-6)  # L·log K: a uniform prior


def _np_ema(counts, sums, flat, idx, decay, k):
    onehot = np.eye(k)[idx]
    counts = decay * counts + (1 - decay) * onehot.sum(0)
    sums = decay * sums + (1 - decay) * onehot.T @ flat
    total = counts.sum()
    smooth = (counts + vq.LAPLACE_EPS) / (total + k * vq.LAPLACE_EPS) * total
    return counts, sums, sums / smooth[:, None]


def test_one_training_step_sets_the_codebook_by_moving_averages():
    """One compiled step over the whole split (so the batch is every image, whatever the
    order): the state's codebook statistics are the float64 NumPy update of the step-0 ones
    at the step-0 encoder's outputs, and the codebook follows from them."""
    decay = 0.8
    cfg = vq_config(f"model.codebook_decay={decay}", "train.batch_size=32")
    images = make_bars(32, 0).reshape(32, -1)
    fn, tx, state = state_lib.init_state(cfg, (8, 8, 1))
    model0 = fn.bind(state["params"])
    flat = np.asarray(model0.encoder(jnp.asarray(images, jnp.float32)), np.float64).reshape(-1, 2)
    q0 = jax.tree.map(lambda a: np.asarray(a, np.float64), state["params"]["quantizer"])
    idx = _np_nearest(flat, q0["codebook"])
    counts, sums, codebook = _np_ema(q0["cluster_size"], q0["embed_sum"], flat, idx, decay, 5)
    state, metrics = make_epoch_fn(fn, tx, cfg, 32, 1)(state, jnp.asarray(images))
    q1 = state["params"]["quantizer"]
    assert int(state["step"]) == 1 and float(metrics["codes_used"]) == len(set(idx))
    np.testing.assert_allclose(np.asarray(q1["cluster_size"]), counts, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(q1["embed_sum"]), sums, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.asarray(q1["codebook"]), codebook, rtol=1e-5, atol=1e-7)
    unused = np.setdiff1d(np.arange(5), idx)
    np.testing.assert_allclose(np.asarray(q1["codebook"])[unused], q0["codebook"][unused], rtol=1e-4)


def test_dead_codes_move_onto_encoder_outputs():
    """A threshold above every count: each code restarts at one of the batch's encoder outputs."""
    cfg = vq_config("model.dead_code_threshold=100")
    z = jax.random.normal(jax.random.key(4), (8, 6))
    model = _model_at(cfg, z)
    x = jnp.asarray(make_bars(8, 0).reshape(8, -1), jnp.float32)
    new = objectives.training_terms(model, x, jax.random.key(5), cfg.objective)["assign"]["quantizer"]
    flat = np.asarray(z, np.float64).reshape(-1, 2)
    np.testing.assert_array_equal(np.asarray(new["cluster_size"]), np.ones(5))
    for row in np.asarray(new["codebook"], np.float64):
        assert np.abs(flat - row).max(-1).min() < 1e-5


def test_interface_decodes_through_the_quantiser():
    """encode gives the continuous code and a point mass; decoding quantises first, so two
    codes with the same nearest codebook vectors decode to the same image."""
    cfg = vq_config()
    model = models.build(cfg.model, (8, 8, 1), jax.random.key(0))
    x = jnp.asarray(make_bars(3, 0).reshape(3, -1), jnp.float32)
    z, logvar = model.encode(x)
    assert z.shape == (3, 6) and np.all(np.isneginf(np.asarray(logvar)))
    idx = model.codes(x)
    assert idx.shape == (3, 3)
    np.testing.assert_array_equal(np.asarray(model.mean_image(z)), np.asarray(model.decode_codes(idx)))
    np.testing.assert_array_equal(np.asarray(model.reconstruct(x)), np.asarray(model.decode_codes(idx)))
