"""The optimizer of `optim.*`: clipping, the L2 prior on the weights (MAP), the named
optimizer, the learning-rate schedule; the learning rate and weight decay as injected
hyperparameters, so they live in the optimizer state (logged, and different per replica).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from vaecli.config import OptimConfig

_OPTIMIZERS = {"adam": optax.adam, "adamw": optax.adamw, "sgd": optax.sgd, "rmsprop": optax.rmsprop}


def learning_rate_schedule(cfg: OptimConfig, steps_per_epoch: int):
    """The learning rate: constant, or the IWAE paper's stages (stage i: 3^i epochs at lr·10^(−i/7))."""
    if cfg.schedule == "constant":
        return cfg.lr
    boundaries, epochs = {}, 0
    for i in range(7):  # 8 stages, 3280 epochs; the last one lasts as long as the run does
        epochs += 3**i
        boundaries[epochs * steps_per_epoch] = 10 ** (-1 / 7)
    return optax.piecewise_constant_schedule(cfg.lr, boundaries)


def make_optimizer(cfg: OptimConfig, steps_per_epoch: int = 1) -> optax.GradientTransformation:
    """Per-tensor normalisation (optional) -> gradient clipping (optional) -> L2 prior
    (optional, MAP) -> the named optimizer.

    `weight_decay` > 0 adds weight_decay·θ to the gradient of the per-example loss, i.e.
    a Gaussian prior N(0, 1/weight_decay) on every weight per example (MAP); 0 is MLE.
    For `adamw` it is AdamW's decoupled decay instead. The learning rate is an injected
    hyperparameter, as is the weight decay: both live in the optimizer state, so they can
    be logged and can differ between replicas of one compiled program.
    """
    lr = learning_rate_schedule(cfg, steps_per_epoch)
    # ε is a static argument: it stays out of the optimizer state, whose layout checkpoints fix.
    eps = {} if cfg.name == "sgd" else {"eps": cfg.eps}
    inject = lambda opt: optax.inject_hyperparams(opt, static_args=tuple(eps))
    if cfg.name == "adamw":
        core = inject(optax.adamw)(learning_rate=lr, weight_decay=cfg.weight_decay, **eps)
    else:
        core = inject(_OPTIMIZERS[cfg.name])(learning_rate=lr, **eps)
    parts = []
    if cfg.normalize_grads:  # only then: the state of every other run, hence its checkpoints, is unchanged
        parts.append(normalized_per_tensor())
    if cfg.grad_clip is not None:
        parts.append(optax.clip_by_global_norm(cfg.grad_clip))
    if cfg.name != "adamw":  # present even at 0 (adds exactly 0), so replicas can differ in it
        parts.append(optax.inject_hyperparams(decayed_weights)(weight_decay=cfg.weight_decay))
    return optax.chain(*parts, core)


def decayed_weights(weight_decay) -> optax.GradientTransformationExtraArgs:
    """optax.add_decayed_weights (g + weight_decay·θ, the same empty state), except that a caller
    that knows the decay is 0 in every copy of the state passes `weight_decay_is_zero=True` to
    the optimizer's update and the stage is skipped: adding 0 still reads every parameter twice
    more per step (XLA recomputes it inside Adam's two moment loops), a fifth of the IWAE-paper
    network's step on a CPU. The state, hence a checkpoint, does not change."""

    def update(updates, state, params=None, *, weight_decay_is_zero: bool = False, **extra):
        if weight_decay_is_zero:
            return updates, state
        return jax.tree.map(lambda g, p: g + weight_decay * p, updates, params), state

    return optax.GradientTransformationExtraArgs(lambda params: optax.EmptyState(), update)


def normalized_per_tensor() -> optax.GradientTransformation:
    """Each gradient tensor divided by its L2 norm (+1e-7): what the VampPrior authors' code
    trains with (Adam on these, their AdamNormGrad, after Yu et al. 2017), so each weight
    matrix and bias moves at a rate of its own whatever the scale of its gradient."""
    return optax.stateless(lambda updates, params=None: jax.tree.map(
        lambda g: g / (jnp.sqrt(jnp.sum(g * g)) + 1e-7), updates))
