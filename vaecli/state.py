"""The training state: parameters, optimizer, step and key, built from a config or restored.

The state is a plain dict pytree so that one compiled function can carry it through
`lax.scan`, donate it, checkpoint it, and (later) stack it along a replica axis.
"""
from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import optax

from vaecli import models
from vaecli.checkpoints import Checkpoints
from vaecli.config import Config, OptimConfig
from vaecli.errors import RunError

_OPTIMIZERS = {"adam": optax.adam, "adamw": optax.adamw, "sgd": optax.sgd, "rmsprop": optax.rmsprop}


def make_optimizer(cfg: OptimConfig) -> optax.GradientTransformation:
    """Gradient clipping (optional) -> L2 prior (optional, MAP) -> the named optimizer.

    `weight_decay` > 0 adds weight_decay·θ to the gradient of the per-example loss, i.e.
    a Gaussian prior N(0, 1/weight_decay) on every weight per example (MAP); 0 is MLE.
    For `adamw` it is AdamW's decoupled decay instead. The learning rate is an injected
    hyperparameter, as is the weight decay: both live in the optimizer state, so they can
    be logged and can differ between replicas of one compiled program.
    """
    if cfg.name == "adamw":
        core = optax.inject_hyperparams(optax.adamw)(learning_rate=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        core = optax.inject_hyperparams(_OPTIMIZERS[cfg.name])(learning_rate=cfg.lr)
    parts = []
    if cfg.grad_clip is not None:
        parts.append(optax.clip_by_global_norm(cfg.grad_clip))
    if cfg.name != "adamw":  # present even at 0 (adds exactly 0), so replicas can differ in it
        parts.append(optax.inject_hyperparams(optax.add_decayed_weights)(weight_decay=cfg.weight_decay))
    return optax.chain(*parts, core)


def init_state(cfg: Config, image_shape) -> tuple[models.Functional, optax.GradientTransformation, dict]:
    fn = models.functional(cfg.model, image_shape, cfg.seed)
    tx = make_optimizer(cfg.optim)
    state = {
        "params": fn.params,
        "opt_state": tx.init(fn.params),
        "step": jnp.zeros((), jnp.int32),
        "rng": jax.random.key_data(jax.random.key(cfg.seed)),
        "skipped": jnp.zeros((), jnp.int32),  # non-finite updates dropped so far (train.skip_nonfinite)
    }
    return fn, tx, state


def resolve_step(ckpts: Checkpoints, step: str | int | None) -> int:
    steps = ckpts.steps()
    if not steps:
        raise RunError(f"no checkpoint in {ckpts.directory} (the run saved none yet; train it first)")
    if step is None or step == "latest":
        return steps[-1]
    if step == "best":
        best = ckpts.best_step()
        if best is None or best not in steps:
            raise RunError(f"--step best: no checkpoint carries a validation ELBO in {ckpts.directory}; "
                           f"use --step latest or one of {_list(steps)}")
        return best
    try:
        wanted = int(step)
    except (TypeError, ValueError):
        raise RunError(f"--step {step!r}: expected 'best', 'latest' or a step number ({_list(steps)})") from None
    if wanted not in steps:
        raise RunError(f"--step {wanted}: no checkpoint at that step (available: {_list(steps)})")
    return wanted


def _list(steps) -> str:
    return ", ".join(str(s) for s in steps)


def load_state(cfg: Config, image_shape, checkpoint_dir: Path, step=None):
    """Restore (Functional, state, step, record) from a run's checkpoints."""
    fn, _, like = init_state(cfg, image_shape)
    with Checkpoints(checkpoint_dir, read_only=True) as ckpts:
        chosen = resolve_step(ckpts, step)
        state, record = ckpts.restore(chosen, like)
    return fn, state, chosen, record
