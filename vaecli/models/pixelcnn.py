"""The VQ-VAE's prior over its codes: an autoregressive model p(c) = Π_i p(c_i | c_<i) over
the L codes of a grid in raster order (`vae train-prior`, the `code_prior` config section).

A gated PixelCNN in one dimension (WaveNet's form of it): the codes are embedded, shifted one
place right behind a learned start vector (so position i reads codes < i only) and given a
learned position vector (so it knows which cell of the grid it is on); then `layers` residual
blocks of a causal convolution of kernel 2 and dilation 2^j (written as the dense maps of the
input 2^j places back and of the input here), gated tanh(a)·sigmoid(b), and a linear map to K
logits. The causal convolutions look back only: position i of block j sees positions
i − 2^(j+1) + 1 .. i of its input, so after `layers` blocks position i sees
codes i − 2^layers .. i − 1, and no later one (the masking the tests check).

Why one dimension for the conv net's 2-D grid too: its grids are small (7x7 = 49 codes for
28x28 images), so dilations cover all earlier codes in a few layers with no blind spot (a
2-D masked convolution stack has one unless it splits into vertical and horizontal stacks),
and one model serves the MLP's 1-D sequence and the conv net's grid alike. What the raster
order loses, that the code above is close, the position vectors and the receptive field over
all earlier codes make up for at these sizes.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


def receptive_field(layers: int) -> int:
    """How many earlier codes the last block sees."""
    return 2**layers


class CodePrior(nnx.Module):
    def __init__(self, k: int, length: int, channels: int, layers: int, *, rngs: nnx.Rngs):
        self.k, self.length, self.layers = k, length, layers
        self.embed = nnx.Param(jax.random.normal(rngs.params(), (k, channels)))
        self.start = nnx.Param(jnp.zeros((channels,)))
        self.position = nnx.Param(0.01 * jax.random.normal(rngs.params(), (length, channels)))
        for j in range(layers):  # named layers: readable checkpoint keys
            # the kernel-2 causal convolution of dilation 2^j as two dense maps, of the input 2^j
            # places back and of the input here: plain matrix products, which XLA's CPU backend
            # runs far faster than a dilated convolution and its gradient
            setattr(self, f"past{j}", nnx.Linear(channels, 2 * channels, rngs=rngs))
            setattr(self, f"here{j}", nnx.Linear(channels, 2 * channels, use_bias=False, rngs=rngs))
            setattr(self, f"mix{j}", nnx.Linear(channels, channels, rngs=rngs))
        self.out = nnx.Linear(channels, k, rngs=rngs)

    def logits(self, codes):
        """Codes (B, L) int -> logits (B, L, K) of each code given the codes before it."""
        h = jax.nn.one_hot(codes, self.k, dtype=jnp.float32) @ self.embed[...]  # a product, not a gather: fast gradient
        start = jnp.broadcast_to(self.start[...], (h.shape[0], 1, h.shape[-1]))
        h = jnp.concatenate([start, h[:, :-1]], axis=1) + self.position[...]
        for j in range(self.layers):
            d = 2**j
            back = jnp.pad(h, ((0, 0), (d, 0), (0, 0)))[:, : h.shape[1]]  # the input d places back (zeros before 0)
            a, b = jnp.split(getattr(self, f"past{j}")(back) + getattr(self, f"here{j}")(h), 2, axis=-1)
            h = h + getattr(self, f"mix{j}")(jnp.tanh(a) * jax.nn.sigmoid(b))
        return self.out(jax.nn.relu(h))

    def log_prob(self, codes):
        """log p(c) per grid (B,), in nats."""
        logp = jax.nn.log_softmax(self.logits(codes), axis=-1)
        return jnp.sum(jnp.take_along_axis(logp, codes[..., None], axis=-1)[..., 0], axis=-1)

    def sample(self, key, n: int, temperature: float = 1.0):
        """n grids of codes (n, L), each code drawn from softmax(logits / temperature) given
        the ones drawn before it (L passes of the network)."""

        def body(i, codes):
            logits = self.logits(codes)[:, i] / temperature
            drawn = jax.random.categorical(jax.random.fold_in(key, i), logits)
            return codes.at[:, i].set(drawn)

        return jax.lax.fori_loop(0, self.length, body, jnp.zeros((n, self.length), jnp.int32))


def build(cfg, k: int, length: int, key) -> CodePrior:
    """The prior of a `code_prior` config section over grids of `length` codes of K values."""
    return CodePrior(k, length, cfg.channels, cfg.layers, rngs=nnx.Rngs(params=key))
