"""The compiled epoch: one call runs every step of an epoch (`lax.scan`).

Speed is designed in here:
- the training split lives on the device as uint8; batches are gathered on the device;
- one compiled call runs a whole epoch: shuffling, binarization and sampling happen inside
  it, with no host round-trip per step;
- the state is donated, so parameters and optimizer state are updated in place;
- randomness comes from (seed, step) and (seed, epoch), so the same run restarted from
  a checkpoint draws exactly the numbers an uninterrupted run would.
"""
from __future__ import annotations

import importlib

import jax
import jax.numpy as jnp
import optax

from vaecli import registry, streams
from vaecli.config import Config
from vaecli.models import objectives

TRACES = {"epoch": 0}  # incremented at trace time: a test shows one trace per run

# train.precision -> jax.default_matmul_precision, in force while the epoch is traced (the
# precision of each dot is fixed when it is traced). "tensorfloat32" is TF32 on NVIDIA GPUs and
# plain float32 on CPUs; the bf16 preset is bf16 inputs with float32 accumulation everywhere.
MATMUL_PRECISION = {"float32": "float32", "tf32": "tensorfloat32", "bfloat16": "BF16_BF16_F32"}


def to_inputs(x_u8, key, scale: int, dynamic: bool):
    """uint8 pixels -> float inputs: intensities in [0, 1], or with dynamic binarization a
    fresh Bernoulli draw of them (each image is binarized anew every time it is seen)."""
    x = x_u8.astype(jnp.float32) / scale
    return jax.random.bernoulli(key, x).astype(jnp.float32) if dynamic else x


def make_epoch_fn(fn, tx: optax.GradientTransformation, cfg: Config, n_train: int, scale: int, replicas: int = 1,
                  batch_sharding=None):
    """Compiled f(state, images) -> (state, epoch metrics): one epoch of steps in one call.

    Every step checks that recon, KL and the update are finite. With
    `train.skip_nonfinite: N` a bad update is dropped inside the step (parameters and
    optimizer state stay as they were) while fewer than N have been dropped in the run;
    otherwise it is applied, and the host stops the run at the log point, naming the first
    bad step and term.

    With `replicas` > 1 the state carries a leading replica axis (one slice per seed /
    learning rate / weight decay) and the same program advances all of them.
    With `batch_sharding` (several devices) each step's batch is split over the mesh.
    """
    steps = _Steps(fn, tx, cfg, n_train, scale, replicas, batch_sharding)

    def epoch(state, images):
        TRACES["epoch"] += 1
        with jax.default_matmul_precision(MATMUL_PRECISION[cfg.train.precision]):
            return steps.epoch(state, images)

    if replicas > 1:  # states stacked on a leading axis, the data shared
        return jax.jit(jax.vmap(epoch, in_axes=(0, None)), donate_argnums=0)
    return jax.jit(epoch, donate_argnums=0)


class _Steps:
    """What one epoch traces: the settings it bakes in, the step, and the scan over steps."""

    def __init__(self, fn, tx, cfg: Config, n_train: int, scale: int, replicas: int, batch_sharding):
        self.fn, self.tx, self.objective = fn, tx, cfg.objective
        self.logs = registry.objective(cfg).logs  # the objective's terms beyond loss, recon and kl
        self.n_train, self.scale, self.batch = n_train, scale, cfg.train.batch_size
        self.steps_per_epoch = n_train // self.batch
        self.dynamic = cfg.data.binarize == "dynamic"
        self.skip_limit = cfg.train.skip_nonfinite
        self.ema_decay = cfg.train.ema_decay
        self.batch_sharding = batch_sharding
        # The weight decay lives in the optimizer state (replicas may differ in it); with one
        # replica it is the config's (optim.weight_decay cannot change on resume), so a 0 is
        # known here and the optimizer skips its weight-decay stage (optimizer.decayed_weights).
        self.update_args = {"weight_decay_is_zero": True} if replicas == 1 and cfg.optim.weight_decay == 0 else {}
        # objective.capacity: the target KL's ramp, in steps (baked in: the capacity keys are fixed)
        self.capacity = (cfg.objective.capacity, cfg.objective.capacity_epochs * self.steps_per_epoch)
        aux = registry.objective(cfg).aux  # an auxiliary network and its optimizer, in state["aux"]
        self.aux = None
        if aux is not None:
            module = importlib.import_module(aux)
            self.aux = (module, module.network(cfg.objective, cfg.model.latent_dim, cfg.seed),
                        module.optimizer(cfg.objective))

    def kl_weight(self, step, hyper):
        """β, ramped up linearly from 0 over the warm-up: a function of the step counter
        inside the compiled epoch, so the schedule costs no recompilation. β and the warm-up
        are values of the state (state["hyper"]), so replicas may differ in them."""
        warmup_steps = hyper["warmup_epochs"] * self.steps_per_epoch
        ramp = jnp.minimum(1.0, step.astype(jnp.float32) / jnp.maximum(warmup_steps, 1e-30))
        return jnp.where(warmup_steps > 0, hyper["beta"] * ramp, hyper["beta"])

    def target_capacity(self, step):
        c, ramp_steps = self.capacity
        return c * jnp.minimum(1.0, step.astype(jnp.float32) / ramp_steps) if ramp_steps > 0 else c

    def loss(self, params, x, key, step, hyper, aux=None):
        # the discriminator at its parameters, which this loss does not train
        critic = self.aux[1].bind(jax.lax.stop_gradient(aux["params"])) if aux is not None else None
        terms = objectives.training_terms(self.fn.bind(params), x, key, self.objective, self.kl_weight(step, hyper),
                                          dataset_size=self.n_train, capacity=self.target_capacity(step),
                                          critic=critic, replica=hyper)
        return terms["loss"], terms

    def step(self, state, order, images):
        base = jax.random.wrap_key_data(state["rng"])
        key = jax.random.fold_in(jax.random.fold_in(base, streams.STEP_NOISE), state["step"])
        k_binarize, k_z = jax.random.split(key)
        batch_u8 = images[order]
        if self.batch_sharding is not None:  # data parallel: each device gets a slice of the batch
            batch_u8 = jax.lax.with_sharding_constraint(batch_u8, self.batch_sharding)
        x = to_inputs(batch_u8, k_binarize, self.scale, self.dynamic)
        (loss, terms), grads = jax.value_and_grad(self.loss, has_aux=True)(state["params"], x, k_z, state["step"],
                                                                           state["hyper"], state.get("aux"))
        recon, kl = terms["recon"], terms["kl"]
        if self.aux is not None:  # the auxiliary network's own update, on the step's codes
            module, net, aux_tx = self.aux
            aux_key = jax.random.fold_in(key, streams.DISCRIMINATOR_STEP)
            aux, aux_logs = module.step(net, aux_tx, state["aux"], terms["aux_input"], aux_key)
            terms = {**terms, **aux_logs}
        updates, opt_state = self.tx.update(grads, state["opt_state"], state["params"], **self.update_args)
        params = optax.apply_updates(state["params"], updates)
        if "assign" in terms:  # values the model sets rather than learns (a VQ codebook's moving averages)
            params = assigned(params, terms["assign"])
        # The update is judged by the parameters it gives (finite before it, so finite after
        # it iff the update is, overflow included): XLA fuses the update into the parameter
        # write, and checking the new parameters costs one read of them, where checking the
        # update itself would write it out and read it again.
        finite = jnp.stack([jnp.isfinite(recon), jnp.isfinite(kl), all_finite(params)])
        skipped = state["skipped"]
        skip = jnp.zeros((), bool)
        if self.skip_limit > 0:
            skip = ~jnp.all(finite) & (skipped < self.skip_limit)
            keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(skip, b, a), new, old)
            params, opt_state = keep(params, state["params"]), keep(opt_state, state["opt_state"])
            skipped = skipped + skip.astype(jnp.int32)
        new = {"params": params, "opt_state": opt_state, "step": state["step"] + 1, "rng": state["rng"],
               "skipped": skipped, "hyper": state["hyper"]}
        if self.aux is not None:
            new["aux"] = aux
        if "ema" in state:  # train.ema_decay > 0: the moving average of the parameters
            new["ema"] = jax.tree.map(lambda e, p: self.ema_decay * e + (1 - self.ema_decay) * p, state["ema"], params)
        return new, (jnp.stack([loss, recon, kl, *(terms[k] for k in self.logs)]), finite, skip)

    def epoch(self, state, images):
        base = jax.random.wrap_key_data(state["rng"])
        first_step = state["step"]
        epoch_index = first_step // self.steps_per_epoch
        perm = jax.random.permutation(jax.random.fold_in(jax.random.fold_in(base, streams.SHUFFLE), epoch_index),
                                      self.n_train)
        order = perm[: self.steps_per_epoch * self.batch].reshape(self.steps_per_epoch, self.batch)
        state, (per_step, finite, skip) = jax.lax.scan(lambda s, o: self.step(s, o, images), state, order)
        good = jnp.all(finite, axis=1)
        bad = ~good & ~skip  # applied although not finite: the run must stop
        first_bad = jnp.argmax(bad)
        sums = jnp.sum(jnp.where(good[:, None], per_step, 0.0), axis=0)
        means = sums / jnp.maximum(jnp.sum(good), 1)
        extra = {k: means[3 + i] for i, k in enumerate(self.logs)}  # only an objective with such terms has them
        return state, {"loss": means[0], "recon": means[1], "kl": means[2], **extra,
                       "bad_step": jnp.where(jnp.any(bad), first_step + first_bad + 1, -1),
                       "bad_finite": finite[first_bad], "skipped_steps": jnp.sum(skip),
                       "skipped_total": state["skipped"],
                       "step": state["step"], "lr": learning_rate(state["opt_state"])}


def all_finite(tree) -> jax.Array:
    """True iff every number in `tree` is finite, decided from one number per leaf: 0·x is 0
    for finite x and NaN for ±Inf or NaN, and a sum of zeros cannot overflow (a plain Σ x, or
    a norm, could be Inf for finite x). A matrix leaf is read by the product 0ᵀ·W, which XLA's
    CPU backend runs as a vectorised matrix-vector kernel where it emits Σ 0·W as a scalar
    loop (docs/performance.md, "Time per training step"). The product runs at the step's
    matmul precision: under train.precision=bfloat16 a finite weight beyond bfloat16's range
    (> 3.39e38) counts as not finite."""
    total = jnp.zeros((), jnp.float32)
    for a in jax.tree.leaves(tree):
        if a.ndim >= 2:
            total = total + jnp.sum(jnp.zeros((a.size // a.shape[-1],), a.dtype) @ a.reshape(-1, a.shape[-1]))
        else:
            total = total + jnp.sum(a * jnp.zeros((), a.dtype))
    return jnp.isfinite(total)


def assigned(params: dict, values: dict) -> dict:
    """`params` with the leaves that `values` (a nested dict over part of them) holds replaced."""
    return {k: (assigned(v, values[k]) if isinstance(v, dict) else values[k]) if k in values else v
            for k, v in params.items()}


def learning_rate(opt_state) -> jax.Array:
    """The current learning rate, from the inject_hyperparams state that holds it (a
    schedule also keeps a state of its own under that name, hence no plain tree_get)."""
    for part in opt_state if isinstance(opt_state, tuple) else (opt_state,):
        hyper = getattr(part, "hyperparams", None)
        if isinstance(hyper, dict) and "learning_rate" in hyper:
            return hyper["learning_rate"]
        if isinstance(part, tuple):
            found = learning_rate(part)
            if found is not None:
                return found
    return None
