"""`vae tune --space`: the spelling of a search space, checked like `--set`.

    --space optim.lr=log:1e-4:1e-2        log-uniform between two numbers
    --space objective.beta=0.5:4          uniform between two numbers
    --space optim.weight_decay=0,1e-5,1e-4  one of these values (YAML, like --set)

A range over an integer key (`seed=0:99`) draws integers. Only replica keys (vaecli.config.schema)
can be searched: they are values of the training state, so trials with different values train
side by side in one compiled program. No JAX or Optuna here: errors come first.
"""
from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass

from vaecli import config as config_lib
from vaecli.config import REPLICA_KEYS, Config, dotted
from vaecli.errors import ConfigError, UsageError

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_RANGE = re.compile(rf"\s*(?:(log):)?\s*({_NUMBER})\s*:\s*({_NUMBER})\s*")


@dataclass(frozen=True)
class Dimension:
    key: str  # dotted config key, also the Optuna parameter name
    kind: str  # "range" or "choice"
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    integer: bool = False
    choices: tuple = ()

    def suggest(self, trial):
        """This dimension's value for an Optuna trial (ask/tell interface)."""
        if self.kind == "choice":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.integer:
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.key, float(self.low), float(self.high), log=self.log)

    def describe(self) -> str:
        if self.kind == "choice":
            return f"{self.key} in {{{', '.join(str(c) for c in self.choices)}}}"
        return f"{self.key} in [{self.low}, {self.high}]" + (" (log)" if self.log else "")


def with_values(raw: dict, values: dict) -> Config:
    """The config of a trial: `raw` with each dotted key set to its value."""
    out = copy.deepcopy(raw)
    for key, value in values.items():
        dotted.put(out, key, value)
    return config_lib.from_dict(out)


def parse(text: str, raw: dict) -> Dimension:
    """One `--space KEY=SPEC` against the base config `raw` (a dict, overrides applied)."""
    key, sep, spec = text.partition("=")
    key, spec = key.strip(), spec.strip()
    where = f"--space {text!r}"
    if not key or not sep or not spec:
        raise UsageError(f"{where}: expected KEY=SPEC, e.g. --space optim.lr=log:1e-4:1e-2, "
                         f"--space objective.beta=0.5:4 or --space optim.weight_decay=0,1e-5,1e-4")
    m = _RANGE.fullmatch(spec)
    if m is None and ":" in spec:
        raise UsageError(f"{where}: a range is LOW:HIGH or log:LOW:HIGH with two numbers, e.g. log:1e-4:1e-2")
    values = [m.group(2), m.group(3)] if m else [v.strip() for v in spec.split(",")]
    if any(not v for v in values):
        raise UsageError(f"{where}: an empty value; list values as a,b,c")
    typed = [_check_value(key, v, raw, where) for v in values]  # unknown key, bad type or value: here
    if key not in REPLICA_KEYS:
        shown = " ".join(values)
        raise UsageError(f"{where}: only {', '.join(REPLICA_KEYS)} can differ between the trials of one "
                         f"compiled program; {key} changes shapes or code, so loop in the shell instead: "
                         f"for v in {shown}; do vae tune ... --set {key}=$v; done")
    if key == "optim.lr" and config_lib.from_dict(raw).optim.schedule != "constant":
        raise UsageError(f"{where}: optim.schedule={config_lib.from_dict(raw).optim.schedule} computes the "
                         f"learning rate in code, so trials cannot differ in it; set optim.schedule=constant")
    if m is None:
        if len(typed) < 2:
            raise UsageError(f"{where}: one value is not a search; give a range LOW:HIGH, several values "
                             f"a,b,c, or fix it with --set {key}={values[0]}")
        if len(set(map(repr, typed))) != len(typed):
            raise UsageError(f"{where}: a value is listed twice")
        return Dimension(key, "choice", choices=tuple(typed))
    low, high = typed
    if isinstance(low, bool) or not isinstance(low, (int, float)):
        raise UsageError(f"{where}: {key} is not a number; list its values as a,b instead")
    if not low < high:
        raise UsageError(f"{where}: the range is {'empty' if low == high else 'inverted'} ({low} to {high}); "
                         f"write LOW:HIGH with LOW < HIGH")
    log = m.group(1) is not None
    if log and low <= 0:
        raise UsageError(f"{where}: a log range needs LOW > 0 (got {low}); use a linear range LOW:HIGH to include 0")
    if not all(math.isfinite(v) for v in (low, high)):
        raise UsageError(f"{where}: the bounds must be finite numbers")
    return Dimension(key, "range", low=low, high=high, log=log, integer=isinstance(low, int))


def _check_value(key: str, value: str, raw: dict, where: str):
    """`value` as the config would hold it at `key` (typed), or UsageError naming the problem."""
    try:
        cfg = config_lib.from_dict(config_lib.apply_overrides(raw, [f"{key}={value}"]))
    except ConfigError as e:
        raise UsageError(f"{where}: {e}") from None
    return dotted.get(cfg, key)


def parse_all(texts: list[str], raw: dict) -> list[Dimension]:
    if not texts:
        raise UsageError("give at least one --space KEY=SPEC, e.g. --space optim.lr=log:1e-4:1e-2")
    dims = [parse(t, raw) for t in texts]
    keys = [d.key for d in dims]
    for k in keys:
        if keys.count(k) > 1:
            raise UsageError(f"--space {k}: given twice; give each key once")
    return dims


PRUNERS = ("median", "halving", "none")


def check_args(trials: int, replicas: int, pruner: str) -> None:
    """The study's budget and pruner (`vae tune --trials/--replicas/--pruner`)."""
    if trials < 1:
        raise UsageError(f"--trials {trials}: must be at least 1")
    if replicas < 1:
        raise UsageError(f"--replicas {replicas}: must be at least 1")
    if pruner not in PRUNERS:
        raise UsageError(f"--pruner {pruner}: expected one of {', '.join(PRUNERS)}")
