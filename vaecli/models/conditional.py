"""The conditional VAE (`model.conditional: true`): q(z|x, y), p(x|z, y), p(z) = N(0, I), with
y a class label as a one-hot vector of `model.num_classes`.

The label travels with the image: a batch is the flattened images with the one-hot label
appended as C more columns (vaecli.data.Split.with_labels), at the pixel scale, so after the
division by the scale they are exactly 0 and 1 (a Bernoulli draw of dynamic binarization
leaves them so). The trainer, the estimator, replicas, devices, EMA and resume carry it as
they carry pixels; this model splits it off:

    encoder  mlp: the image and the one-hot label, concatenated
             conv: the one-hot label broadcast as C more input channels of every pixel
    decoder  z and the one-hot label, concatenated (both kinds)

The interface is the VAE's (vaecli.models.vae) with the label inside x; `mean_image` takes
the decoder's input, z and the one-hot label, (..., latent_dim + C). `generate(key, n)`
draws the classes in turn (image i of class i mod C), so a grid of C columns has a class
per column.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from vaecli.errors import ConfigError
from vaecli.models.gaussian_layer import GaussianLayer
from vaecli.models.networks import ConvDecoder, ConvEncoder, GaussianMLPEncoder, MLPDecoder


def with_label(z, y):
    """z (..., L) and one-hot y (B, C) -> (..., L + C): y broadcast over z's leading sample axes."""
    return jnp.concatenate([z, jnp.broadcast_to(y, (*z.shape[:-1], y.shape[-1])).astype(z.dtype)], axis=-1)


class LabelChannelsEncoder(nnx.Module):
    """The conv encoder of (H, W, C_img + C) images: the one-hot label as constant channels."""

    def __init__(self, image_shape, num_classes: int, conv: ConvEncoder):
        self.image_shape, self.num_classes, self.conv = tuple(image_shape), num_classes, conv

    def __call__(self, xy):
        d = math.prod(self.image_shape)
        x = xy[..., :d].reshape(*xy.shape[:-1], *self.image_shape)
        y = jnp.broadcast_to(xy[..., None, None, d:], (*xy.shape[:-1], *self.image_shape[:2], self.num_classes))
        return self.conv(jnp.concatenate([x, y], axis=-1).reshape(*xy.shape[:-1], -1))


class ConditionalVAE(GaussianLayer):
    """One Gaussian stochastic layer; x inside the model is (..., D + C): pixels, then one-hot y.
    The latent's side of the interface is the VAE's (vaecli.models.gaussian_layer); the label
    is split off for the decoder here."""

    def __init__(self, encoder, decoder, latent_dim: int, likelihood, prior, image_dim: int, num_classes: int):
        self.encoder, self.decoder, self.latent_dim = encoder, decoder, latent_dim
        self.likelihood, self.prior = likelihood, prior
        self.image_dim, self.num_classes = image_dim, num_classes

    def log_likelihood(self, xy, z):
        return self.likelihood.log_prob(self.decoder(with_label(z, xy[..., self.image_dim:])), xy[..., :self.image_dim])

    def mean_image(self, zy):
        """E[x|z, y] from the decoder's input: z and the one-hot label, (..., latent_dim + C)."""
        return self.likelihood.mean(self.decoder(zy))

    def reconstruct(self, xy):
        return self.mean_image(with_label(self.point(self.encode(xy)), xy[..., self.image_dim:]))

    def generate(self, key, n: int):
        y = jax.nn.one_hot(jnp.arange(n) % self.num_classes, self.num_classes)
        return self.mean_image(with_label(self.prior.sample(key, n, self.encoder), y))


def build(cfg, image_shape, act, rngs, likelihood, prior) -> ConditionalVAE:
    """model.kind mlp or conv (vaecli.config.build refuses others), conditioned on cfg.num_classes labels."""
    c, d = cfg.num_classes, math.prod(image_shape)
    if c is None:  # `vae train` fills it in from the data; a model built elsewhere must be told
        raise ConfigError("model.num_classes: the conditional VAE needs the number of classes; set "
                          "model.num_classes=N (vae train takes it from the data's labels)")
    if cfg.kind == "conv":
        h, w, ch = image_shape
        encoder = LabelChannelsEncoder(image_shape, c, ConvEncoder((h, w, ch + c), cfg.channels, cfg.hidden,
                                                                   cfg.latent_dim, act, rngs=rngs))
        decoder = ConvDecoder(image_shape, cfg.channels, cfg.hidden, cfg.latent_dim + c, act, rngs=rngs)
    else:
        encoder = GaussianMLPEncoder(d + c, cfg.hidden, cfg.latent_dim, act, rngs=rngs)
        decoder = MLPDecoder(cfg.latent_dim + c, cfg.hidden, d, act, rngs=rngs)
    return ConditionalVAE(encoder, decoder, cfg.latent_dim, likelihood, prior, d, c)
