"""What the suite does for speed, and its shared fixtures.

For speed (the suite runs on two cores; every choice below was measured):
- One temporary JAX compile cache for the session, made by the first pytest process and
  read by every pytest-xdist worker and every `vae` subprocess (they inherit the
  environment), so the tiny programs they share compile once. Tests never write to the
  user's cache (~/.cache/vaecli/jax); the process that made it removes it.
- XLA flags for the tests only (benchmarks and users get XLA's defaults): the tests compile
  some hundreds of small programs and run each for a few steps, so compiling is most of
  their time. Backend optimisation and the MLIR CPU fusion emitters cost more than they save
  there (test_zoo + test_objectives: 195 s of CPU with the first off, 113 s with both), and
  so does splitting each LLVM module for parallel code generation on two cores shared by
  three workers (6 tiny epoch programs, 4 alternating rounds: 6.63-7.40 s of compile CPU
  split, 5.41-6.17 s unsplit). Set before any JAX backend starts.
- vaecli keeps the 16 most recently used compiled programs (vaecli.compiled.cache); a
  worker uses some hundred, and one evicted and needed again is traced and lowered again
  (one suite run: 14 rebuilds, 4.5 s of CPU): tests keep 64.
- Garbage collection after 50,000 net allocations instead of 700, as `vae` does in its own
  process (a worker holds the JAX objects of hundreds of tests: test_zoo alone spent 2.99 s
  in collections, 0.70 s with this trigger).
- Test-side computations on JAX arrays are jitted, or done in NumPy (float64 where they are
  references): eager JAX compiles one program per operation and shape, ~25 ms each here, and
  a suite run once compiled some 3,300 of them (a reference gradient alone: ~170).
- The tests that import TensorFlow (~6 s of CPU) or wandb + mlflow (~3 s) carry a marker, and
  `pytest_collection_modifyitems` runs each group first and together: pytest-xdist's
  worksteal hands each worker a contiguous slice of this order, so a group at the very
  start stays with one worker, which alone pays the import.

Fixtures: a tiny synthetic dataset written as a vaecli cache, a tiny trained run, and the
shared binarized MNIST files (tests that need them skip when ../shared is absent). Helpers
that are not fixtures are in helpers.py.
"""
from __future__ import annotations

import atexit
import gc
import os
import shutil
import tempfile
from pathlib import Path

import pytest

if "VAECLI_TEST_COMPILE_CACHE" not in os.environ:
    os.environ["VAECLI_TEST_COMPILE_CACHE"] = tempfile.mkdtemp(prefix="vaecli-test-jax-cache-")
    atexit.register(shutil.rmtree, os.environ["VAECLI_TEST_COMPILE_CACHE"], ignore_errors=True)
    os.environ["XLA_FLAGS"] = " ".join([os.environ.get("XLA_FLAGS", ""), "--xla_backend_optimization_level=0",
                                        "--xla_cpu_use_fusion_emitters=false",
                                        "--xla_cpu_parallel_codegen_split_count=1"]).strip()
os.environ["VAECLI_COMPILE_CACHE"] = os.environ["VAECLI_TEST_COMPILE_CACHE"]

from helpers import (  # noqa: E402
    AMAT,
    BMNIST,
    TINY,
    bmnist_config,
    built_once,
    make_bars,
    read_amat,
    tiny_overrides,
    toy_sprites_overrides,
)

from vaecli import config, data  # noqa: E402
from vaecli.compiled import cache  # noqa: E402

cache.enable(os.environ["VAECLI_TEST_COMPILE_CACHE"])  # the in-process library calls use it too
cache.MAX_PROGRAMS = 64
gc.set_threshold(50_000)

IMPORT_GROUPS = ("tensorflow", "trackers")  # markers of tests that import a slow-to-import library


def pytest_collection_modifyitems(items):
    def group(item) -> int:
        return next((i for i, name in enumerate(IMPORT_GROUPS) if item.get_closest_marker(name)), len(IMPORT_GROUPS))

    items.sort(key=group)  # stable: file order within each group and among the rest


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


@pytest.fixture
def patched_programs(monkeypatch):
    """For a test that patches code the compiled programs trace: no program kept by the
    process (vaecli.compiled.cache, keyed by config) is used, and none traced here is kept."""
    monkeypatch.setattr(cache, "ENABLED", False)


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
    from vaecli.training.start import train

    return built_once(tmp_path_factory, "tiny-run", lambda root: train(
        tiny_config, root, "tiny", argv=["pytest"], progress="none"))[1]


@pytest.fixture(scope="session")
def bmnist_dir() -> Path:
    if not (BMNIST / "binarized_mnist_train.amat").exists():
        pytest.skip("../shared/data/binarized_mnist is absent")
    return BMNIST


@pytest.fixture(scope="session")
def bmnist_images(bmnist_dir) -> dict:
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


@pytest.fixture(scope="session")
def bars_features(tmp_path_factory) -> Path:
    """A feature classifier of 8x8 bars images (the tiny dataset's shape; label: the row of
    the horizontal bar), one epoch, trained on its own labelled cache `bars_rows` beside it
    (the folder `cache` next to the weights): the weights file (the record beside it)."""
    from vaecli.evaluation import feature_file

    def build(root: Path) -> Path:
        splits = {}
        for name, n, seed in (("train", 256, 0), ("validation", 64, 1), ("test", 64, 2)):
            images = make_bars(n, seed)
            splits[name] = {"images": images, "labels": images[:, :, :, 0].all(axis=2).argmax(axis=1)}
        data.write_cache(root / "cache" / "bars_rows", splits)
        cfg = config.load(None, [f"data.cache_dir={root / 'cache'}", "data.dataset=bars_rows"])
        return Path(feature_file.train_features(cfg.data, "label", epochs=1, out=root / "rows")["written_to"])

    return built_once(tmp_path_factory, "bars-features", build)[1]


@pytest.fixture(scope="session")
def toy_run(tmp_path_factory) -> Path:
    """One epoch of a small MLP (10 latents) on toy_sprites, made and cached on first use."""
    from vaecli.training.start import train

    def build(root: Path) -> Path:
        cfg = config.load(None, toy_sprites_overrides(root / "cache"))
        return train(cfg, root / "runs", "toy", argv=["pytest"], progress="none")

    return built_once(tmp_path_factory, "toy-sprites-run", build)[1]
