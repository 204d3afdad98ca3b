"""YAML + `--set` overrides -> one frozen, typed config. The only module that knows YAML.

Every key is declared once, below, with its type, its default and (where a value can
be impossible) a check. Unknown keys, wrong types and impossible values raise
`ConfigError` naming the dotted key, before anything is written anywhere.
"""
from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

import yaml

from vaecli import choices, objectives
from vaecli.errors import ConfigError
from vaecli.stops import is_duration


def _check(pred, message):
    return {"check": (pred, message)}


def _one_of(registry: dict, **more):
    """A name that must be a key of `registry` (read when validating, so a registry entry is
    all a new choice needs); the message lists the valid names as a Literal's does."""
    return {"one_of": registry, **more}


_POSITIVE = _check(lambda v: v > 0, "must be > 0")
_NON_NEGATIVE = _check(lambda v: v >= 0, "must be >= 0")
_WIDTHS = _check(lambda v: all(w > 0 for w in v), "widths must be > 0")


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "binarized_mnist"  # a TFDS name
    data_dir: Optional[str] = None  # TFDS data_dir (None: TFDS's default, ~/tensorflow_datasets)
    manual_dir: Optional[str] = None  # folder with the files TFDS would download (offline use)
    cache_dir: Optional[str] = None  # vaecli's compact array cache (None: ~/.cache/vaecli/data)
    binarize: Literal["none", "static", "dynamic"] = "static"
    val_size: int = field(default=10000, metadata=_POSITIVE)  # held out of train when no validation split


@dataclass(frozen=True)
class ModelConfig:
    kind: str = field(default="mlp", metadata=_one_of(choices.MODEL_KINDS))  # vaecli.choices
    latent_dim: int = field(default=20, metadata=_POSITIVE)
    hidden: tuple[int, ...] = field(default=(500,), metadata=_WIDTHS)  # dense widths (conv: after the convs)
    channels: tuple[int, ...] = field(default=(32, 64), metadata=_WIDTHS)  # conv: stride-2 conv layers
    activation: Literal["relu", "tanh", "elu", "gelu", "softplus", "swish", "gated"] = "relu"
    likelihood: str = field(default="bernoulli", metadata=_one_of(choices.LIKELIHOODS))
    obs_variance: Literal["learned", "fixed"] = "learned"  # gaussian: one learned log-σ per pixel, or fixed
    obs_std: float = field(default=0.1, metadata=_POSITIVE)  # gaussian with obs_variance=fixed
    output_bias: Literal["zero", "data_mean"] = "zero"  # data_mean: logit of the training pixel mean
    prior: str = field(default="normal", metadata=_one_of(choices.PRIORS))
    pseudo_inputs: int = field(default=500, metadata=_POSITIVE)  # VampPrior components
    latent_dim2: Optional[int] = field(default=None, metadata=_POSITIVE)  # a second stochastic layer
    hidden2: tuple[int, ...] = field(default=(100, 100), metadata=_WIDTHS)  # between the two layers


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = field(default=30, metadata=_POSITIVE)
    batch_size: int = field(default=128, metadata=_POSITIVE)
    # Drop up to this many updates whose loss or update is NaN/Inf (counted over the whole
    # run, inside the compiled step) before failing; 0 fails at the first one.
    skip_nonfinite: int = field(default=0, metadata=_NON_NEGATIVE)
    # Devices of the data-parallel mesh (batch_size is the global batch); 0: all of them.
    devices: int = field(default=0, metadata=_NON_NEGATIVE)
    # An exponential moving average of the parameters, updated at every step (0: off); when
    # on, validation, pictures, eval-elbo and sample use it (--raw-params: the raw ones).
    ema_decay: float = field(default=0.0, metadata=_check(lambda v: 0 <= v < 1,
                                                          "must be in [0, 1): 0 turns it off, e.g. 0.999"))
    # Matmuls of the training step on a GPU: float32 (exact), tf32 (TensorFloat-32, what JAX
    # does on NVIDIA GPUs when not told), bfloat16 (bf16 inputs, float32 sums). XLA's CPU
    # backend computes all three in float32.
    precision: Literal["float32", "tf32", "bfloat16"] = "float32"
    # Wall time ("9m30s", "2h", "90s"): stop at the last epoch boundary that fits, with a
    # checkpoint, status `paused`, exit 3 (vaecli.stops); null: no limit.
    time_limit: Optional[str] = field(default=None, metadata=_check(
        is_duration, "is not a duration; write e.g. 9m30s, 2h, 1h30m or 90s"))
    # Early stopping: end the run after this many validations without the validation ELBO
    # rising by more than min_delta nats (0: off).
    patience: int = field(default=0, metadata=_NON_NEGATIVE)
    min_delta: float = field(default=0.0, metadata=_NON_NEGATIVE)


@dataclass(frozen=True)
class OptimConfig:
    name: Literal["adam", "adamw", "sgd", "rmsprop"] = "adam"
    lr: float = field(default=1e-3, metadata=_POSITIVE)
    # L2 penalty (weight_decay/2)·|θ|² added to the per-example loss: a Gaussian prior on
    # the weights, i.e. MAP estimation. 0 is maximum likelihood (MLE).
    weight_decay: float = field(default=0.0, metadata=_NON_NEGATIVE)
    grad_clip: Optional[float] = field(default=None, metadata=_POSITIVE)  # global-norm clipping
    eps: float = field(default=1e-8, metadata=_POSITIVE)  # adam/adamw/rmsprop ε (the IWAE paper: 1e-4)
    # iwae: stage i = 0, 1, ... lasts 3^i epochs at lr·10^(−i/7) (Burda et al. 2016); the last
    # stage reached goes on for as long as train.epochs asks.
    schedule: Literal["constant", "iwae"] = "constant"


@dataclass(frozen=True)
class ObjectiveConfig:
    name: str = field(default="elbo", metadata=_one_of(objectives.OBJECTIVES))  # vaecli.objectives
    kl: Literal["analytic", "mc"] = "analytic"
    samples: int = field(default=1, metadata=_POSITIVE)  # z samples per example (iwae: K)
    beta: float = field(default=1.0, metadata=_NON_NEGATIVE)  # weight of the KL term (β-VAE)
    warmup_epochs: float = field(default=0.0, metadata=_NON_NEGATIVE)  # KL weight 0 -> β linearly
    free_bits: float = field(default=0.0, metadata=_NON_NEGATIVE)  # nats: per-dimension KL floor


@dataclass(frozen=True)
class EvalConfig:
    every_epochs: int = field(default=5, metadata=_POSITIVE)
    batch_size: int = field(default=1000, metadata=_POSITIVE)
    grid: int = field(default=64, metadata=_POSITIVE)  # images in the PNG grids written at each eval


@dataclass(frozen=True)
class CheckpointConfig:
    every_epochs: int = field(default=5, metadata=_POSITIVE)
    keep: int = field(default=3, metadata=_POSITIVE)  # the latest `keep` checkpoints are kept
    keep_best: bool = True  # also keep the checkpoint with the best validation ELBO (--step best)


@dataclass(frozen=True)
class WandbConfig:
    project: Optional[str] = None  # null: W&B off (needs `pip install "vaecli[wandb]"`)
    entity: Optional[str] = None
    mode: Literal["online", "offline"] = "online"
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class MlflowConfig:
    tracking_uri: Optional[str] = None  # null: MLflow off (needs `pip install "vaecli[mlflow]"`)
    experiment: str = "vaecli"


@dataclass(frozen=True)
class LogConfig:
    tensorboard: bool = True
    progress: Literal["auto", "bar", "lines", "none"] = "auto"
    wandb: WandbConfig = WandbConfig()  # experiment trackers (vaecli.trackers), off by default
    mlflow: MlflowConfig = MlflowConfig()


@dataclass(frozen=True)
class Config:
    seed: int = field(default=0, metadata=_NON_NEGATIVE)
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    optim: OptimConfig = OptimConfig()
    objective: ObjectiveConfig = ObjectiveConfig()
    eval: EvalConfig = EvalConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()
    log: LogConfig = LogConfig()


# ---------------------------------------------------------------- building and checking


def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin is typing.Union:
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is tuple:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    return "null" if tp is type(None) else getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp, key: str) -> Any:
    """Return `value` as type `tp`, or raise ConfigError naming `key`."""
    origin = typing.get_origin(tp)
    if origin is typing.Union:  # Optional[X]
        if value is None:
            return None
        (inner,) = [a for a in typing.get_args(tp) if a is not type(None)]
        return _coerce(value, inner, key)
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        raise ConfigError(f"{key}: {value!r} is not one of {_type_name(tp)}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a {_type_name(tp)}, got {value!r}")
        inner = typing.get_args(tp)[0]
        return tuple(_coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value))
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        # YAML 1.1 reads `1e-3` (no dot) as a string; accept any number spelled as one.
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out = float(value)
        elif isinstance(value, str):
            try:
                out = float(value)
            except ValueError:
                out = None
        else:
            out = None
        if out is not None and math.isfinite(out):
            return out
    elif tp is str:
        if isinstance(value, str):
            return value
    raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")


def _build(cls, raw: Any, prefix: str):
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        where = prefix.rstrip(".") or "the config"
        raise ConfigError(f"{where}: expected a mapping of keys, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields), key=str)
    if unknown:
        key = f"{prefix}{unknown[0]}"
        raise ConfigError(f"unknown config key '{key}' (valid here: {', '.join(fields)})")
    kwargs = {}
    for name, f in fields.items():
        key = f"{prefix}{name}"
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, raw.get(name), key + ".")
            continue
        if name not in raw:
            continue
        value = _coerce(raw[name], tp, key)
        registry = f.metadata.get("one_of")
        if registry is not None and value not in registry:
            raise ConfigError(f"{key}: {value!r} is not one of {' | '.join(repr(k) for k in registry)}")
        check = f.metadata.get("check")
        if check and value is not None and not check[0](value):
            raise ConfigError(f"{key}: {raw[name]!r} {check[1]}")
        kwargs[name] = value
    return cls(**kwargs)


def _cross_checks(cfg: Config) -> None:
    m = cfg.model
    if not m.hidden:
        raise ConfigError("model.hidden: the encoder needs at least one hidden width, e.g. [500]")
    if not choices.MODEL_KINDS[m.kind].dense and m.activation == "gated":
        raise ConfigError(f"model.activation: 'gated' applies to dense layers only; model.kind={m.kind} needs an "
                          "elementwise activation (relu, tanh, elu, gelu, softplus, swish)")
    if m.latent_dim2 is not None and not m.hidden2:
        raise ConfigError("model.hidden2: the second stochastic layer needs at least one hidden width, e.g. [100, 100]")
    if m.latent_dim2 is not None and not choices.PRIORS[m.prior].standard_normal:
        raise ConfigError("model.prior: the two-stochastic-layer model has a standard-normal top prior; "
                          "set model.prior=normal or model.latent_dim2=null")
    objectives.of(cfg).check(cfg)


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


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Return a copy of the raw mapping with each `dotted.key=value` applied in order."""
    import copy

    out = copy.deepcopy(raw)
    for text in overrides:
        path, value = parse_override(text)
        node = out
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"--set {text!r}: '{part}' is not a section")
            node = child
        node[path[-1]] = value
    return out


def _stop_checks(cfg: Config) -> None:
    t = cfg.train
    if not t.patience:
        return
    # "Without validation": too few validations in the run for `patience` of them to follow
    # a best one, so early stopping could never happen.
    validations = t.epochs // cfg.eval.every_epochs
    if validations <= t.patience:
        more = ", validate more often (eval.every_epochs)" if cfg.eval.every_epochs > 1 else ""
        raise ConfigError(f"train.patience: {t.patience} validations without improvement cannot happen in a run that "
                          f"validates {validations} times (train.epochs={t.epochs}, eval.every_epochs="
                          f"{cfg.eval.every_epochs}); set train.patience below {max(validations, 1)}{more} "
                          f"or train.patience=0 (off)")
    if not cfg.checkpoint.keep_best:
        raise ConfigError("train.patience: early stopping keeps the best checkpoint; set checkpoint.keep_best=true")


def from_dict(raw: Any) -> Config:
    cfg = _build(Config, raw, "")
    _cross_checks(cfg)
    _stop_checks(cfg)
    return cfg


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
        raise ConfigError(f"{p} is not valid YAML: {_first_line(e)}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: the top level must be a mapping of keys, got {type(raw).__name__}")
    return raw


def load(path: str | Path | None, overrides: list[str] = ()) -> Config:
    """Read YAML (or start from defaults when `path` is None), apply overrides, validate."""
    raw = read_yaml(path) if path is not None else {}
    return from_dict(apply_overrides(raw, list(overrides)))


# Keys `vae train --resume RUN --set ...` may change: they decide how long to train, what
# to log and where the data lives, never what a step computes. A prefix ending in "."
# covers a whole section.
RESUMABLE = ("train.epochs", "train.skip_nonfinite", "train.devices", "train.time_limit", "train.patience",
             "train.min_delta", "eval.", "checkpoint.", "log.",
             "data.data_dir", "data.manual_dir", "data.cache_dir")


def resumable(key: str) -> bool:
    return any(key == k or (k.endswith(".") and key.startswith(k)) for k in RESUMABLE)


def apply_resume_overrides(cfg: Config, overrides: list[str]) -> Config:
    """`cfg` with `overrides` applied, or ConfigError if one would change what training computes."""
    for text in overrides:
        path, _ = parse_override(text)
        key = ".".join(path)
        if not resumable(key):
            raise ConfigError(
                f"--set {key}: cannot change on --resume (the resumed run would no longer be the experiment its "
                f"config.yaml describes); keys that may change: {', '.join(k + ('*' if k.endswith('.') else '') for k in RESUMABLE)}; "
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
