"""What XLA runs for the VQ-VAE's code prior (vaecli.models.pixelcnn): a split's images to
their codes, the prior's state, one compiled epoch of its training, its log-likelihood of
codes, and its sampler.

The state is a plain dict like the VAE's (params, opt_state, step, rng); the epoch shuffles
with a key of (seed, epoch), so a resumed prior draws the numbers an uninterrupted one would.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from vaecli import streams
from vaecli.compiled.estimator import batch_split
from vaecli.models import pixelcnn
from vaecli.models.vae import Functional

BATCH = 1000  # images encoded, or grids scored, per step of a `lax.map`


def codes(fn: Functional, params, images: np.ndarray, scale: int) -> np.ndarray:
    """uint8 images (N, ...) -> the indices of their codes (N, L), int32, on the host."""
    batches, n = batch_split(images, BATCH)
    run = jax.jit(lambda p, x: jax.lax.map(lambda xb: fn.bind(p).codes(xb.astype(jnp.float32) / scale), x))
    out = np.asarray(run(params, batches))
    return out.reshape(-1, out.shape[-1])[:n].astype(np.int32)


def reconstruction(fn: Functional, params, images: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (N, ...) -> (−log p(x|z_q) per image in nats, float64; codes (N, L), int32)."""
    batches, n = batch_split(images, BATCH)

    def one(p, xb):
        vae = fn.bind(p)
        x = xb.astype(jnp.float32) / scale
        idx = vae.codes(x)
        return -vae.log_px_codes(x, idx), idx

    recon, idx = jax.jit(lambda p, x: jax.lax.map(lambda xb: one(p, xb), x))(params, batches)
    return (np.asarray(recon, np.float64).reshape(-1)[:n],
            np.asarray(idx).reshape(-1, idx.shape[-1])[:n].astype(np.int32))


def init_state(cfg, k: int, length: int, seed: int):
    """(Functional, optimizer, state at step 0) of the prior of the `code_prior` section `cfg`."""
    key = jax.random.fold_in(jax.random.key(seed), streams.PRIOR_INIT)
    fn = Functional(pixelcnn.build(cfg, k, length, key), key=("code_prior", cfg, k, length))
    tx = optax.adam(cfg.lr)
    state = {"params": fn.params, "opt_state": tx.init(fn.params), "step": jnp.zeros((), jnp.int32),
             "rng": jax.random.key_data(jax.random.key(seed))}
    return fn, tx, state


def template_state(cfg, k: int, length: int, seed: int):
    """`init_state` as shapes: what a checkpoint is restored into."""
    built = {}

    def make():
        built["fn"], built["tx"], state = init_state(cfg, k, length, seed)
        return state

    like = jax.eval_shape(make)
    built["fn"].params = like["params"]
    return built["fn"], built["tx"], like


def make_epoch_fn(fn: Functional, tx, batch_size: int, n: int):
    """Compiled f(state, codes (N, L)) -> (state, mean −log p(c) of the epoch's steps)."""
    steps = n // batch_size

    def loss(params, c):
        return -jnp.mean(fn.bind(params).log_prob(c))

    def step(state, order, data):
        value, grads = jax.value_and_grad(loss)(state["params"], data[order])
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        return {**state, "params": optax.apply_updates(state["params"], updates), "opt_state": opt_state,
                "step": state["step"] + 1}, value

    def epoch(state, data):
        base = jax.random.wrap_key_data(state["rng"])
        key = jax.random.fold_in(jax.random.fold_in(base, streams.PRIOR_SHUFFLE), state["step"] // steps)
        order = jax.random.permutation(key, n)[: steps * batch_size].reshape(steps, batch_size)
        state, values = jax.lax.scan(lambda s, o: step(s, o, data), state, order)
        return state, jnp.mean(values)

    return jax.jit(epoch, donate_argnums=0)


def log_prob(fn: Functional, params, grids: np.ndarray) -> np.ndarray:
    """log p(c) in nats for each grid of codes (N, L), float64 on the host."""
    batches, n = batch_split(np.asarray(grids, np.int32), BATCH)
    run = jax.jit(lambda p, c: jax.lax.map(lambda cb: fn.bind(p).log_prob(cb), c))
    return np.asarray(run(params, batches), np.float64).reshape(-1)[:n]


def sample(fn: Functional, params, seed: int, n: int, temperature: float) -> np.ndarray:
    """n grids of codes (n, L) drawn from the prior with `seed`."""
    run = jax.jit(lambda p, key, t: fn.bind(p).sample(key, n, t))
    return np.asarray(run(params, jax.random.key(seed), jnp.float32(temperature)))
