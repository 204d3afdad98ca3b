"""The training state: parameters, optimizer state, step and key, built from a config.

The state is a plain dict pytree so that one compiled function can carry it through
`lax.scan`, donate it, checkpoint it, and stack it along a replica axis.

`state["hyper"]` holds the objective's values that replicas of one program may differ in
(HYPER_KEYS: the `objective.*` keys whose role is `replica`) as arrays the compiled step reads. It
is a function of the run's config.yaml, so checkpoints do not store it (`checkpointed`): the
checkpoint layout stays run format 2, old run folders load unchanged, and a restore takes
it from the config again (`with_hyper`), which is bit-identical by construction.
"""
from __future__ import annotations

import importlib

import jax
import jax.numpy as jnp
import optax

from vaecli import registry
from vaecli.compiled import optimizer
from vaecli.config import REPLICA_KEYS, Config
from vaecli.models import vae as models

# The objective's keys of the replica role, by their names in ObjectiveConfig: the state carries
# them, and the loss reads them from there (objectives.training_terms' `replica`).
HYPER_KEYS = tuple(name.removeprefix("objective.") for name in REPLICA_KEYS if name.startswith("objective."))


def hyper(cfg: Config) -> dict:
    """The state's per-replica objective values, from the config."""
    return {k: jnp.asarray(getattr(cfg.objective, k), jnp.float32) for k in HYPER_KEYS}


def checkpointed(state: dict) -> dict:
    """The part of the state a checkpoint stores (all but `hyper`, which config.yaml gives)."""
    return {k: v for k, v in state.items() if k != "hyper"}


def with_hyper(state: dict, cfg: Config) -> dict:
    """A restored checkpoint's state, completed with `hyper` from the run's config."""
    return {**state, "hyper": hyper(cfg)}



def init_state(cfg: Config, image_shape, train=None) -> tuple[models.Functional, optax.GradientTransformation, dict]:
    """The state at step 0. `train` (the training Split) supplies what depends on the data:
    the epoch length of a staged learning-rate schedule and the data-dependent parameter
    init (models.data_init). Without it (a template to restore into) those are skipped."""
    train_arrays = (train.flat, train.scale) if train is not None else None
    fn = models.functional(cfg.model, image_shape, cfg.seed, train=train_arrays)
    tx = optimizer.make_optimizer(cfg.optim, len(train) // cfg.train.batch_size if train is not None else 1)
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
    aux = registry.objective(cfg).aux
    if aux is not None:  # an auxiliary network and its optimizer (FactorVAE's discriminator)
        state["aux"] = importlib.import_module(aux).init(cfg.objective, cfg.model.latent_dim, cfg.seed)
    return fn, tx, state


def template_state(cfg: Config, image_shape, train=None) -> tuple[models.Functional, optax.GradientTransformation, dict]:
    """`init_state`'s (Functional, optimizer, state), the state as shapes and dtypes: what a
    checkpoint is restored into, traced with jax.eval_shape so that no parameter is computed
    (the eager init runs some twenty small programs, which a restore would throw away:
    docs/performance.md). The Functional's `params` are the abstract ones until a restore
    replaces them."""
    built = {}

    def make():
        built["fn"], built["tx"], state = init_state(cfg, image_shape, train=train)
        return state

    like = jax.eval_shape(make)
    fn = built["fn"]
    fn.params = like["params"]  # not the tracers of the trace
    return fn, built["tx"], like


def params_kind(cfg: Config, raw_params: bool = False) -> str:
    """Which parameters evaluation uses: "ema" (the moving average, when train.ema_decay > 0
    and not `raw_params`) or "raw"."""
    return "ema" if cfg.train.ema_decay > 0 and not raw_params else "raw"
