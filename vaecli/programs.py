"""Compiled programs kept for the life of the process, keyed by everything that determines them.

A process that trains or evaluates the same network more than once (the library called in
a loop from a script or a notebook, the test suite's many tiny runs) would otherwise trace,
lower and compile — or load from JAX's persistent cache — the same epoch, estimator and
picture programs again: a repeated tiny training took 1.2–1.5 s of CPU, 0.35–0.46 s with
them kept (tests/conftest.py's tiny config, 3 epochs, in one process). A key names what the
program closes over; the compiled executable checks the shapes, dtypes and shardings of its
arguments itself.

A key must cover every value a program bakes in. `training_fields` is the config as the
compiled epoch sees it: the fields it does not read (they reach the step as values of the
state, or not at all) are set to their defaults. A field added to the config later is in the
key until someone shows it need not be (tests/test_train.py compares the programs lowered
with every ignored field changed).
"""
from __future__ import annotations

import dataclasses
from collections import OrderedDict
from typing import Any, Callable

from vaecli.config import Config

MAX_PROGRAMS = 16  # the least recently used go first; each holds its executable's memory
ENABLED = True  # False: every program is built anew and not kept (tests that patch traced code)
_MEMO: OrderedDict = OrderedDict()

# Fields the compiled epoch does not read: bookkeeping, data location, and the values the
# state carries (β, warm-up, free bits, the learning rate of a constant schedule, the weight
# decay — but whether it is 0 matters to a single run's program: see epoch.make_epoch_fn).
IGNORED = {
    "": ("seed",),
    "data": ("dataset", "data_dir", "manual_dir", "cache_dir", "val_size"),
    "train": ("epochs", "time_limit", "patience", "min_delta"),
    "optim": ("weight_decay",),
    "objective": ("beta", "warmup_epochs", "free_bits"),
    "eval": ("every_epochs", "batch_size", "grid"),  # the validation and picture programs have keys of their own
    "checkpoint": ("every_epochs", "keep", "keep_best"),
    "log": ("tensorboard", "progress", "wandb", "mlflow"),
}


def training_fields(cfg: Config) -> tuple:
    """What of `cfg` the compiled training programs depend on, hashable."""
    default = Config()
    sections = {}
    for f in dataclasses.fields(Config):
        value = getattr(cfg, f.name)
        if not dataclasses.is_dataclass(value):
            continue
        names = IGNORED.get(f.name, ())
        sections[f.name] = dataclasses.replace(value, **{n: getattr(getattr(default, f.name), n) for n in names})
    if cfg.optim.schedule == "constant":  # a staged schedule bakes its starting rate in
        sections["optim"] = dataclasses.replace(sections["optim"], lr=default.optim.lr)
    return tuple(sorted(sections.items())) + (("weight_decay_is_zero", cfg.optim.weight_decay == 0),)


def environment() -> tuple:
    """The process-wide JAX settings a trace reads."""
    import jax

    return (jax.default_backend(), jax.config.jax_enable_x64, jax.config.jax_default_matmul_precision)


def signature(tree) -> tuple:
    """Structure, shapes, dtypes and shardings of a tree of arrays."""
    import jax

    leaves, treedef = jax.tree.flatten(tree)
    return treedef, tuple((tuple(a.shape), str(a.dtype), getattr(a, "sharding", None)) for a in leaves)


def key(kind: str, fn, *parts) -> tuple | None:
    """The key of a `kind` program of the model `fn` (a models.Functional) and `parts`: None
    (not kept) when the model carries no key of its own."""
    return None if fn.key is None else (kind, fn.key, *parts)


def get(key: tuple | None, build: Callable[[], Any]) -> Any:
    """The program `build()` makes, built once per `key` (None: not kept)."""
    if key is None or not ENABLED:
        return build()
    key = (key, environment())
    if key in _MEMO:
        _MEMO.move_to_end(key)
        return _MEMO[key]
    program = _MEMO[key] = build()
    while len(_MEMO) > MAX_PROGRAMS:
        _MEMO.popitem(last=False)
    return program


def clear() -> None:
    """Forget every kept program (tests that count traces start from here)."""
    _MEMO.clear()
