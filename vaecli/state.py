"""The training state: parameters, optimizer, step and key, built from a config or restored.

The state is a plain dict pytree so that one compiled function can carry it through
`lax.scan`, donate it, checkpoint it, and stack it along a replica axis.

`state["hyper"]` holds the objective's hyperparameters that replicas of one program may
differ in (HYPER_KEYS: β, the KL warm-up, free bits) as arrays the compiled step reads. It
is a function of the run's config.yaml, so checkpoints do not store it (`checkpointed`):
the checkpoint layout stays run format 2, old run folders load unchanged, and a restore
takes it from the config again (`with_hyper`), which is bit-identical by construction.
"""
from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import optax

from vaecli import models
from vaecli.checkpoints import Checkpoints
from vaecli.config import Config, OptimConfig
from vaecli.errors import RunError, UsageError

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
    """Gradient clipping (optional) -> L2 prior (optional, MAP) -> the named optimizer.

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
    if cfg.grad_clip is not None:
        parts.append(optax.clip_by_global_norm(cfg.grad_clip))
    if cfg.name != "adamw":  # present even at 0 (adds exactly 0), so replicas can differ in it
        parts.append(optax.inject_hyperparams(decayed_weights)(weight_decay=cfg.weight_decay))
    return optax.chain(*parts, core)


HYPER_KEYS = ("beta", "warmup_epochs", "free_bits")  # objective.* values carried by the state


def hyper(cfg: Config) -> dict:
    """The state's per-replica objective values, from the config."""
    return {k: jnp.asarray(getattr(cfg.objective, k), jnp.float32) for k in HYPER_KEYS}


def checkpointed(state: dict) -> dict:
    """The part of the state a checkpoint stores (all but `hyper`, which config.yaml gives)."""
    return {k: v for k, v in state.items() if k != "hyper"}


def with_hyper(state: dict, cfg: Config) -> dict:
    """A restored checkpoint's state, completed with `hyper` from the run's config."""
    return {**state, "hyper": hyper(cfg)}


def decayed_weights(weight_decay) -> optax.GradientTransformationExtraArgs:
    """optax.add_decayed_weights (g + weight_decay·θ, the same empty state), except that a caller
    that knows the decay is 0 in every copy of the state passes `weight_decay_is_zero=True` to
    the optimizer's update and the stage is skipped: adding 0 still reads every parameter twice
    more per step (XLA recomputes it inside Adam's two moment loops), a fifth of the IWAE-paper
    network's step on a CPU (issue 12). The state, hence a checkpoint, does not change."""

    def update(updates, state, params=None, *, weight_decay_is_zero: bool = False, **extra):
        if weight_decay_is_zero:
            return updates, state
        return jax.tree.map(lambda g, p: g + weight_decay * p, updates, params), state

    return optax.GradientTransformationExtraArgs(lambda params: optax.EmptyState(), update)


def init_state(cfg: Config, image_shape, train=None) -> tuple[models.Functional, optax.GradientTransformation, dict]:
    """The state at step 0. `train` (the training Split) supplies what depends on the data:
    the epoch length of a staged learning-rate schedule and the data-dependent parameter
    init (models.data_init). Without it (a template to restore into) those are skipped."""
    train_arrays = (train.flat, train.scale) if train is not None else None
    fn = models.functional(cfg.model, image_shape, cfg.seed, train=train_arrays)
    tx = make_optimizer(cfg.optim, len(train) // cfg.train.batch_size if train is not None else 1)
    state = {
        "params": fn.params,
        "opt_state": tx.init(fn.params),
        "step": jnp.zeros((), jnp.int32),
        "rng": jax.random.key_data(jax.random.key(cfg.seed)),
        "skipped": jnp.zeros((), jnp.int32),  # non-finite updates dropped so far (train.skip_nonfinite)
        "hyper": hyper(cfg),
    }
    if cfg.train.ema_decay > 0:  # only then: EMA-less states (and run format 2 checkpoints) keep their layout
        state["ema"] = jax.tree.map(jnp.copy, fn.params)  # a copy: the state is donated leaf by leaf
    return fn, tx, state


def template_state(cfg: Config, image_shape, train=None) -> tuple[models.Functional, optax.GradientTransformation, dict]:
    """`init_state`'s (Functional, optimizer, state), the state as shapes and dtypes: what a
    checkpoint is restored into, traced with jax.eval_shape so that no parameter is computed
    (the eager init runs some twenty small programs; measured on a bmnist_mlp run, warm
    compile cache, 5 rounds alternating: `vae sample` 3.16 -> 2.76 s, `vae eval-elbo` 4.43
    -> 3.76 s). The Functional's `params` are the abstract ones until a restore replaces them."""
    built = {}

    def make():
        built["fn"], built["tx"], state = init_state(cfg, image_shape, train=train)
        return state

    like = jax.eval_shape(make)
    fn = built["fn"]
    fn.params = like["params"]  # not the tracers of the trace
    return fn, built["tx"], like


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
        # a malformed argument is a usage error (exit 2); a well-formed step the run lacks is not
        raise UsageError(f"--step {step!r}: expected 'best', 'latest' or a step number ({_list(steps)})") from None
    if wanted not in steps:
        raise RunError(f"--step {wanted}: no checkpoint at that step (available: {_list(steps)})")
    return wanted


def _list(steps) -> str:
    return ", ".join(str(s) for s in steps)


def default_step(run_dir: Path) -> str:
    """The checkpoint a command uses when none is named: 'best' on a run that stopped early
    (the point of early stopping is the model at the best validation), else 'latest'."""
    from vaecli.runs import read_json

    return "best" if (read_json(Path(run_dir) / "summary.json") or {}).get("stopped_early") is True else "latest"


def params_kind(cfg: Config, raw_params: bool = False) -> str:
    """Which parameters evaluation uses: "ema" (the moving average, when train.ema_decay > 0
    and not `raw_params`) or "raw"."""
    return "ema" if cfg.train.ema_decay > 0 and not raw_params else "raw"


def load_state(cfg: Config, image_shape, checkpoint_dir: Path, step=None, raw_params: bool = False):
    """Restore (Functional, state, step, record) from a run's checkpoints. With EMA on (and
    not `raw_params`), state["params"] holds the EMA parameters (see `params_kind`); `step`
    None: the run's `default_step`."""
    if step is None:
        step = default_step(Path(checkpoint_dir).parent)
    fn, _, like = template_state(cfg, image_shape)
    with Checkpoints(checkpoint_dir, read_only=True) as ckpts:
        chosen = resolve_step(ckpts, step)
        state, record = ckpts.restore(chosen, checkpointed(like))
    state = with_hyper(state, cfg)
    if params_kind(cfg, raw_params) == "ema":
        state = {**state, "params": state["ema"]}
    return fn, state, chosen, record
