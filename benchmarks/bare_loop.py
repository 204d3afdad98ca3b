"""A bare fused training loop of vaecli's own network: the floor a trainer's step is measured against.

Same flax model as vaecli builds from the config (`models.functional`, same init), same
objective (`objectives.training_loss`), same on-device uint8 data and on-device shuffling,
one `lax.scan` over the steps of an epoch in one compiled call, the state donated. What it
leaves out is everything a trainer adds: plain `optax.adam` (no clipping, no weight-decay
stage, no injected hyperparameters), no finiteness checks, no skip, no (seed, step) keys,
no metrics beyond the mean loss.

    from bare_loop import make_bare_epoch
    epoch, state = make_bare_epoch(cfg, split, n_train)
    state, loss = epoch(state, images)        # images: the split's uint8 (N, D) on the device
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from vaecli.compiled.epoch import MATMUL_PRECISION
from vaecli.config import Config
from vaecli.models import objectives, vae as models


def make_bare_epoch(cfg: Config, split, n_train: int | None = None):
    """(compiled epoch(state, images) -> (state, mean loss), initial state) for `cfg`'s network.

    `n_train` (default: the whole split) sets the epoch length: n_train // batch steps, so a
    benchmark can time a fraction of an epoch (pass images[:n_train] then)."""
    n_train = n_train or len(split)
    batch = cfg.train.batch_size
    steps = n_train // batch
    fn = models.functional(cfg.model, split.image_shape, cfg.seed, train=(split.flat, split.scale))
    eps = {} if cfg.optim.name == "sgd" else {"eps": cfg.optim.eps}
    tx = optax.adam(cfg.optim.lr, **eps)
    obj = cfg.objective
    dynamic = cfg.data.binarize == "dynamic"

    def loss_fn(params, x, key):
        loss, _, _ = objectives.training_loss(fn.bind(params), x, key, obj, kl_weight=obj.beta)
        return loss

    def step(carry, order, images):
        params, opt_state, key = carry
        key, k_bin, k_z = jax.random.split(key, 3)
        x = images[order].astype(jnp.float32) / split.scale
        if dynamic:
            x = jax.random.bernoulli(k_bin, x).astype(jnp.float32)
        loss, grads = jax.value_and_grad(loss_fn)(params, x, k_z)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state, key), loss

    def epoch(state, images):
        with jax.default_matmul_precision(MATMUL_PRECISION[cfg.train.precision]):  # as vaecli's epoch
            return epoch_body(state, images)

    def epoch_body(state, images):
        key, k_perm = jax.random.split(state[2])
        order = jax.random.permutation(k_perm, n_train)[: steps * batch].reshape(steps, batch)
        state, losses = jax.lax.scan(lambda c, o: step(c, o, images), (state[0], state[1], key), order)
        return state, jnp.mean(losses)

    state = (fn.params, tx.init(fn.params), jax.random.key(cfg.seed))
    return jax.jit(epoch, donate_argnums=0), state
