"""What several test modules share: the paths and environment, running `vae` (a separate
process or in this one), the one-line-error assertion, the tiny dataset and its overrides,
building a trained fixture once per session, and comparing states bit for bit.

Imported by conftest.py and by test modules (`from helpers import ...`): pytest puts tests/
on sys.path for the conftest beside it. Nothing here is a fixture.
"""
from __future__ import annotations

import fcntl
import json
import math
import os
import pickle
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import jax
import numpy as np
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "bmnist_mlp.yaml"
SHARED = ROOT.parent / "shared"
BMNIST = SHARED / "data" / "binarized_mnist"
TINY = "tiny_bars"  # a dataset name that exists only in the tests' cache


def compile_cache() -> Path:
    """The session's JAX compile cache (conftest.py makes it before any test module loads)."""
    return Path(os.environ["VAECLI_TEST_COMPILE_CACHE"])


ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "VAECLI_COMPILE_CACHE": os.environ.get("VAECLI_TEST_COMPILE_CACHE", "")}


# ------------------------------------------------------------------------- running vae


@dataclass
class Out:
    code: int
    stdout: str
    stderr: str
    exception: BaseException | None = None  # in-process only: what the command raised


def vae_command(*args) -> list[str]:
    return [sys.executable, "-m", "vaecli.cli", *map(str, args)]


def vae_process(*args, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `python -m vaecli.cli ARGS` as a separate process, stdout and stderr pipes (not
    terminals), the test environment changed by `env`."""
    return subprocess.run(vae_command(*args), cwd=ROOT, env={**ENV, **(env or {})}, capture_output=True, text=True,
                          timeout=timeout)


def vae_popen(*args, env: dict | None = None, stderr=subprocess.PIPE) -> subprocess.Popen:
    """Start `python -m vaecli.cli ARGS` in the test environment changed by `env` and return
    at once (the tests that signal, kill or watch a running process): stdout a pipe, stderr
    a pipe unless given (a terminal)."""
    return subprocess.Popen(vae_command(*args), cwd=ROOT, env={**ENV, **(env or {})}, stdout=subprocess.PIPE,
                            stderr=stderr, text=True)


def vae(*args, timeout: float = 300) -> Out:
    """Run `python -m vaecli.cli ARGS` as a separate process."""
    p = vae_process(*args, timeout=timeout)
    return Out(p.returncode, p.stdout, p.stderr)


def vae_inproc(*args, env: dict | None = None) -> Out:
    """Run the same command in this process (no interpreter start, JAX imported once), with
    the environment changed by `env` while it runs (a value None unsets the variable)."""
    from vaecli.cli import app

    r = CliRunner().invoke(app, [str(a) for a in args], env=env)
    return Out(r.exit_code, r.stdout, r.stderr, r.exception)


def assert_error(out: Out, code: int, *needles: str, only_line: bool = True) -> str:
    """Exit `code`, exactly one `error:` line on stderr naming every needle, no traceback,
    nothing on stdout. `only_line`: stderr holds nothing else (False where TensorFlow,
    imported to prepare data, prints its own start-up notes)."""
    assert out.code == code, (out.code, out.stderr)
    assert "Traceback" not in out.stderr
    if out.exception is not None:  # in-process: it ended through typer.Exit, not an exception
        assert isinstance(out.exception, SystemExit), repr(out.exception)
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, out.stderr
    if only_line:
        assert out.stderr.strip() == errors[0]
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    assert out.stdout == ""
    return errors[0]


def run_folders(runs_dir: Path) -> list[Path]:
    return sorted(runs_dir.iterdir()) if runs_dir.exists() else []


def sets(overrides) -> list[str]:
    return [a for o in overrides for a in ("--set", o)]


# ---------------------------------------------------------------------- the tiny data


def make_bars(n: int, seed: int, size: int = 8) -> np.ndarray:
    """Binary images of one horizontal and one vertical bar: structured enough to learn fast."""
    rng = np.random.default_rng(seed)
    img = np.zeros((n, size, size, 1), np.uint8)
    rows, cols = rng.integers(0, size, n), rng.integers(0, size, n)
    img[np.arange(n), rows, :, 0] = 1
    img[np.arange(n), :, cols, 0] = 1
    return img


def tiny_overrides(cache: Path) -> list[str]:
    return [f"data.dataset={TINY}", f"data.cache_dir={cache}", "model.hidden=[32]", "model.latent_dim=4",
            "train.epochs=3", "train.batch_size=32", "eval.every_epochs=1", "eval.batch_size=64",
            "eval.grid=16", "checkpoint.every_epochs=1", "checkpoint.keep=5", "log.progress=none"]


# A VQ-VAE on the tiny data (with tiny_overrides): two codes of 2 numbers per image, 16 codebook
# vectors of which the bars use some 12, and counts that forget fast (decay 0.9), so that the
# dead-code restarts fire within a few steps of a 3-epoch run.
TINY_VQ = ["model.latent=vq", "objective.name=vq", "model.latent_dim=4", "model.code_dim=2", "model.codebook_size=16",
           "model.codebook_decay=0.9", "model.dead_code_threshold=0.5"]


def toy_sprites_overrides(cache: Path) -> list[str]:
    """A run on the procedural toy_sprites (64x64, five factors) that trains in seconds: a
    small MLP with 10 latents, one epoch."""
    return ["data.dataset=toy_sprites", f"data.cache_dir={cache}", "model.hidden=[64]", "model.latent_dim=10",
            "train.epochs=1", "train.batch_size=64", "eval.every_epochs=1", "eval.grid=16",
            "checkpoint.every_epochs=1", "log.progress=none", "log.tensorboard=false"]


def tiny_train_args(cache: Path, runs_dir: Path, name: str) -> list[str]:
    return ["train", "--config", CONFIG, *sets(tiny_overrides(cache)), "--set", "train.epochs=2",
            "--name", name, "--runs-dir", runs_dir]


AMAT = {"train": "binarized_mnist_train.amat", "validation": "binarized_mnist_valid.amat",
        "test": "binarized_mnist_test.amat"}


def read_amat(path: Path) -> np.ndarray:
    """Larochelle's .amat file as uint8 (N, 28, 28, 1), read independently of TFDS and of
    vaecli: each line is 784 digits 0/1, each followed by a space or the newline."""
    raw = np.fromfile(path, np.uint8).reshape(-1, 2 * 784)
    assert np.all(raw[:, 1:-1:2] == ord(" ")) and np.all(raw[:, -1] == ord("\n"))  # (np.unique: seconds)
    return (raw[:, ::2] - ord("0")).reshape(-1, 28, 28, 1)


def bmnist_config(root: Path):
    from vaecli import config

    return config.load(CONFIG, [f"data.cache_dir={root / 'cache'}", "log.progress=none"])


# ------------------------------------------------------------ trained fixtures, once


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


def two_processes_once(tiny_cache, tmp_path_factory) -> tuple:
    """`vae train` through the command line in two fresh processes, one after the other,
    sharing a new, empty compile cache; log.progress=auto (stdout and stderr are pipes here).
    The second logs its compilations (JAX_LOG_COMPILES), cache hits included. Returns (first,
    the run folders after it, the cache's entries after it, second): test_shell's subject,
    and the first run is `cli_run`. Built once in the session; each caller gets its own copy."""
    def build(tmp: Path) -> tuple:
        cache_dir, runs_dir = tmp / "jax", tmp / "runs"
        args = [*tiny_train_args(tiny_cache, runs_dir, "clitest"), "--set", "log.progress=auto"]
        first = vae_process(*args, env={"VAECLI_COMPILE_CACHE": str(cache_dir)})
        folders = run_folders(runs_dir)
        entries = sorted(p.name for p in cache_dir.iterdir()) if cache_dir.is_dir() else []
        second = vae_process(*args, env={"VAECLI_COMPILE_CACHE": str(cache_dir), "JAX_LOG_COMPILES": "1"})
        return first, folders, entries, second

    return built_once(tmp_path_factory, "two-processes", build)[1]


# ------------------------------------------------------------------- reading runs back


def final_state(run_path: Path, step=None):
    from vaecli.rundir import layout, restore

    run = layout.open_run(run_path)
    _, state, chosen, _ = restore.load_state(run.config, run.image_shape, run.checkpoint_dir, step)
    return state, chosen


def assert_same_bits(a: dict, b: dict) -> None:
    la, lb = jax.tree_util.tree_flatten_with_path(a)[0], jax.tree_util.tree_flatten_with_path(b)[0]
    assert [p for p, _ in la] == [p for p, _ in lb]
    for (path, x), (_, y) in zip(la, lb):
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape, path
        assert x.tobytes() == y.tobytes(), f"{jax.tree_util.keystr(path)} differs"


def summary(run: Path) -> dict:
    return json.loads((Path(run) / "summary.json").read_text())


def standard_error(values) -> float:
    """Standard error of the mean of a 1-D sample."""
    values = np.asarray(values, np.float64)
    return float(values.std(ddof=1) / math.sqrt(len(values)))


def standard_errors(values, axis: int = 0) -> np.ndarray:
    """Standard errors of the means along `axis` (e.g. over the draws of a gradient estimate)."""
    values = np.asarray(values, np.float64)
    return values.std(axis=axis, ddof=1) / math.sqrt(values.shape[axis])


def paired_t(diffs) -> np.ndarray:
    """Per column, the t statistic of the mean of paired differences (R, P), live columns only:
    two gradient estimators fed the same noise, R draws of P parameters."""
    diffs = np.asarray(diffs, np.float64)
    live = diffs.std(0) > 0
    return diffs.mean(0)[live] / standard_errors(diffs[:, live])


def flat(tree):
    """Every leaf of a pytree of arrays, raveled into one vector (inside or outside jit)."""
    import jax.numpy as jnp

    return jnp.concatenate([jnp.ravel(a) for a in jax.tree.leaves(tree)])


def train_records(run_path: Path) -> list[tuple]:
    from vaecli.rundir import metrics

    return [(r["step"], r["loss"]) for r in metrics.read(run_path) if r["split"] == "train"]


def train_and_eval(cfg, tmp_path, name, k=4):
    """Train `cfg` to completion and evaluate it with K=`k` on the test split: (run, train
    records, the K document); every training loss finite."""
    from vaecli.evaluation.elbo import evaluate
    from vaecli.rundir import metrics
    from vaecli.training.start import train

    path = train(cfg, tmp_path, name, argv=[], progress="none")
    assert json.loads((path / "summary.json").read_text())["status"] == "completed"
    rows = [r for r in metrics.read(path) if r["split"] == "train"]
    assert all(math.isfinite(r["loss"]) for r in rows)
    return path, rows, evaluate(path, split="test", samples=k, seed=0)["results"][0]


def gaussian_channel_terms(cov, s2=0.25) -> dict:
    """MI, TC and dimension-wise KL, in float64, of the Gaussian channel z = x + N(0, s2·I),
    x ~ N(0, cov): the closed forms β-TCVAE's estimator is checked against."""
    c = np.asarray(cov, np.float64) + s2 * np.eye(len(cov))
    tc = 0.5 * (np.sum(np.log(np.diag(c))) - np.linalg.slogdet(c)[1])
    mi = 0.5 * (np.linalg.slogdet(c)[1] - len(c) * math.log(s2))
    dim_kl = 0.5 * np.sum(np.diag(c) - 1 - np.log(np.diag(c)))
    return {"mi": mi, "tc": tc, "dim_kl": dim_kl}
