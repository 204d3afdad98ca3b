"""Config files and `--set` overrides: YAML in, YAML out. The only module that knows YAML.

`load(path, overrides)` is what every command calls: read the YAML (or start from the
defaults), apply each `dotted.key=value` in order, validate (vaecli.config.build).
"""
from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import yaml

from vaecli.config import dotted, schema
from vaecli.config.build import from_dict
from vaecli.config.schema import Config
from vaecli.errors import ConfigError


def parse_override(text: str) -> tuple[list[str], Any]:
    """`a.b=value` -> (["a", "b"], YAML-typed value)."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {text!r}: expected dotted.key=value, e.g. --set optim.lr=3e-4")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {text!r}: the value is not valid YAML ({_first_line(e)})") from None
    return key.split("."), parsed


def _first_line(err: Exception) -> str:
    return " ".join(str(err).split())


# PyYAML's problem -> what usually causes it in a config file, and the fix
_YAML_HINTS = (
    ("a tab", "YAML indents with spaces, not tabs: replace the tabs with spaces"),
    ("mapping values are not allowed", "a value that contains ': ' needs quotes, and each key a line of its own"),
    ("expected <block end>", "this line is indented differently from the keys above it: indent the keys of one "
                             "section by the same number of spaces"),
    ("could not find expected ':'", "write each key as 'key: value'"),
    ("flow sequence", "close the '[' (or add the missing comma between the values)"),
    ("flow mapping", "close the '{' (or add the missing comma between the entries)"),
    ("quoted scalar", "close the quote"),
)


def yaml_problem(err: Exception) -> str:
    """PyYAML's message on one line: ', line L, column C: not valid YAML: PROBLEM; FIX' (line
    and column counted from 1; the fix where the problem is a common one)."""
    problem = getattr(err, "problem", None)
    mark = getattr(err, "problem_mark", None)
    if not problem:
        return f" is not valid YAML: {_first_line(err)}"
    problem = " ".join(problem.replace("character '\\t'", "a tab").split())
    where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    found = problem + " " + str(getattr(err, "context", ""))
    hint = next((fix for needle, fix in _YAML_HINTS if needle in found), None)
    return f"{where}: not valid YAML: {problem}" + (f"; {hint}" if hint else "")


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Return a copy of the raw mapping with each `dotted.key=value` applied in order."""
    out = copy.deepcopy(raw)
    for text in overrides:
        path, value = parse_override(text)
        try:
            dotted.put(out, ".".join(path), value)
        except ConfigError as e:
            raise ConfigError(f"--set {text!r}: {e}") from None
    return out



def read_yaml(path: str | Path) -> dict:
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"config file not found: {p} (pass --config PATH to an existing YAML file)")
    if p.is_dir():
        raise ConfigError(f"config path is a folder, not a file: {p}")
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read config {p}: {e.__class__.__name__}: {e}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}{yaml_problem(e)}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: the top level must be a mapping of keys, got {type(raw).__name__}")
    return raw


def load(path: str | Path | None, overrides: list[str] = ()) -> Config:
    """Read YAML (or start from defaults when `path` is None), apply overrides, validate."""
    raw = read_yaml(path) if path is not None else {}
    return from_dict(apply_overrides(raw, list(overrides)))


def resumable(key: str) -> bool:
    """Whether `--resume --set key=...` may change `key` (a dotted key, or a section of them)."""
    inside = [k for k in schema.keys() if k.name == key or k.name.startswith(key + ".")]
    return bool(inside) and all(k.role.resumable for k in inside)


def apply_resume_overrides(cfg: Config, overrides: list[str]) -> Config:
    """`cfg` with `overrides` applied, or ConfigError if one would change what training computes."""
    for text in overrides:
        path, _ = parse_override(text)
        key = ".".join(path)
        if not resumable(key):
            raise ConfigError(
                f"--set {key}: cannot change on --resume (the resumed run would no longer be the experiment its "
                f"config.yaml describes); keys that may change: {schema.summarize(schema.RESUMABLE)}; "
                f"to try another value, start a new run")
    return from_dict(apply_overrides(to_dict(cfg), overrides))


def to_dict(cfg: Config) -> dict:
    def conv(v):
        if isinstance(v, tuple):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        return v

    return conv(dataclasses.asdict(cfg))


def dump_yaml(cfg: Config) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False, default_flow_style=None)


def replace(cfg: Config, **sections) -> Config:
    """`replace(cfg, train={"epochs": 3})`: a validated copy with some keys changed."""
    raw = to_dict(cfg)
    for section, values in sections.items():
        if isinstance(values, dict):
            raw[section].update(values)
        else:
            raw[section] = values
    return from_dict(raw)
