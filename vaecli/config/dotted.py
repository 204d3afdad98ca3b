"""Dotted keys (`optim.lr`) over nested mappings and configs: read one, set one, flatten a tree
into them. The one implementation `--set`, `--space`, the compiled-program key, `vae runs` and
the trackers use."""
from __future__ import annotations

from vaecli.errors import ConfigError


def get(tree, key: str):
    """The value at `key` in nested mappings, or in nested objects' attributes (a Config)."""
    node = tree
    for part in key.split("."):
        node = node[part] if isinstance(node, dict) else getattr(node, part)
    return node


def put(tree: dict, key: str, value) -> None:
    """Set `key` in nested mappings, in place; a missing or null section on the way becomes a
    mapping, and ConfigError names a part that holds a value instead."""
    *sections, leaf = key.split(".")
    node = tree
    for part in sections:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"'{part}' is not a section")
        node = child
    node[leaf] = value


def flatten(tree: dict, sep: str = ".", prefix: str = "") -> dict:
    """{dotted key: value} of every leaf of nested mappings; an empty mapping is a leaf."""
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict) and v:
            out.update(flatten(v, sep, f"{prefix}{k}{sep}"))
        else:
            out[f"{prefix}{k}"] = v
    return out
