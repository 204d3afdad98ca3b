"""Compiled, chunked evaluation of the ELBO and the K-sample importance-sampled log p(x).

One compiled program covers a whole split: a `lax.scan` over batches of examples, and
inside it a `lax.scan` over chunks of the K samples, so memory is bounded by
batch_size × chunk rows whatever K is, and nothing returns to the host until the end.

Randomness is per (example, sample index): the numbers do not depend on the batch size,
the chunk size or the device, only on (seed, split, K) and the checkpoint.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from vaecli.models import Functional

TRACES = {"bounds": 0}  # incremented at trace time; tests read it to prove one compile


def chunk_size(k: int, batch_size: int, max_rows: int) -> int:
    """How many of the K samples to draw at once so that batch_size·chunk ≤ max_rows."""
    return max(1, min(k, max_rows // max(batch_size, 1)))


def default_max_rows() -> int:
    # Rows of (batch × samples) decoded at once. 2^16 rows of a 784-pixel MLP decoder is
    # ~0.5 GB of activations on the CPU; a GPU wants bigger chunks to stay busy.
    return 2**16 if jax.default_backend() == "cpu" else 2**19


def make_bounds_fn(fn: Functional, k: int, k_chunk: int, scale: int, deterministic: bool = False):
    """Compiled f(params, batches uint8 (nb, B, D), key) -> per-example arrays (nb, B).

    Any model offering `encode`, `noise_dim`, `log_terms` and `kl_per_dim` (vaecli.models):
    the log-weight of a sample is log p(x|z) + log p(z) − log q(z|x) over all its latents.
    The KL is the closed form where the model has one, else the mean of log q − log p over
    the K draws. `deterministic` (the autoencoder baseline): z = the encoder's mean, no noise,
    and the KL is 0 (the autoencoder has none), so −(recon + kl) is its objective, not a bound.
    """
    n_chunks = math.ceil(k / k_chunk)

    def one_batch(params, x_u8, first_index, key):
        vae = fn.bind(params)
        x = x_u8.astype(jnp.float32) / scale
        q = vae.encode(x)
        b, d = x.shape[0], vae.noise_dim
        kl_closed = vae.kl_per_dim(q)
        example_keys = jax.vmap(jax.random.fold_in, (None, 0))(key, first_index + jnp.arange(b))

        def draw(sample_ids):  # eps[s, b] from key (example b, sample s): layout-independent
            per_example = lambda s: jax.vmap(lambda kb: jax.random.normal(jax.random.fold_in(kb, s), (d,)))(
                example_keys)
            eps = jax.vmap(per_example)(sample_ids)
            return jnp.zeros_like(eps) if deterministic else eps

        def body(carry, c):
            lse, log_px_sum, kl_sum = carry
            ids = c * k_chunk + jnp.arange(k_chunk)
            log_px, log_pz, log_qz = vae.log_terms(x, q, draw(ids))
            valid = (ids < k)[:, None]
            log_w = jnp.where(valid, log_px + log_pz - log_qz, -jnp.inf)
            log_px = jnp.where(valid, log_px, 0.0)
            kl_mc = jnp.where(valid, log_qz - log_pz, 0.0)
            return (jnp.logaddexp(lse, jax.nn.logsumexp(log_w, axis=0)), log_px_sum + log_px.sum(0),
                    kl_sum + kl_mc.sum(0)), None

        init = (jnp.full((b,), -jnp.inf), jnp.zeros((b,)), jnp.zeros((b,)))
        (lse, log_px_sum, kl_sum), _ = jax.lax.scan(body, init, jnp.arange(n_chunks))
        kl = kl_sum / k if kl_closed is None else jnp.sum(kl_closed, -1)
        return {"recon": -log_px_sum / k, "kl": jnp.zeros_like(kl) if deterministic else kl,
                "log_likelihood": lse - math.log(k)}

    def run(params, batches, key):
        TRACES["bounds"] += 1
        bsz = batches.shape[1]

        def body(_, inp):
            i, xb = inp
            return None, one_batch(params, xb, i * bsz, key)

        _, out = jax.lax.scan(body, None, (jnp.arange(batches.shape[0]), batches))
        return out

    return jax.jit(run)


def batch_split(images: np.ndarray, batch_size: int) -> tuple[np.ndarray, int]:
    """Flatten and pad (N, ...) images to a whole number of batches -> ((nb, B, D), N)."""
    n = len(images)
    images = images.reshape(n, -1)
    bsz = min(batch_size, n)
    nb = math.ceil(n / bsz)
    padded = np.zeros((nb * bsz, *images.shape[1:]), images.dtype)
    padded[:n] = images
    return padded.reshape(nb, bsz, *images.shape[1:]), n


def compile_estimator(fn: Functional, params, images: np.ndarray, scale: int, k: int, batch_size: int,
                      max_rows: int | None = None, deterministic: bool = False):
    """Put `images` on the device and compile the estimator for them, ahead of time.

    Returns (estimate, k_chunk): `estimate(params, seed)` gives per-example recon, KL and the
    K-sample log p̂(x) as host arrays, running the one compiled program.
    """
    batches, n = batch_split(images, batch_size)
    k_chunk = chunk_size(k, batches.shape[1], max_rows or default_max_rows())
    batches = jax.device_put(batches)
    compiled = make_bounds_fn(fn, k, k_chunk, scale, deterministic).lower(params, batches, jax.random.key(0)).compile()

    def estimate(params, seed: int) -> dict[str, np.ndarray]:
        out = jax.device_get(compiled(params, batches, jax.random.key(seed)))
        return {name: np.asarray(v).reshape(-1)[:n] for name, v in out.items()}

    return estimate, k_chunk


def per_example(fn: Functional, params, images: np.ndarray, scale: int, k: int, seed: int,
                batch_size: int, max_rows: int | None = None) -> dict[str, np.ndarray]:
    """Per-example recon, KL and K-sample log p̂(x) over `images` (host uint8 or float)."""
    estimate, _ = compile_estimator(fn, params, images, scale, k, batch_size, max_rows)
    return estimate(params, seed)


def summarize(values: dict[str, np.ndarray], num_pixels: int) -> dict:
    """Means over examples, the standard error of log p̂(x), and bits per dimension."""
    n = len(values["log_likelihood"])
    ll = values["log_likelihood"].astype(np.float64)
    recon = float(values["recon"].astype(np.float64).mean())
    kl = float(values["kl"].astype(np.float64).mean())
    mean_ll = float(ll.mean())
    return {
        "elbo": -(recon + kl),
        "recon": recon,
        "kl": kl,
        "log_likelihood": mean_ll,
        "log_likelihood_stderr": float(ll.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan"),
        "nll": -mean_ll,
        "bits_per_dim": -mean_ll / (num_pixels * math.log(2)),
        "num_examples": n,
    }
