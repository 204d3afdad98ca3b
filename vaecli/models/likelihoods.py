"""p(x|z) given the decoder's per-pixel output: Bernoulli, Gaussian, discretized logistic.

Each likelihood turns the decoder output `out` (..., D) into a log-density summed over
pixels, a mean image, and the output bias that makes the untrained decoder predict the
training pixel mean (`model.output_bias: data_mean`); `from_config(dim, ModelConfig)`
builds it. They are registered by name, with whether they are discrete (bits/dim
defined), in vaecli.registry.LIKELIHOODS. Scales are one learned parameter
per pixel, shared by every z (the decoder predicts only the location).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from vaecli.models import densities

BINS = 255  # 8-bit pixels scaled to [0, 1] sit on a grid of step 1/255


class Bernoulli(nnx.Module):
    """Binary pixels (or [0, 1] targets, the "continuous" convention); `out` are logits."""

    def __init__(self, dim: int):
        pass

    @classmethod
    def from_config(cls, dim: int, cfg):
        return cls(dim)

    def log_prob(self, out, x):
        return densities.bernoulli_log_prob(out, x)

    def mean(self, out):
        return jax.nn.sigmoid(out)

    def bias_for_mean(self, pixel_mean):
        p = jnp.clip(pixel_mean, 1e-4, 1 - 1e-4)  # all-black border pixels: a finite logit
        return jnp.log(p) - jnp.log1p(-p)


class Gaussian(nnx.Module):
    """N(x; out, σ²) per pixel, σ fixed or one learned log σ per pixel (floored at e^-5 ≈ 0.0067
    so that constant pixels, like MNIST's black border, cannot drive the density to infinity).
    A density on [0, 1]-scaled pixels, not a probability: no bits/dim for discrete data."""

    MIN_LOG_STD = -5.0

    def __init__(self, dim: int, learned: bool, std: float):
        self.log_std = nnx.Param(jnp.zeros((dim,))) if learned else None
        self.fixed_log_std = math.log(std)

    @classmethod
    def from_config(cls, dim: int, cfg):
        return cls(dim, cfg.obs_variance == "learned", cfg.obs_std)

    def _log_std(self):
        if self.log_std is None:
            return self.fixed_log_std
        return jnp.maximum(self.log_std[...], self.MIN_LOG_STD)

    def log_prob(self, out, x):
        return densities.gaussian_log_prob(x, out, 2.0 * self._log_std())

    def mean(self, out):
        return jnp.clip(out, 0.0, 1.0)

    def bias_for_mean(self, pixel_mean):
        return pixel_mean


class DiscretizedLogistic(nnx.Module):
    """The probability of the pixel's 1/255-wide bin under a logistic(out, s) per pixel; the
    end bins take the tails (PixelCNN++, Salimans et al. 2017). A proper distribution over
    the 256 levels of [0, 1]-scaled 8-bit data, so bits/dim follow from log p(x)."""

    MIN_LOG_SCALE = -7.0

    def __init__(self, dim: int):
        self.log_scale = nnx.Param(jnp.zeros((dim,)))

    @classmethod
    def from_config(cls, dim: int, cfg):
        return cls(dim)

    def log_prob(self, out, x):
        return jnp.sum(logistic_bin_log_prob(x, out, jnp.maximum(self.log_scale[...], self.MIN_LOG_SCALE)), -1)

    def mean(self, out):
        return jnp.clip(out, 0.0, 1.0)

    def bias_for_mean(self, pixel_mean):
        return pixel_mean


def logistic_bin_log_prob(x, loc, log_scale):
    """log P(bin of x) per pixel, x on the grid k/255: log(σ(a) − σ(b)) with a, b the bin edges.

    Written as log σ(a) + log σ(−b) + log(1 − e^(b−a)), exact and finite for any location
    (b − a = −1/(255·s) does not depend on x); the first bin takes (−∞, a], the last [b, ∞).
    """
    half = 0.5 / BINS
    inv_s = jnp.exp(-log_scale)
    a = (x - loc + half) * inv_s
    b = (x - loc - half) * inv_s
    log_cdf_a = jax.nn.log_sigmoid(a)
    log_sf_b = jax.nn.log_sigmoid(-b)
    interior = log_cdf_a + log_sf_b + jnp.log(-jnp.expm1(-2 * half * inv_s))
    return jnp.where(x < half, log_cdf_a, jnp.where(x > 1 - half, log_sf_b, interior))
