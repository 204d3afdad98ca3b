"""The VQ-VAE's code prior (vaecli.models.pixelcnn): causal (no code sees a later one), its
log-probability the sum of the per-code log-softmax, its sampler draws what it scores."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vaecli.config import PriorConfig
from vaecli.models import pixelcnn

K, L = 5, 9


def prior(layers=3):
    return pixelcnn.build(PriorConfig(layers=layers, channels=8), K, L, jax.random.key(0))


@pytest.mark.parametrize("j", [0, 4, L - 1])
def test_no_logit_sees_its_own_or_a_later_code(j):
    """Changing code j leaves the logits of positions 0..j unchanged, and changes later ones
    (those within the receptive field: all of them here, 2^3 ≥ L − 1)."""
    model = prior()
    codes = jax.random.randint(jax.random.key(1), (4, L), 0, K)
    changed = codes.at[:, j].set((codes[:, j] + 1) % K)
    a, b = np.asarray(model.logits(codes)), np.asarray(model.logits(changed))
    np.testing.assert_array_equal(a[:, : j + 1], b[:, : j + 1])
    if j < L - 1:
        assert np.all(np.abs(a[:, j + 1:] - b[:, j + 1:]).max(-1) > 0)


def test_the_receptive_field_is_2_to_the_layers():
    """With 2 layers the last code sees 4 codes back: changing one 5 places earlier changes nothing."""
    model = prior(layers=2)
    codes = jnp.zeros((1, L), jnp.int32)
    a = np.asarray(model.logits(codes))
    np.testing.assert_array_equal(a[:, L - 1], np.asarray(model.logits(codes.at[:, L - 6].set(3)))[:, L - 1])
    assert np.abs(a[:, L - 1] - np.asarray(model.logits(codes.at[:, L - 5].set(3)))[:, L - 1]).max() > 0
    assert pixelcnn.receptive_field(2) == 4


def test_log_prob_is_the_sum_of_the_per_code_log_softmax():
    model = prior()
    codes = jax.random.randint(jax.random.key(2), (6, L), 0, K)
    logits = np.asarray(model.logits(codes), np.float64)
    logits -= logits.max(-1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    want = np.take_along_axis(logp, np.asarray(codes)[..., None], -1)[..., 0].sum(-1)
    np.testing.assert_allclose(np.asarray(model.log_prob(codes)), want, rtol=1e-5)


def test_samples_follow_the_model():
    """At a low temperature each drawn code is the argmax given the codes drawn before it;
    draws are a function of the key."""
    model = prior()
    model.out.kernel.value = 100 * model.out.kernel[...]  # clear maxima: untrained logits are nearly tied
    cold = np.asarray(model.sample(jax.random.key(3), 5, 1e-3))
    assert cold.shape == (5, L) and cold.min() >= 0 and cold.max() < K
    np.testing.assert_array_equal(np.asarray(model.logits(jnp.asarray(cold))).argmax(-1), cold)
    a, b = model.sample(jax.random.key(4), 5), model.sample(jax.random.key(4), 5)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
