"""Shared fixtures: a tiny synthetic dataset written as a vaecli cache, a tiny trained run,
and the shared binarized MNIST files (tests that need them skip when ../shared is absent)."""
from __future__ import annotations

import atexit
import fcntl
import gc
import os
import pickle
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from vaecli import compile_cache, config, data, programs

SHARED = Path(__file__).resolve().parents[2] / "shared"
BMNIST = SHARED / "data" / "binarized_mnist"
TINY = "tiny_bars"  # a dataset name that exists only in the tests' cache

# Tests never write to the user's JAX compile cache (~/.cache/vaecli/jax): one temporary
# cache for the session, made by the first pytest process (pytest-xdist's workers inherit
# its environment) and read by every worker and every subprocess, which then skip
# recompiling the tiny programs they share. The process that made it removes it.
if "VAECLI_TEST_COMPILE_CACHE" not in os.environ:
    os.environ["VAECLI_TEST_COMPILE_CACHE"] = tempfile.mkdtemp(prefix="vaecli-test-jax-cache-")
    atexit.register(shutil.rmtree, os.environ["VAECLI_TEST_COMPILE_CACHE"], ignore_errors=True)
    # The tests compile some hundreds of small programs and run each for a few steps, so
    # compiling is most of their time: XLA's backend optimisation and its newer (MLIR) CPU
    # fusion emitters cost more than they save there (test_zoo + test_objectives: 195 s of
    # CPU with the first off, 113 s with both). Set before any JAX backend starts; workers
    # and subprocesses inherit it. Tests only: benchmarks and users get XLA's defaults.
    # Splitting each program's LLVM module for parallel code generation (the default) costs
    # more than it saves on two cores shared by three workers: 6 tiny epoch programs, 4
    # alternating rounds, 6.63-7.40 s of compile CPU split, 5.41-6.17 s unsplit.
    os.environ["XLA_FLAGS"] = " ".join([os.environ.get("XLA_FLAGS", ""), "--xla_backend_optimization_level=0",
                                        "--xla_cpu_use_fusion_emitters=false",
                                        "--xla_cpu_parallel_codegen_split_count=1"]).strip()
COMPILE_CACHE = Path(os.environ["VAECLI_TEST_COMPILE_CACHE"])
os.environ["VAECLI_COMPILE_CACHE"] = str(COMPILE_CACHE)
# The library calls the tests make in-process (train.train, evaluate, sample...) use it too:
# a program compiled by one worker or test (same shapes, same code) is loaded by the others.
compile_cache.enable(COMPILE_CACHE)

# A worker runs hundreds of tests that use some hundred programs between them: vaecli keeps
# the 16 most recently used (vaecli.programs), and a program evicted there and needed again
# is traced and lowered again (one suite run: 14 such rebuilds, 4.5 s of CPU). Tests keep 64.
programs.MAX_PROGRAMS = 64

# As `vae` does in its own process (cli.main_process): a worker holds the JAX objects of
# hundreds of tests, and Python's default trigger (700 net allocations) walked them again
# and again (test_zoo alone: 2.99 s of collections, 0.70 s with a 50,000 trigger).
gc.set_threshold(50_000)

# Markers of tests that import a library taking seconds to import (TensorFlow: ~6 s of CPU;
# wandb + mlflow: ~3 s). Each group runs first and together: pytest-xdist's worksteal hands
# each worker a contiguous slice of this order and steals from the ends of the slices, so a
# group at the very start stays with one worker. Left in file order, test_data.py's sat at
# the end of the first slice, and its last tests were often stolen: two workers imported
# TensorFlow.
IMPORT_GROUPS = ("tensorflow", "trackers")


def pytest_collection_modifyitems(items):
    def group(item) -> int:
        return next((i for i, name in enumerate(IMPORT_GROUPS) if item.get_closest_marker(name)), len(IMPORT_GROUPS))

    items.sort(key=group)  # stable: file order within each group and among the rest


def built_once(tmp_path_factory, name: str, build: Callable[[Path], Any], copy: bool = True) -> tuple[Path, Any]:
    """Run `build(folder)` once in the whole session, across pytest-xdist's workers too (the
    first worker to ask builds under a file lock; the others wait and reuse it): a trained
    run costs its training once, not once per worker. Returns (folder, what build returned).
    With `copy`, the folder is this worker's private copy, and every path in the returned
    value (str, Path, lists, tuples, dicts, CompletedProcess) points into the copy: the
    tests that write into a shared run keep the isolation they had with one process."""
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "built-once"
    root.mkdir(exist_ok=True)
    folder, done = root / name, root / f"{name}.pickle"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)  # a build that failed in another worker
            folder.mkdir()
            value = build(folder)
            done.write_bytes(pickle.dumps(value))
        value = pickle.loads(done.read_bytes())
    if not copy:
        return folder, value
    mine = tmp_path_factory.mktemp(name)
    shutil.copytree(folder, mine, dirs_exist_ok=True, symlinks=True)
    return mine, _relocate(value, str(folder), str(mine))


def _relocate(value, old: str, new: str):
    if isinstance(value, str):
        return value.replace(old, new)
    if isinstance(value, Path):
        return Path(str(value).replace(old, new))
    if isinstance(value, (list, tuple)):
        return type(value)(_relocate(v, old, new) for v in value)
    if isinstance(value, dict):
        return {k: _relocate(v, old, new) for k, v in value.items()}
    if isinstance(value, subprocess.CompletedProcess):
        return subprocess.CompletedProcess(_relocate(value.args, old, new), value.returncode,
                                           _relocate(value.stdout, old, new), _relocate(value.stderr, old, new))
    return value


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
    """One cache folder for the session (every worker reads the same one, so the paths in
    run folders built once stay valid)."""
    def build(root: Path) -> None:
        data.write_cache(root / TINY, {
            "train": {"images": make_bars(640, 0), "labels": None},
            "validation": {"images": make_bars(128, 1), "labels": None},
            "test": {"images": make_bars(128, 2), "labels": None},
        })
    return built_once(tmp_path_factory, "cache", build, copy=False)[0]


def tiny_overrides(cache: Path) -> list[str]:
    return [f"data.dataset={TINY}", f"data.cache_dir={cache}", "model.hidden=[32]", "model.latent_dim=4",
            "train.epochs=3", "train.batch_size=32", "eval.every_epochs=1", "eval.batch_size=64",
            "eval.grid=16", "checkpoint.every_epochs=1", "checkpoint.keep=5", "log.progress=none"]


@pytest.fixture
def patched_programs(monkeypatch):
    """For a test that patches code the compiled programs trace: no program kept by the
    process (vaecli.programs, keyed by config) is used, and none traced here is kept."""
    from vaecli import programs

    monkeypatch.setattr(programs, "ENABLED", False)


@pytest.fixture
def offline(tmp_path) -> list[str]:
    """`--set` arguments pointing at empty data folders: any data access fails (there is no
    network), and nothing is written to ~/.cache or ~/tensorflow_datasets."""
    (tmp_path / "cache").mkdir()
    (tmp_path / "tfds").mkdir()
    return [a for o in ["data.dataset=binarized_mnist", f"data.cache_dir={tmp_path / 'cache'}",
                        f"data.data_dir={tmp_path / 'tfds'}"] for a in ("--set", o)]


@pytest.fixture(scope="session")
def tiny_config(tiny_cache) -> config.Config:
    return config.load(None, tiny_overrides(tiny_cache))


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_config) -> Path:
    """One short run of the real trainer on the tiny dataset, shared by the tests that read it."""
    from vaecli import train

    return built_once(tmp_path_factory, "tiny-run", lambda root: train.train(
        tiny_config, root, "tiny", argv=["pytest"], progress="none"))[1]


AMAT = {"train": "binarized_mnist_train.amat", "validation": "binarized_mnist_valid.amat",
        "test": "binarized_mnist_test.amat"}


def read_amat(path: Path) -> np.ndarray:
    """Larochelle's .amat file as uint8 (N, 28, 28, 1), read independently of TFDS and of
    vaecli: each line is 784 digits 0/1, each followed by a space or the newline."""
    raw = np.fromfile(path, np.uint8).reshape(-1, 2 * 784)
    assert np.all(raw[:, 1:-1:2] == ord(" ")) and np.all(raw[:, -1] == ord("\n"))  # (np.unique: seconds)
    return (raw[:, ::2] - ord("0")).reshape(-1, 28, 28, 1)


@pytest.fixture(scope="session")
def bmnist_dir() -> Path:
    if not (BMNIST / "binarized_mnist_train.amat").exists():
        pytest.skip("../shared/data/binarized_mnist is absent")
    return BMNIST


@pytest.fixture(scope="session")
def bmnist_images(bmnist_dir) -> dict[str, np.ndarray]:
    """The three splits of the shared files, {split: uint8 (N, 28, 28, 1)}."""
    return {split: read_amat(bmnist_dir / name) for split, name in AMAT.items()}


@pytest.fixture(scope="session")
def bmnist_cache(tmp_path_factory, bmnist_images):
    """The whole of binarized MNIST (the shared files) as a vaecli cache, written by the test
    once in the session: returns (config for bmnist_mlp with that cache, cache folder). Read
    only. TFDS's way from the same files to the cache is tested in test_data, on the first
    images of each split (TFDS PNG-encodes every image it prepares: ~30 s for all 70,000)."""
    def build(root: Path) -> None:
        data.write_cache(root / "cache" / "binarized_mnist",
                         {s: {"images": a, "labels": None} for s, a in bmnist_images.items()})

    root = built_once(tmp_path_factory, "bmnist", build, copy=False)[0]
    return bmnist_config(root), root / "cache"


def bmnist_config(root: Path) -> config.Config:
    return config.load(Path(__file__).resolve().parents[1] / "configs" / "bmnist_mlp.yaml",
                       [f"data.cache_dir={root / 'cache'}", "log.progress=none"])
