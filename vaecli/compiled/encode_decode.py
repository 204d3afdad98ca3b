"""A trained model's encoder, decoder and prior sampler as compiled programs on host arrays:
what pictures, `vae sample` and the Python API call.

The jitted functions are built once per model (keyed by its Functional's key, in
vaecli.compiled.cache), so pictures drawn at every evaluation compile once; each compiles
once per input shape. The encoder runs over batches of ENCODE_BATCH images (`lax.map`), so
a whole split never sits in one activation.
"""
from __future__ import annotations

import numpy as np

from vaecli.compiled import cache

ENCODE_BATCH = 1000


def _compiled(fn):
    # a Functional without a key is its own (the entry holds it, so its id is not reused)
    return cache.get(cache.key("pictures", fn) or ("pictures", fn), lambda: _jitted(fn))


def _jitted(fn):
    import jax

    decode = jax.jit(lambda p, z: fn.bind(p).mean_image(z))
    generate = jax.jit(lambda p, key, n: fn.bind(p).generate(key, n), static_argnums=2)
    encode = jax.jit(lambda p, x: jax.lax.map(lambda xb: _code(fn.bind(p), xb), x))
    return decode, generate, encode


def _code(vae, x):
    """(the posterior's point, the Gaussian's logvar): with a flow posterior the point is the
    flow applied to the base mean, where the decoder was trained (vaecli.models.vae)."""
    q = vae.encode(x)
    return vae.point(q), q[1]


class CompiledModel:
    """Compiled encode/decode/generate of a model `fn` (a models.vae.Functional) at `params`.
    `num_classes`: a conditional model's (vaecli.models.conditional); encode and decode then
    take the class labels `y` too, and generate draws the classes in turn."""

    def __init__(self, fn, params, image_shape, num_classes: int | None = None):
        self.params, self.image_shape, self.num_classes = params, tuple(image_shape), num_classes
        self._decode, self._generate, self._encode = _compiled(fn)

    def _labelled(self, rows: np.ndarray, y) -> np.ndarray:
        """rows (..., F) followed by the one-hot label y (broadcast over the leading axes)."""
        if not self.num_classes:
            return rows
        onehot = np.eye(self.num_classes, dtype=np.float32)[np.broadcast_to(np.asarray(y), rows.shape[:-1])]
        return np.concatenate([rows, onehot], axis=-1)

    def decode(self, z, y=None) -> np.ndarray:
        """z (..., latent) [and labels y (...)] -> mean images E[x|z(, y)] (..., H, W, C)."""
        z = self._labelled(np.asarray(z, np.float32), y)
        flat = np.asarray(self._decode(self.params, z.reshape(-1, z.shape[-1])))
        return flat.reshape(*z.shape[:-1], *self.image_shape)

    def generate(self, key, n: int) -> np.ndarray:
        """n mean images of prior draws from the JAX key `key`."""
        flat = np.asarray(self._generate(self.params, key, n))
        return flat.reshape(n, *self.image_shape)

    def encode(self, x, y=None) -> tuple[np.ndarray, np.ndarray]:
        """(N, H, W, C) floats [and labels y (N,)] -> encoder (mean, logvar), each (N, latent).
        With a flow posterior, "mean" is the base Gaussian's mean pushed through the flow (not
        E_q[z], which has no closed form) and logvar the base Gaussian's."""
        from vaecli.compiled.estimator import batch_split

        x = np.asarray(x, np.float32)
        rows = self._labelled(x.reshape(len(x), -1), y)
        batches, n = batch_split(rows, ENCODE_BATCH)
        mean, logvar = self._encode(self.params, batches)
        return tuple(np.asarray(a).reshape(-1, a.shape[-1])[:n] for a in (mean, logvar))
