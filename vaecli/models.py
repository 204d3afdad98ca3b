"""Flax NNX models, looked up by name: encoders, decoders, likelihoods, priors, hierarchy.

A model is a Gaussian encoder x -> (mean, log-variance) of q(z|x), a decoder z -> per-pixel
parameters of p(x|z) and a prior p(z). Images travel flattened, (..., H·W·C): the dense
layers then see plain matrices, which XLA compiles to fast GEMMs (the conv nets reshape
inside with `image_shape`). Training and evaluation never call the NNX object graph in
the hot loop: `Functional` splits the model once into a static graph and a plain nested
dict of parameters, and `bind` rebuilds it inside a traced function (the graph walk then
happens once, at trace time).

The interface the trainer and the estimator call (one trainer, one estimator, any model):
  encode(x) -> q                      posterior statistics of the first stochastic layer
  noise_dim                           standard-normal numbers one sample of all latents takes
  log_terms(x, q, eps) -> (log p(x|z), log p(z), log q(z|x))   per sample and example, for
                                      eps (S, B, noise_dim); z is reparameterized from eps
  kl_per_dim(q) -> (B, D) or None     the closed-form KL per latent dimension, where one exists
                                      (the prior's; vaecli.choices.closed_form_kl says which
                                      configs have one)
  mean_image(z)                       E[x|z], what pictures show
  reconstruct(x), generate(key, n)    mean images, for pictures
  decoder.output_bias                 the decoder's per-pixel output bias (an nnx.Param of
                                      shape (H·W·C,)), which `model.output_bias: data_mean`
                                      sets to the likelihood's bias for the training pixel mean

A model kind (`model.kind`, registered in vaecli.choices.MODEL_KINDS) is a function
(cfg, image_shape, activation, rngs) -> (encoder, decoder): the encoder maps flattened
images to (mean, logvar), the decoder maps z to one output per pixel and has `output_bias`.
"""
from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vaecli import choices, densities, likelihoods, priors
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


GATED = "gated"  # not an elementwise function: a second linear map gates each hidden layer


class MLP(nnx.Module):
    """Dense layers with an activation between them (and after the last with `act_last`);
    named layers keep checkpoint keys readable. `activation=GATED`: each activated layer is
    W x + b gated by sigmoid(V x + c), the gated linear units of the VampPrior paper."""

    def __init__(self, widths: list[int], activation: Callable | str, *, rngs: nnx.Rngs, act_last: bool = False):
        self.activation = activation
        self.n = len(widths) - 1
        self.act_last = act_last
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            setattr(self, f"dense{i}", nnx.Linear(a, b, rngs=rngs))
            if activation == GATED and self._activated(i):
                setattr(self, f"gate{i}", nnx.Linear(a, b, rngs=rngs))

    def _activated(self, i: int) -> bool:
        return i < self.n - 1 or self.act_last

    def __call__(self, x):
        for i in range(self.n):
            h = getattr(self, f"dense{i}")(x)
            if self._activated(i):
                h = h * jax.nn.sigmoid(getattr(self, f"gate{i}")(x)) if self.activation == GATED else self.activation(h)
            x = h
        return x


class GaussianMLPEncoder(nnx.Module):
    """q(z|x) = N(mean(x), diag(exp(logvar(x)))): a shared trunk and two linear heads. Also
    the conditional Gaussians between the two stochastic layers, q(z2|z1) and p(z1|z2)."""

    def __init__(self, in_dim: int, hidden: tuple[int, ...], latent_dim: int, activation, *, rngs):
        self.trunk = MLP([in_dim, *hidden], activation, rngs=rngs, act_last=True)
        self.mean = nnx.Linear(hidden[-1], latent_dim, rngs=rngs)
        self.logvar = nnx.Linear(hidden[-1], latent_dim, rngs=rngs)

    def __call__(self, x):
        h = self.trunk(x)
        return self.mean(h), self.logvar(h)


class MLPDecoder(nnx.Module):
    """z -> one output per pixel (logits, or locations), the encoder's widths mirrored."""

    def __init__(self, latent_dim: int, hidden: tuple[int, ...], out_dim: int, activation, *, rngs):
        self.net = MLP([latent_dim, *reversed(hidden), out_dim], activation, rngs=rngs)

    def __call__(self, z):
        return self.net(z)

    @property
    def output_bias(self) -> nnx.Param:
        return getattr(self.net, f"dense{self.net.n - 1}").bias


def _conv_grid(image_shape, channels):
    h, w, _ = image_shape
    f = 2 ** len(channels)
    if h % f or w % f:
        raise ConfigError(f"model.channels: {len(channels)} stride-2 conv layers need height and width divisible "
                          f"by {f}; the images are {h}x{w} (use fewer channels entries or model.kind=mlp)")
    return h // f, w // f


class ConvEncoder(nnx.Module):
    """Stride-2 4x4 convolutions (28x28 -> 14 -> 7, 32x32 -> 16 -> 8), then the dense Gaussian head."""

    def __init__(self, image_shape, channels, hidden, latent_dim, activation, *, rngs):
        self.image_shape, self.activation = tuple(image_shape), activation
        gh, gw = _conv_grid(image_shape, channels)
        widths = [image_shape[2], *channels]
        self.n = len(channels)
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):  # named layers: readable checkpoint keys
            setattr(self, f"conv{i}", nnx.Conv(a, b, (4, 4), strides=(2, 2), padding="SAME", rngs=rngs))
        self.head = GaussianMLPEncoder(gh * gw * channels[-1], hidden, latent_dim, activation, rngs=rngs)

    def __call__(self, x):
        lead = x.shape[:-1]
        h = x.reshape(-1, *self.image_shape)
        for i in range(self.n):
            h = self.activation(getattr(self, f"conv{i}")(h))
        mean, logvar = self.head(h.reshape(h.shape[0], -1))
        return mean.reshape(*lead, -1), logvar.reshape(*lead, -1)


class ConvDecoder(nnx.Module):
    """Dense layers to a (H/2^n, W/2^n, C_n) grid, then stride-2 transposed convolutions back to
    the image, plus one output bias per pixel (what `output_bias: data_mean` sets)."""

    def __init__(self, image_shape, channels, hidden, latent_dim, activation, *, rngs):
        self.image_shape, self.activation = tuple(image_shape), activation
        self.grid = (*_conv_grid(image_shape, channels), channels[-1])
        self.dense = MLP([latent_dim, *reversed(hidden), self.grid[0] * self.grid[1] * self.grid[2]],
                         activation, rngs=rngs, act_last=True)
        widths = [*reversed(channels), image_shape[2]]
        self.n = len(channels)
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            setattr(self, f"deconv{i}", nnx.ConvTranspose(a, b, (4, 4), strides=(2, 2), padding="SAME",
                                                          use_bias=i < self.n - 1, rngs=rngs))
        self.bias = nnx.Param(jnp.zeros((image_shape[0] * image_shape[1] * image_shape[2],)))

    def __call__(self, z):
        lead = z.shape[:-1]
        h = self.dense(z.reshape(-1, z.shape[-1])).reshape(-1, *self.grid)
        for i in range(self.n):
            h = getattr(self, f"deconv{i}")(h)
            if i < self.n - 1:
                h = self.activation(h)
        return h.reshape(*lead, -1) + self.bias[...]

    @property
    def output_bias(self) -> nnx.Param:
        return self.bias


class VAE(nnx.Module):
    """One stochastic layer: q(z|x) Gaussian, p(z) a prior module, p(x|z) a likelihood module.

    Subclasses (and test models) that keep `encoder`, `log_likelihood` and `latent_dim`
    inherit the whole interface the trainer and the estimator use (see the module docstring).
    """

    def __init__(self, encoder: nnx.Module, decoder: nnx.Module, latent_dim: int,
                 likelihood: nnx.Module | None = None, prior: nnx.Module | None = None):
        self.encoder = encoder
        self.decoder = decoder
        self.latent_dim = latent_dim
        self.likelihood = likelihood if likelihood is not None else likelihoods.Bernoulli(0)
        self.prior = prior if prior is not None else priors.StandardNormal(latent_dim)

    @property
    def noise_dim(self) -> int:
        return self.latent_dim

    def encode(self, x):
        return self.encoder(x)

    def log_likelihood(self, x, z):
        return self.likelihood.log_prob(self.decoder(z), x)

    def log_prior(self, z):
        return self.prior.log_prob(z, self.encoder)

    def log_terms(self, x, q, eps):
        mean, logvar = q
        z = mean + jnp.exp(0.5 * logvar) * eps
        return self.log_likelihood(x, z), self.log_prior(z), densities.gaussian_log_prob(z, mean, logvar)

    def kl_per_dim(self, q):
        return self.prior.kl_per_dim(q)

    def mean_image(self, z):
        """E[x|z]: what pictures show."""
        return self.likelihood.mean(self.decoder(z))

    def reconstruct(self, x):
        return self.mean_image(self.encode(x)[0])

    def generate(self, key, n: int):
        return self.mean_image(self.prior.sample(key, n, self.encoder))


class TwoLayerVAE(VAE):
    """Two stochastic layers (Burda et al. 2016, section 5): q(z1|x) q(z2|z1) and
    p(z2) p(z1|z2) p(x|z1), all conditionals diagonal Gaussians with MLPs between layers.
    One sample of the latents takes latent_dim + latent_dim2 standard-normal numbers."""

    def __init__(self, encoder, decoder, likelihood, q2, p1, latent_dim: int, latent_dim2: int):
        super().__init__(encoder, decoder, latent_dim, likelihood, priors.StandardNormal(latent_dim2))
        self.q2, self.p1, self.latent_dim2 = q2, p1, latent_dim2

    @property
    def noise_dim(self) -> int:
        return self.latent_dim + self.latent_dim2

    def log_terms(self, x, q, eps):
        mean1, logvar1 = q
        z1 = mean1 + jnp.exp(0.5 * logvar1) * eps[..., : self.latent_dim]
        mean2, logvar2 = self.q2(z1)
        z2 = mean2 + jnp.exp(0.5 * logvar2) * eps[..., self.latent_dim:]
        log_q = densities.gaussian_log_prob(z1, mean1, logvar1) + densities.gaussian_log_prob(z2, mean2, logvar2)
        log_p = densities.gaussian_log_prob(z1, *self.p1(z2)) + densities.standard_normal_log_prob(z2)
        return self.log_likelihood(x, z1), log_p, log_q

    def kl_per_dim(self, q):
        return None

    def generate(self, key, n: int):
        k2, k1 = jax.random.split(key)
        mean1, logvar1 = self.p1(jax.random.normal(k2, (n, self.latent_dim2)))
        return self.mean_image(mean1 + jnp.exp(0.5 * logvar1) * jax.random.normal(k1, mean1.shape))


def _activation(name: str):
    return GATED if name == GATED else ACTIVATIONS[name]


def mlp_nets(cfg: ModelConfig, image_shape, act, rngs):
    """model.kind=mlp: dense encoder and decoder."""
    d = math.prod(image_shape)
    return (GaussianMLPEncoder(d, cfg.hidden, cfg.latent_dim, act, rngs=rngs),
            MLPDecoder(cfg.latent_dim, cfg.hidden, d, act, rngs=rngs))


def conv_nets(cfg: ModelConfig, image_shape, act, rngs):
    """model.kind=conv: stride-2 convolutions, then the dense layers."""
    return (ConvEncoder(image_shape, cfg.channels, cfg.hidden, cfg.latent_dim, act, rngs=rngs),
            ConvDecoder(image_shape, cfg.channels, cfg.hidden, cfg.latent_dim, act, rngs=rngs))


def build(cfg: ModelConfig, image_shape: tuple[int, ...], key: jax.Array) -> VAE:
    """The model of `cfg`: its kind, likelihood and prior looked up in vaecli.choices."""
    for key_name, registry in (("kind", choices.MODEL_KINDS), ("likelihood", choices.LIKELIHOODS),
                               ("prior", choices.PRIORS)):
        if getattr(cfg, key_name) not in registry:
            raise ConfigError(f"model.{key_name}: unknown {key_name} '{getattr(cfg, key_name)}' "
                              f"(choose one of {', '.join(registry)})")
    image_shape = tuple(image_shape)
    rngs = nnx.Rngs(params=key)
    d = math.prod(image_shape)
    act = _activation(cfg.activation)
    encoder, decoder = choices.MODEL_KINDS[cfg.kind].load()(cfg, image_shape, act, rngs)
    lik = choices.LIKELIHOODS[cfg.likelihood].load().from_config(d, cfg)
    if cfg.latent_dim2 is None:
        return VAE(encoder, decoder, cfg.latent_dim, lik, choices.PRIORS[cfg.prior].load().from_config(cfg, d))
    q2 = GaussianMLPEncoder(cfg.latent_dim, cfg.hidden2, cfg.latent_dim2, act, rngs=rngs)
    p1 = GaussianMLPEncoder(cfg.latent_dim2, tuple(reversed(cfg.hidden2)), cfg.latent_dim, act, rngs=rngs)
    return TwoLayerVAE(encoder, decoder, lik, q2, p1, cfg.latent_dim, cfg.latent_dim2)


def data_init(model: VAE, cfg: ModelConfig, train_flat: np.ndarray, scale: int, seed: int) -> None:
    """The data-dependent starting values, in place: the decoder's output bias at the training
    pixel mean (`output_bias: data_mean`), the VampPrior's pseudo-inputs at random training images."""
    if cfg.output_bias == "data_mean":
        pixel_mean = jnp.asarray(train_flat.mean(axis=0, dtype=np.float64) / scale, jnp.float32)
        model.decoder.output_bias.value = model.likelihood.bias_for_mean(pixel_mean)
    if isinstance(model.prior, priors.VampPrior):
        k = model.prior.logits.shape[0]
        idx = np.random.default_rng(seed).choice(len(train_flat), size=k, replace=k > len(train_flat))
        model.prior.set_pseudo_inputs(train_flat[idx].astype(np.float32) / scale)


class Functional:
    """A model split once into (static graph, parameter dict) for use inside jit/scan.
    `key`: what determines the graph (vaecli.programs keeps the programs compiled for it),
    None when unknown."""

    def __init__(self, model: nnx.Module, key: tuple | None = None):
        self.key = key
        self.graphdef, state = nnx.split(model)
        self.treedef = jax.tree.structure(state)
        self.params = state.to_pure_dict()
        assert [a.shape for a in jax.tree.leaves(self.params)] == [a.shape for a in jax.tree.leaves(state)]

    def bind(self, params) -> VAE:
        """The NNX model holding `params` (a dict shaped like `self.params`)."""
        return nnx.merge(self.graphdef, jax.tree.unflatten(self.treedef, jax.tree.leaves(params)))


def functional(cfg: ModelConfig, image_shape, seed: int, train: tuple[np.ndarray, int] | None = None) -> Functional:
    """Build the model of `cfg` with parameters initialised from `seed`, and from the
    training images `train` = (uint8 (N, D), scale) where the config asks for data init."""
    key = jax.random.fold_in(jax.random.key(seed), 0x1A17)  # the init stream, apart from training's
    model = build(cfg, image_shape, key)
    if train is not None:
        data_init(model, cfg, train[0], train[1], seed)  # values only: the graph is cfg's and the shape's
    return Functional(model, key=("model", cfg, tuple(image_shape)))
