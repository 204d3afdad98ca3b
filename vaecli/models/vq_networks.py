"""The VQ-VAE's encoders and decoders (model.latent=vq), by `model.kind`.

The encoder maps flattened images to the continuous code z_e (..., L·D), the decoder maps
the quantised code of the same shape back to one output per pixel (with `output_bias`, as the
Gaussian models' decoders). L codes of D = model.code_dim numbers each:

    mlp   the dense widths of model.hidden, then model.latent_dim outputs cut into L =
          latent_dim / code_dim codes (a 1-D sequence);
    conv  the stride-2 convolutions of model.channels, then a 1x1 convolution to D channels:
          one code per cell of the last grid (28x28 with two layers: 7x7 = 49 codes), as in
          the paper, where a code stands for a patch of the image. model.hidden is not used.
"""
from __future__ import annotations

import math

from flax import nnx

from vaecli.models import networks as gaussian
from vaecli.models.networks import MLP, MLPDecoder, conv_grid


class MLPEncoder(nnx.Module):
    def __init__(self, in_dim: int, hidden, out_dim: int, activation, *, rngs: nnx.Rngs):
        self.net = MLP([in_dim, *hidden, out_dim], activation, rngs=rngs)

    def __call__(self, x):
        return self.net(x)


class ConvEncoder(gaussian.ConvEncoder):
    """The Gaussian models' conv encoder with another head: a 1x1 convolution from the last grid
    to code_dim channels (one code per cell), in place of the dense Gaussian head."""

    def __init__(self, image_shape, channels, code_dim: int, activation, *, rngs: nnx.Rngs):
        self._downsampling(image_shape, channels, activation, rngs)
        self.to_code = nnx.Conv(channels[-1], code_dim, (1, 1), rngs=rngs)

    def __call__(self, x):
        return self.to_code(self.features(x)).reshape(*x.shape[:-1], -1)


class ConvDecoder(gaussian.ConvDecoder):
    """The Gaussian models' conv decoder with another input map: a 3x3 convolution from the
    code grid (h, w, code_dim) to the last conv width, in place of the dense layers."""

    def __init__(self, image_shape, channels, code_dim: int, activation, *, rngs: nnx.Rngs):
        self.image_shape, self.activation = tuple(image_shape), activation
        self.grid = (*conv_grid(image_shape, channels), code_dim)
        self.from_code = nnx.Conv(code_dim, channels[-1], (3, 3), padding="SAME", rngs=rngs)
        self._upsampling(channels, rngs)

    def to_grid(self, z):
        return self.activation(self.from_code(z.reshape(-1, *self.grid)))


def networks(cfg, image_shape, act, rngs) -> tuple[nnx.Module, nnx.Module, tuple[int, ...]]:
    """(encoder, decoder, the code grid) of a VQ-VAE's ModelConfig."""
    if cfg.kind == "conv":
        return (ConvEncoder(image_shape, cfg.channels, cfg.code_dim, act, rngs=rngs),
                ConvDecoder(image_shape, cfg.channels, cfg.code_dim, act, rngs=rngs),
                conv_grid(image_shape, cfg.channels))
    d = math.prod(image_shape)
    return (MLPEncoder(d, cfg.hidden, cfg.latent_dim, act, rngs=rngs),
            MLPDecoder(cfg.latent_dim, cfg.hidden, d, act, rngs=rngs), (cfg.latent_dim // cfg.code_dim,))
