"""vaecli: a command-line experiment runner for variational autoencoders, and its Python face.

    run = vaecli.load("runs/bmnist_mlp-20261202T101500Z")     # a trained run (vaecli.Run)
    mean, std = run.encode(images); x = run.decode(z); x = run.generate(64, seed=0)
    ll = run.log_likelihood(images, k=5000)                    # per image, as `vae eval-elbo`
    path = vaecli.train("configs/bmnist_mlp.yaml", overrides=["train.epochs=2"])
    report = vaecli.evaluate(path, split="test", samples=[1, 5000])
    doc = vaecli.sample_quality(path, features=my_inception)     # FID, KID, precision/recall

docs/python.md walks through it. Importing this package is cheap: no JAX, TensorFlow or
dataset work happens until a function is called (the names below are imported on first use).
"""
from __future__ import annotations

import importlib

from vaecli.errors import (
    ConfigError,
    DataError,
    OutOfTime,
    Paused,
    RunError,
    StorageError,
    UsageError,
    VaeError,
)

__version__ = "0.2.0"

__all__ = [
    "ConfigError",
    "DataError",
    "OutOfTime",
    "Paused",
    "Run",
    "RunError",
    "StorageError",
    "UsageError",
    "VaeError",
    "__version__",
    "evaluate",
    "load",
    "sample_quality",
    "train",
    "train_features",
]

_LAZY = {"load": "vaecli.api.run", "Run": "vaecli.api.run", "train": "vaecli.api.commands",
         "evaluate": "vaecli.evaluation.elbo", "sample_quality": "vaecli.api.samples",
         "train_features": "vaecli.api.samples"}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # imported once; later lookups do not come here
        return value
    raise AttributeError(f"module 'vaecli' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
