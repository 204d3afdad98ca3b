"""A raw mapping (YAML, overrides applied) -> one frozen, typed, checked Config.

Unknown keys, wrong types and impossible values raise `ConfigError` naming the dotted
key, before anything is written anywhere; then the checks that involve several keys, and
the objective's own (vaecli.registry).
"""
from __future__ import annotations

import dataclasses
import difflib
import typing
from typing import Any, Literal

from vaecli import finite, registry
from vaecli.config.schema import Config
from vaecli.errors import ConfigError


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
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                pass
        out = finite.number(value)
        if out is not None:
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
        close = difflib.get_close_matches(str(unknown[0]), list(fields), n=1)
        hint = f": did you mean '{prefix}{close[0]}'?" if close else ""
        raise ConfigError(f"unknown config key '{key}'{hint} (valid here: {', '.join(fields)})")
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
    _flow_checks(m)
    if not m.hidden:
        raise ConfigError("model.hidden: the encoder needs at least one hidden width, e.g. [500]")
    if not registry.MODEL_KINDS[m.kind].dense and m.activation == "gated":
        raise ConfigError(f"model.activation: 'gated' applies to dense layers only; model.kind={m.kind} needs an "
                          "elementwise activation (relu, tanh, elu, gelu, softplus, swish)")
    if m.latent_dim2 is not None and not m.hidden2:
        raise ConfigError("model.hidden2: the second stochastic layer needs at least one hidden width, e.g. [100, 100]")
    _hierarchy_checks(m)
    _conditional_checks(m)
    _source_checks(cfg.data)
    _vq_checks(cfg)
    registry.objective(cfg).check(cfg)


def _conditional_checks(m) -> None:
    if not m.conditional:
        return
    if m.kind not in ("mlp", "conv"):
        raise ConfigError(f"model.conditional: the conditional VAE is built for model.kind mlp or conv, not {m.kind}")
    if m.latent != "gaussian":
        raise ConfigError("model.conditional: the conditional VAE has a Gaussian latent; a conditional VQ-VAE is not "
                          "built: set model.latent=gaussian or model.conditional=false")
    if m.latent_dim2 is not None or m.flow.kind is not None or registry.PRIORS[m.prior].of_posterior:
        raise ConfigError("model.conditional: the conditional VAE has one Gaussian stochastic layer and a prior "
                          "that does not read the encoder; set model.latent_dim2=null, model.flow.kind=null and "
                          "model.prior=normal (or model.conditional=false)")


def _source_checks(d) -> None:
    if d.source == "tfds":
        for name in ("path", "image_size"):
            if getattr(d, name) is not None:
                raise ConfigError(f"data.{name}: only for images of your own; set data.source=folder (or arrays) "
                                  f"or data.{name}=null")
        return
    if d.path is None:
        what = "a folder of images" if d.source == "folder" else "an .npz file with x (and y)"
        raise ConfigError(f"data.path: data.source={d.source} reads {what}; set data.path=PATH")
    if d.image_size is not None and d.source != "folder":
        raise ConfigError("data.image_size: arrays are taken at their own size; resize them before saving, "
                          "or set data.image_size=null")
    if d.dataset != type(d)().dataset:
        raise ConfigError(f"data.dataset: names a TFDS dataset, but data.source={d.source} reads data.path; "
                          "remove data.dataset")


def _vq_checks(cfg: Config) -> None:
    """model.latent=vq and objective.name=vq go together; the codes must tile the latent."""
    m, vq = cfg.model, cfg.model.latent == "vq"
    if vq != (cfg.objective.name == "vq"):
        raise ConfigError("objective.name: model.latent=vq is trained by objective.name=vq and only it; set both "
                          "(or neither)" if vq else "model.latent: objective.name=vq trains a VQ-VAE; set model.latent=vq")
    if not vq:
        default = type(m)()
        for name in ("codebook_size", "code_dim", "codebook_update", "codebook_decay", "dead_code_threshold"):
            if getattr(m, name) != getattr(default, name):
                raise ConfigError(f"model.{name}: a setting of the VQ-VAE's codebook; this run has model.latent="
                                  f"{m.latent} (set model.latent=vq and objective.name=vq, or leave it at its default)")
        return
    if m.latent_dim2 is not None or m.flow.kind is not None or m.prior != "normal":
        raise ConfigError("model.latent: a VQ-VAE has one discrete latent with a prior of its own (vae train-prior); "
                          "leave model.latent_dim2, model.flow.kind and model.prior at their defaults")
    if m.dead_code_threshold > 0 and m.codebook_update != "ema":
        raise ConfigError("model.dead_code_threshold: restarts codes of a codebook set by moving averages; with "
                          "model.codebook_update=loss the optimizer's moments would pull them back; set "
                          "model.codebook_update=ema or model.dead_code_threshold=0")
    if m.kind == "mlp" and m.latent_dim % m.code_dim:
        raise ConfigError(f"model.code_dim: the MLP encoder's {m.latent_dim} outputs (model.latent_dim) are cut into "
                          f"codes of model.code_dim={m.code_dim} numbers, which does not divide them; choose a divisor "
                          f"of {m.latent_dim} or set model.latent_dim to a multiple of {m.code_dim}")


def _hierarchy_checks(m) -> None:
    if m.hierarchy == "hvae":
        if m.latent_dim2 is None:
            raise ConfigError("model.hierarchy: hvae is a two-stochastic-layer model; set model.latent_dim2 "
                              "(e.g. 40) or model.hierarchy=chain")
        if not registry.MODEL_KINDS[m.kind].dense:
            raise ConfigError(f"model.kind: the hvae hierarchy is built of dense layers; set model.kind=mlp "
                              f"(model.kind={m.kind} has convolutions)")
        if m.hidden2 != type(m)().hidden2:
            raise ConfigError("model.hidden2: the hvae hierarchy builds every network from model.hidden; leave "
                              "model.hidden2 at its default (or set model.hierarchy=chain)")
    elif m.latent_dim2 is not None and not registry.PRIORS[m.prior].standard_normal:
        raise ConfigError("model.prior: the chain two-stochastic-layer model has a standard-normal top prior; "
                          f"set model.prior=normal, or model.hierarchy=hvae for {m.prior} on z2")


def _flow_checks(m) -> None:
    f, default = m.flow, type(m.flow)()
    if f.kind is None:
        for name in ("steps", "hidden"):
            if getattr(f, name) != getattr(default, name):
                raise ConfigError(f"model.flow.{name}: there is no flow (model.flow.kind is null); set "
                                  f"model.flow.kind=planar or iaf, or leave model.flow.{name} at its default")
        return
    if f.kind != "iaf" and f.hidden != default.hidden:
        raise ConfigError(f"model.flow.hidden: the widths of the IAF's MADE nets; model.flow.kind={f.kind} has none "
                          "(leave it at its default or set model.flow.kind=iaf)")
    if m.latent_dim2 is not None:
        raise ConfigError("model.flow.kind: a flow transforms the posterior of one stochastic layer; set "
                          "model.latent_dim2=null or model.flow.kind=null")
    if registry.PRIORS[m.prior].of_posterior:
        raise ConfigError(f"model.prior: {m.prior} is a mixture of the posteriors q(z|u_k), whose density a flow "
                          "gives only along its own draws; set model.prior=normal or model.flow.kind=null")


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
