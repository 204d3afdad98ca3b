"""FactorVAE's discriminator (Kim & Mnih 2018): an auxiliary network trained beside the VAE,
with an optimizer of its own, to tell codes z ~ q(z) from codes whose dimensions were
shuffled independently across the batch (samples of Π_d q(z_d)). Its logits estimate the
total correlation, TC ≈ E_q(z)[log D(z) / (1 − D(z))], which the VAE's loss weights by γ
(`objective.beta`).

As in google-research/disentanglement_lib: an MLP of `objective.discriminator.hidden`
widths (six layers of 1000 there) with leaky ReLU (slope 0.2) and two output logits, trained
by Adam (lr `objective.discriminator.lr`, β1 0.5, β2 0.9) on the cross-entropy of "real"
(class 0) against "permuted" (class 1). Unlike the paper, which draws a second batch for the
permuted codes, both sides come from the step's own batch (the permutation makes them
differ): one batch read per step.

The auxiliary network lives in the training state as state["aux"] = {"params", "opt_state"},
so replicas, checkpoints, resume and sharding carry it like the VAE's own parameters.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from vaecli import streams
from vaecli.models.vae import Functional

LEAK = 0.2


class Discriminator(nnx.Module):
    def __init__(self, latent_dim: int, hidden: tuple[int, ...], *, rngs: nnx.Rngs):
        widths = [latent_dim, *hidden, 2]
        self.n = len(widths) - 1
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            setattr(self, f"dense{i}", nnx.Linear(a, b, rngs=rngs))

    def __call__(self, z):
        for i in range(self.n):
            z = getattr(self, f"dense{i}")(z)
            if i < self.n - 1:
                z = jax.nn.leaky_relu(z, LEAK)
        return z


def network(cfg, latent_dim: int, seed: int) -> Functional:
    """The discriminator of an ObjectiveConfig `cfg`, initialised from its own key stream."""
    key = jax.random.fold_in(jax.random.key(seed), streams.DISCRIMINATOR_INIT)
    return Functional(Discriminator(latent_dim, tuple(cfg.discriminator.hidden), rngs=nnx.Rngs(params=key)))


def optimizer(cfg) -> optax.GradientTransformation:
    return optax.adam(cfg.discriminator.lr, b1=0.5, b2=0.9)


def init(cfg, latent_dim: int, seed: int) -> dict:
    """state["aux"] at step 0."""
    params = network(cfg, latent_dim, seed).params
    return {"params": params, "opt_state": optimizer(cfg).init(params)}


def permute_dims(z, key):
    """Each latent dimension shuffled independently across the batch: a sample of Π_d q(z_d)."""
    keys = jax.random.split(key, z.shape[-1])
    return jnp.stack([jax.random.permutation(k, z[:, d]) for d, k in enumerate(keys)], axis=-1)


def total_correlation(logits):
    """The density-ratio estimate of TC from the discriminator's logits at z ~ q(z)."""
    return jnp.mean(logits[:, 0] - logits[:, 1])


def loss(fn: Functional, params, z, key) -> tuple:
    """The discriminator's cross-entropy on real (class 0) and permuted (class 1) codes; and
    its accuracy. `z` carries no gradient to the VAE."""
    d = fn.bind(params)
    real, fake = d(z), d(permute_dims(z, key))
    ce = 0.5 * (jnp.mean(optax.softmax_cross_entropy_with_integer_labels(real, jnp.zeros(len(z), jnp.int32)))
                + jnp.mean(optax.softmax_cross_entropy_with_integer_labels(fake, jnp.ones(len(z), jnp.int32))))
    accuracy = 0.5 * (jnp.mean(real[:, 0] > real[:, 1]) + jnp.mean(fake[:, 1] >= fake[:, 0]))
    return ce, accuracy


def step(fn: Functional, tx: optax.GradientTransformation, aux: dict, z, key) -> tuple[dict, dict]:
    """One update of the discriminator (`fn`, `tx`: `network` and `optimizer`) on the codes `z`
    of the VAE's step: (new aux, logs)."""
    (ce, accuracy), grads = jax.value_and_grad(lambda p: loss(fn, p, z, key), has_aux=True)(aux["params"])
    updates, opt_state = tx.update(grads, aux["opt_state"], aux["params"])
    return ({"params": optax.apply_updates(aux["params"], updates), "opt_state": opt_state},
            {"disc_loss": ce, "disc_accuracy": accuracy})
