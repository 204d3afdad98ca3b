"""Flax NNX encoders and decoders, looked up by name.

A VAE here is two modules: a Gaussian encoder x -> (mean, log-variance) of q(z|x), and a
decoder z -> Bernoulli logits of p(x|z). Images travel flattened, (..., H·W·C): the dense
layers then see plain matrices, which XLA compiles to fast GEMMs (a model that needs the
2-D layout reshapes inside with `image_shape`). Training and evaluation never call the NNX
object graph in the hot loop: `Functional` splits the model once into a static graph and
a plain nested dict of parameters, and `bind` rebuilds it inside a traced function
(the graph walk then happens once, at trace time).
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from vaecli import objectives
from vaecli.config import ModelConfig
from vaecli.errors import ConfigError

ACTIVATIONS: dict[str, Callable] = {
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "elu": jax.nn.elu,
    "gelu": jax.nn.gelu,
    "softplus": jax.nn.softplus,
    "swish": jax.nn.swish,
}


class MLP(nnx.Module):
    """Dense layers with an activation between them; named layers keep checkpoint keys readable."""

    def __init__(self, widths: list[int], activation: Callable, *, rngs: nnx.Rngs):
        self.activation = activation
        self.n = len(widths) - 1
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            setattr(self, f"dense{i}", nnx.Linear(a, b, rngs=rngs))

    def __call__(self, x):
        for i in range(self.n):
            x = getattr(self, f"dense{i}")(x)
            if i < self.n - 1:
                x = self.activation(x)
        return x


class GaussianMLPEncoder(nnx.Module):
    """q(z|x) = N(mean(x), diag(exp(logvar(x)))): a shared trunk and two linear heads."""

    def __init__(self, in_dim: int, hidden: tuple[int, ...], latent_dim: int, activation, *, rngs):
        self.activation = activation
        self.trunk = MLP([in_dim, *hidden], activation, rngs=rngs)
        self.mean = nnx.Linear(hidden[-1], latent_dim, rngs=rngs)
        self.logvar = nnx.Linear(hidden[-1], latent_dim, rngs=rngs)

    def __call__(self, x):
        h = self.activation(self.trunk(x))
        return self.mean(h), self.logvar(h)


class BernoulliMLPDecoder(nnx.Module):
    """p(x|z) = Bernoulli(sigmoid(logits(z))), one logit per pixel."""

    def __init__(self, latent_dim: int, hidden: tuple[int, ...], out_dim: int, activation, *, rngs):
        self.net = MLP([latent_dim, *reversed(hidden), out_dim], activation, rngs=rngs)

    def __call__(self, z):
        return self.net(z)


class VAE(nnx.Module):
    """The interface every model offers the objectives: `encoder(x) -> (mean, logvar)`,
    `decoder(z) -> logits` and `log_likelihood(x, z) -> log p(x|z)` summed over pixels."""

    def __init__(self, encoder: nnx.Module, decoder: nnx.Module, latent_dim: int):
        self.encoder = encoder
        self.decoder = decoder
        self.latent_dim = latent_dim

    def log_likelihood(self, x, z):
        return objectives.bernoulli_log_prob(self.decoder(z), x)

    def mean_image(self, z):
        """E[x|z]: the Bernoulli means, what pictures show."""
        return jax.nn.sigmoid(self.decoder(z))


def _mlp(cfg: ModelConfig, image_shape, rngs) -> VAE:
    act = ACTIVATIONS[cfg.activation]
    in_dim = 1
    for s in image_shape:
        in_dim *= s
    return VAE(GaussianMLPEncoder(in_dim, cfg.hidden, cfg.latent_dim, act, rngs=rngs),
               BernoulliMLPDecoder(cfg.latent_dim, cfg.hidden, in_dim, act, rngs=rngs),
               cfg.latent_dim)


MODELS: dict[str, Callable[..., VAE]] = {"mlp": _mlp}


def build(cfg: ModelConfig, image_shape: tuple[int, ...], key: jax.Array) -> VAE:
    if cfg.kind not in MODELS:
        raise ConfigError(f"model.kind: unknown model '{cfg.kind}' (choose one of {', '.join(MODELS)})")
    return MODELS[cfg.kind](cfg, tuple(image_shape), nnx.Rngs(params=key))


class Functional:
    """A model split once into (static graph, parameter dict) for use inside jit/scan."""

    def __init__(self, model: nnx.Module):
        self.graphdef, state = nnx.split(model)
        self.treedef = jax.tree.structure(state)
        self.params = state.to_pure_dict()
        assert [a.shape for a in jax.tree.leaves(self.params)] == [a.shape for a in jax.tree.leaves(state)]

    def bind(self, params) -> VAE:
        """The NNX model holding `params` (a dict shaped like `self.params`)."""
        return nnx.merge(self.graphdef, jax.tree.unflatten(self.treedef, jax.tree.leaves(params)))


def functional(cfg: ModelConfig, image_shape, seed: int) -> Functional:
    """Build the model of `cfg` with parameters initialised from `seed`."""
    key = jax.random.fold_in(jax.random.key(seed), 0x1A17)  # the init stream, apart from training's
    return Functional(build(cfg, image_shape, key))
