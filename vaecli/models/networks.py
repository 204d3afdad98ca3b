"""The encoder and decoder networks, Flax NNX modules looked up by `model.kind`.

Images travel flattened, (..., H·W·C): the dense layers then see plain matrices, which XLA
compiles to fast GEMMs (the conv nets reshape inside with `image_shape`). A model kind
(registered in vaecli.registry.MODEL_KINDS) is a function (cfg, image_shape, activation,
rngs) -> (encoder, decoder): the encoder maps flattened images to (mean, logvar) of a
Gaussian q(z|x), the decoder maps z to one output per pixel and has `output_bias` (an
nnx.Param of shape (H·W·C,)), which `model.output_bias: data_mean` sets to the
likelihood's bias for the training pixel mean.
"""
from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx

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


def conv_grid(image_shape, channels):
    h, w, _ = image_shape
    f = 2 ** len(channels)
    if h % f or w % f:
        raise ConfigError(f"model.channels: {len(channels)} stride-2 conv layers need height and width divisible "
                          f"by {f}; the images are {h}x{w} (use fewer channels entries or model.kind=mlp)")
    return h // f, w // f


class ConvEncoder(nnx.Module):
    """Stride-2 4x4 convolutions (28x28 -> 14 -> 7, 32x32 -> 16 -> 8), then the dense Gaussian
    head: the VQ-VAE's encoder (vaecli.models.vq_networks) replaces only the head."""

    def __init__(self, image_shape, channels, hidden, latent_dim, activation, *, rngs):
        gh, gw = conv_grid(image_shape, channels)
        self._downsampling(image_shape, channels, activation, rngs)
        self.head = GaussianMLPEncoder(gh * gw * channels[-1], hidden, latent_dim, activation, rngs=rngs)

    def _downsampling(self, image_shape, channels, activation, rngs) -> None:
        """The convolutions, made before the head (the order the parameters are drawn in)."""
        self.image_shape, self.activation = tuple(image_shape), activation
        widths = [image_shape[2], *channels]
        self.n = len(channels)
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):  # named layers: readable checkpoint keys
            setattr(self, f"conv{i}", nnx.Conv(a, b, (4, 4), strides=(2, 2), padding="SAME", rngs=rngs))

    def features(self, x):
        """Flattened images (..., H·W·C) -> the last grid (N, H/2^n, W/2^n, channels[-1])."""
        h = x.reshape(-1, *self.image_shape)
        for i in range(self.n):
            h = self.activation(getattr(self, f"conv{i}")(h))
        return h

    def __call__(self, x):
        lead = x.shape[:-1]
        h = self.features(x)
        mean, logvar = self.head(h.reshape(h.shape[0], -1))
        return mean.reshape(*lead, -1), logvar.reshape(*lead, -1)


class ConvDecoder(nnx.Module):
    """Dense layers to a (H/2^n, W/2^n, C_n) grid, then stride-2 transposed convolutions back to
    the image, plus one output bias per pixel (what `output_bias: data_mean` sets). The input
    map is `to_grid`: the VQ-VAE's decoder (vaecli.models.vq_networks) replaces only it."""

    def __init__(self, image_shape, channels, hidden, latent_dim, activation, *, rngs):
        self.image_shape, self.activation = tuple(image_shape), activation
        self.grid = (*conv_grid(image_shape, channels), channels[-1])
        self.dense = MLP([latent_dim, *reversed(hidden), self.grid[0] * self.grid[1] * self.grid[2]],
                         activation, rngs=rngs, act_last=True)
        self._upsampling(channels, rngs)

    def _upsampling(self, channels, rngs) -> None:
        """The transposed convolutions and the output bias, made after the input map (the order
        the parameters are drawn in)."""
        widths = [*reversed(channels), self.image_shape[2]]
        self.n = len(channels)
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            setattr(self, f"deconv{i}", nnx.ConvTranspose(a, b, (4, 4), strides=(2, 2), padding="SAME",
                                                          use_bias=i < self.n - 1, rngs=rngs))
        self.bias = nnx.Param(jnp.zeros((math.prod(self.image_shape),)))

    def to_grid(self, z):
        """z (N, latent_dim) -> the first grid (N, h, w, channels[-1]) of the upsampling."""
        return self.dense(z.reshape(-1, z.shape[-1])).reshape(-1, *self.grid)

    def __call__(self, z):
        lead = z.shape[:-1]
        h = self.to_grid(z)
        for i in range(self.n):
            h = getattr(self, f"deconv{i}")(h)
            if i < self.n - 1:
                h = self.activation(h)
        return h.reshape(*lead, -1) + self.bias[...]

    @property
    def output_bias(self) -> nnx.Param:
        return self.bias



def activation(name: str):
    """`model.activation` -> an elementwise function, or GATED."""
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

