"""Shared fixtures: a tiny synthetic dataset written as a vaecli cache, a tiny trained run,
and the shared binarized MNIST files (tests that need them skip when ../shared is absent)."""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

from vaecli import config, data

SHARED = Path(__file__).resolve().parents[2] / "shared"
BMNIST = SHARED / "data" / "binarized_mnist"
TINY = "tiny_bars"  # a dataset name that exists only in the tests' cache

# Tests never write to the user's JAX compile cache (~/.cache/vaecli/jax): one temporary
# cache for the session, read by the commands run in-process and by the subprocesses
# (they inherit os.environ), which then skip recompiling the tiny programs they share.
COMPILE_CACHE = Path(tempfile.mkdtemp(prefix="vaecli-test-jax-cache-"))
# The tests compile some hundreds of small programs and run each for a few steps: XLA's
# backend optimisation costs more time than it saves there (test_zoo's trainings: 1.6x
# faster without it). Set before any JAX backend starts; subprocesses inherit it. Tests
# only: benchmarks and users get XLA's default.
os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0".strip()
os.environ["VAECLI_COMPILE_CACHE"] = str(COMPILE_CACHE)
atexit.register(shutil.rmtree, COMPILE_CACHE, ignore_errors=True)


def make_bars(n: int, seed: int, size: int = 8) -> np.ndarray:
    """Binary images of one horizontal and one vertical bar: structured enough to learn fast."""
    rng = np.random.default_rng(seed)
    img = np.zeros((n, size, size, 1), np.uint8)
    rows, cols = rng.integers(0, size, n), rng.integers(0, size, n)
    img[np.arange(n), rows, :, 0] = 1
    img[np.arange(n), :, cols, 0] = 1
    return img


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cache")
    data.write_cache(root / TINY, {
        "train": {"images": make_bars(640, 0), "labels": None},
        "validation": {"images": make_bars(128, 1), "labels": None},
        "test": {"images": make_bars(128, 2), "labels": None},
    })
    return root


def tiny_overrides(cache: Path) -> list[str]:
    return [f"data.dataset={TINY}", f"data.cache_dir={cache}", "model.hidden=[32]", "model.latent_dim=4",
            "train.epochs=3", "train.batch_size=32", "eval.every_epochs=1", "eval.batch_size=64",
            "eval.grid=16", "checkpoint.every_epochs=1", "checkpoint.keep=5", "log.progress=none"]


@pytest.fixture(scope="session")
def tiny_config(tiny_cache) -> config.Config:
    return config.load(None, tiny_overrides(tiny_cache))


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_config) -> Path:
    """One short run of the real trainer on the tiny dataset, shared by the tests that read it."""
    from vaecli import train

    return train.train(tiny_config, tmp_path_factory.mktemp("runs"), "tiny", argv=["pytest"], progress="none")


@pytest.fixture(scope="session")
def bmnist_dir() -> Path:
    if not (BMNIST / "binarized_mnist_train.amat").exists():
        pytest.skip("../shared/data/binarized_mnist is absent")
    return BMNIST


@pytest.fixture(scope="session")
def bmnist_cache(tmp_path_factory, bmnist_dir):
    """binarized_mnist prepared by TFDS from the shared files into a fresh TFDS data_dir and a
    fresh vaecli cache: returns (config for bmnist_mlp with those paths, cache folder)."""
    root = tmp_path_factory.mktemp("bmnist")
    cfg = config.load(Path(__file__).resolve().parents[1] / "configs" / "bmnist_mlp.yaml",
                      [f"data.manual_dir={bmnist_dir}", f"data.data_dir={root / 'tfds'}",
                       f"data.cache_dir={root / 'cache'}", "log.progress=none"])
    data.prepare(cfg.data)
    return cfg, root / "cache"
