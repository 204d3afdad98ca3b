"""`--seeds` and `--sweep`: the configs of replicas that share one compiled program.

Replicas may differ only in keys whose role is `replica` (vaecli.config.schema): values the
training state carries as arrays (the seed, which sets the initial parameters and the PRNG
key, the optimizer's injected hyperparameters, and the objective's β, KL warm-up, free
bits and Rényi α in state["hyper"]); anything that changes shapes or code needs its own program, so a
shell loop over `vae train --set ...`. No JAX here: these errors come before anything heavy.
"""
from __future__ import annotations

import itertools
import re

from vaecli import config as config_lib
from vaecli.config import REPLICA_KEYS, Config
from vaecli.errors import UsageError


def parse_seeds(text: str) -> list[int]:
    """'0-7' -> 0..7; '1,3,5' and '0-3,8' too."""
    seeds = []
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not m or (m.group(2) is not None and int(m.group(2)) < int(m.group(1))):
            raise UsageError(f"--seeds {text!r}: expected seeds like 0-7, 1,3,5 or 0-3,8")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        seeds.extend(range(lo, hi + 1))
    if len(set(seeds)) != len(seeds):
        raise UsageError(f"--seeds {text!r}: a seed is listed twice")
    return seeds


def parse_sweep(text: str) -> tuple[str, list[str]]:
    """'optim.lr=1e-3,3e-4' -> ('optim.lr', ['1e-3', '3e-4'])."""
    key, sep, values = text.partition("=")
    key = key.strip()
    items = [v.strip() for v in values.split(",")] if sep else []
    if not key or not items or any(not v for v in items):
        raise UsageError(f"--sweep {text!r}: expected key=value1,value2,... e.g. --sweep optim.lr=1e-3,3e-4")
    if key not in REPLICA_KEYS:
        raise UsageError(
            f"--sweep {key}: only {', '.join(REPLICA_KEYS)} can vary inside one compiled program; "
            f"{key} changes shapes or code, so loop in the shell instead: "
            f"for v in {' '.join(items)}; do vae train ... --set {key}=$v; done")
    return key, items


def expand(raw: dict, seeds: list[int] | None, sweeps: list[str], base_name: str) -> list[tuple[str, Config]]:
    """Every combination of `seeds` × each `--sweep` (cartesian), as (run name, config)."""
    axes = [("seed", [str(s) for s in seeds])] if seeds else []
    for text in sweeps:
        key, values = parse_sweep(text)
        if any(k == key for k, _ in axes):
            raise UsageError(f"--sweep {key}: given twice (or together with --seeds); list all values once")
        axes.append((key, values))
    out = []
    for combo in itertools.product(*[values for _, values in axes]):
        overrides = [f"{key}={value}" for (key, _), value in zip(axes, combo)]
        cfg = config_lib.from_dict(config_lib.apply_overrides(raw, overrides))
        if cfg.optim.schedule != "constant" and any(key == "optim.lr" for key, _ in axes):
            raise UsageError(f"--sweep optim.lr: optim.schedule={cfg.optim.schedule} computes the learning rate "
                             f"in code, so replicas cannot differ in it; loop in the shell instead: "
                             f"for v in ...; do vae train ... --set optim.lr=$v; done")
        label = "".join(f"-{key.split('.')[-1]}{value}" for (key, _), value in zip(axes, combo))
        out.append((f"{base_name}{label}", cfg))
    return out


def groups(items: list, size: int) -> list[list]:
    """Split the replicas into programs of at most `size` (`--max-replicas-per-program`)."""
    if size < 1:
        raise UsageError(f"--max-replicas-per-program {size}: must be at least 1")
    return [items[i:i + size] for i in range(0, len(items), size)]


def programs(raw: dict, seeds: str | None, sweeps: list[str], base_name: str,
             max_replicas: int) -> list[list[tuple[str, Config]]]:
    """The compiled programs a `vae train` command runs: its replicas (one config without
    --seeds/--sweep) as (run name, config), in groups of at most `max_replicas`."""
    if seeds or sweeps:
        items = expand(raw, parse_seeds(seeds) if seeds else None, list(sweeps), base_name)
    else:
        items = [(base_name, config_lib.from_dict(raw))]
    return groups(items, max_replicas)
