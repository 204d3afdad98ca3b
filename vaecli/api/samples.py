"""`vaecli.sample_quality` and `vaecli.train_features`: `vae eval-samples` and
`vae train-features` from Python, through the commands' own library calls, with one thing
the command line cannot take: a feature function (Inception, DINO, anything that maps
images to vectors) in place of vaecli's classifier. No JAX at import.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from vaecli.errors import UsageError


def sample_quality(run: str | Path, features: str | Path | Callable | None = None, n: int | None = None,
                   split: str = "test", seed: int = 0, temperature: float = 1.0, step=None, k: int = 3,
                   write: bool = True, out: str | Path | None = None, raw_params: bool = False) -> dict:
    """FID, KID and precision/recall of the run's prior samples against `n` images of `split`:
    the document `vae eval-samples` writes (and, with `write`, the same file in RUN/eval).

    `features`: a feature file from `vae train-features` / `vaecli.train_features` (None: the
    one in vaecli's cache for the run's dataset), or a function taking float32 images
    (B, H, W, C) in [0, 1] and returning features (B, F) as a numpy or JAX array. It is
    called on batches of at most 500 images; the JSON names it by its `__name__` and a
    fingerprint, the SHA-256 of its outputs on 8 fixed probe images (so two functions of one
    name are told apart; the file name ends in `-f<name>_<fingerprint[:8]>`). Images are
    passed as the run sees them: a function that wants RGB at 299×299 (Inception) must repeat
    the channel and resize itself.
    """
    if features is not None and not callable(features) and not isinstance(features, (str, Path)):
        raise UsageError(f"features={features!r}: expected a feature file path or a function images -> features")
    from vaecli.evaluation import sample_quality as lib

    return lib.evaluate(run, features=features, n=n, split=split, seed=seed, temperature=temperature, step=step,
                        k=k, raw_params=raw_params, out=out, write=write)


def train_features(dataset: str | None = None, label: str = "label", *, config: str | Path | None = None,
                   overrides: list[str] = (), epochs: int = 5, seed: int = 0, out: str | Path | None = None) -> dict:
    """`vae train-features`: the feature classifier trained on `dataset` (or the data.* section of
    `config` with `overrides`, e.g. ["data.cache_dir=DIR"]) and `label`; returns its record
    (test accuracy, SHA-256, `written_to`: the weights file to pass as `features`)."""
    from vaecli import config as config_lib
    from vaecli.evaluation.feature_file import train_features as train

    cfg = config_lib.load(config, list(overrides) + ([f"data.dataset={dataset}"] if dataset else []))
    return train(cfg.data, label=label, epochs=epochs, seed=seed, out=out)
