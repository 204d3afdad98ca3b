"""Compiled programs, kept twice over: for the life of the process (in memory, keyed by
everything that determines them) and across processes (JAX's persistent compilation cache
on disk).

In memory: a process that trains or evaluates the same network more than once (the library called in
a loop from a script or a notebook, the test suite's many tiny runs) would otherwise trace,
lower and compile — or load from JAX's persistent cache — the same epoch, estimator and
picture programs again, which is most of a repeated tiny training's CPU time
(docs/performance.md). A key names what the program closes over; the compiled executable
checks the shapes, dtypes and shardings of its arguments itself.

A key must cover every value a program bakes in. `training_fields` is the config as the
compiled epoch sees it: the keys whose role is not compiled (vaecli.config.schema) are set
to their defaults. A key added to the config is compiled until its role says otherwise (a
test compares the programs lowered with every uncompiled key changed).

On disk (`enable`): a compiled program is saved and the next process that compiles the same
program (same shapes, same code, same device kind, same JAX) loads it instead of compiling,
so the second run of a sweep starts at once. Called by the commands that compile before
they compile anything: JAX decides once per process, at its first compilation, whether it
uses a cache.
"""
from __future__ import annotations

import logging
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

from vaecli.config import UNCOMPILED, Config, dotted, to_dict

log = logging.getLogger("vaecli")

MAX_PROGRAMS = 16  # the least recently used go first; each holds its executable's memory
ENABLED = True  # False: every program is built anew and not kept (tests that patch traced code)
_MEMO: OrderedDict = OrderedDict()


def training_fields(cfg: Config) -> tuple:
    """What of `cfg` the compiled training programs depend on, hashable: `cfg` with every
    uncompiled key at its default."""
    default = Config()
    ignored = set(UNCOMPILED)
    if cfg.optim.schedule != "constant":  # a staged schedule bakes its starting rate in
        ignored.discard("optim.lr")
    raw, plain = to_dict(cfg), to_dict(default)
    for name in ignored:
        dotted.put(raw, name, dotted.get(plain, name))
    return (_hashable(raw), ("weight_decay_is_zero", cfg.optim.weight_decay == 0))


def _hashable(tree):
    if isinstance(tree, dict):
        return tuple((k, _hashable(v)) for k, v in tree.items())
    return tuple(map(_hashable, tree)) if isinstance(tree, list) else tree


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


# Every program is stored. JAX's default (1 s) would skip most of ours on a CPU, and the small
# ones add up: a parameter init alone is some twenty programs of a few ms each, and storing
# them too makes `vae sample` and `vae eval-elbo` start noticeably sooner for little disk
# (docs/performance.md).
MIN_COMPILE_S = 0.0


def enable(folder: str | Path | None) -> Path | None:
    """Use `folder` as the cache (created if needed); None turns caching off, JAX's own
    JAX_COMPILATION_CACHE_DIR included. Returns the folder in use, or None. A folder that
    cannot be created or written costs a warning, never the run."""
    import jax

    if folder is None:
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    path = Path(folder).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
        writable = os.access(path, os.W_OK)
    except OSError as e:
        writable, why = False, e.strerror
    else:
        why = "not writable"
    if not writable:
        log.warning(f"compile cache {path}: {why}; compiling without it (point VAECLI_COMPILE_CACHE at "
                    f"another folder, or set it to off)")
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_S)
    return path
