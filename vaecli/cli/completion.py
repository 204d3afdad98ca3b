"""Shell completion of option values: `vae sample --mode <TAB>`, `vae train --set <TAB>`.

The shell runs `vae` on every TAB, so nothing here may import JAX (seconds): the config
keys come from vaecli.config.schema (which imports only PyYAML), and the sample modes from
the registry vaecli.evaluation.modes.MODES (which imports JAX only when it draws).
"""
from __future__ import annotations

import typing


def config_keys() -> list[tuple[str, object]]:
    """Every dotted config key with its type: [("seed", int), ("data.dataset", str), ...]; a
    name chosen from a registry (model.kind, objective.name, ...) has the registry's names as
    its type, a Literal."""
    from vaecli import config

    return [(k.name, k.type) for k in config.keys()]


def _choices(tp) -> list[str]:
    """The values a key can take when they are a closed set (Literal, bool), else []."""
    origin = typing.get_origin(tp)
    if origin is typing.Union:
        return [c for a in typing.get_args(tp) if a is not type(None) for c in _choices(a)] + ["null"]
    if origin is typing.Literal:
        return [str(a) for a in typing.get_args(tp)]
    if tp is bool:
        return ["true", "false"]
    return []


def complete_set(incomplete: str) -> list[str]:
    """`--set` values: `optim.lr=` for a key prefix; after `key=`, the key's choices if it has a closed set."""
    keys = config_keys()
    if "=" in incomplete:
        key, _, value = incomplete.partition("=")
        for k, tp in keys:
            if k == key:
                return [f"{k}={c}" for c in _choices(tp) if c.startswith(value)]
        return []
    return [f"{k}=" for k, _ in keys if k.startswith(incomplete)]


def sample_modes() -> list[str]:
    from vaecli.evaluation.modes import MODES

    return list(MODES)


def complete_mode(incomplete: str) -> list[str]:
    return [m for m in sample_modes() if m.startswith(incomplete)]
