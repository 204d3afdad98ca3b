"""The first minutes of a new user: stdout carries each command's result alone whatever the
libraries underneath print, refusals come before the heavy imports, and the README's
Quickstart runs as written in a fresh home with no cache and no network."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import BMNIST, CONFIG, ENV, ROOT, Out, assert_error, vae_process

# A command whose libraries print on every level a library can: Python's sys.stdout (TFDS's
# "Downloading and preparing dataset"), file descriptor 1 (native code), C's buffered stdout,
# and a child process that inherits the descriptor.
NOISY_COMMAND = r"""
import ctypes, os, subprocess, sys
from vaecli.cli import process

def command():
    print("python-level note")
    os.write(1, b"descriptor-level note\n")
    ctypes.CDLL(None).printf(b"C stdio note\n")
    subprocess.run([sys.executable, "-c", "print('child process note')"], check=True)
    process.echo("the result")

process.run(command)
"""


def test_what_libraries_print_never_reaches_stdout():
    p = subprocess.run([sys.executable, "-c", NOISY_COMMAND], env={**ENV, "PYTHONPATH": str(ROOT)},
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "the result\n"
    for note in ("python-level note", "descriptor-level note", "C stdio note", "child process note"):
        assert note in p.stderr, (note, p.stderr)


@pytest.fixture(scope="module")
def without_heavy_libraries(tmp_path_factory) -> dict:
    """An environment in which importing JAX, Flax, TensorFlow or TFDS fails: a command that
    answers in it did not need them."""
    root = tmp_path_factory.mktemp("no-heavy")
    for name in ("jax", "jaxlib", "flax", "optax", "orbax", "tensorflow", "tensorflow_datasets"):
        (root / name).mkdir()
        (root / name / "__init__.py").write_text(f"raise ImportError('{name} imported before the refusal')\n")
    return {"PYTHONPATH": os.pathsep.join([str(root), str(ROOT)])}


def refusals(tmp_path: Path) -> list[tuple[list, int, str]]:
    (tmp_path / "not-a-run").mkdir()
    return [
        (["sample", tmp_path / "not-a-run"], 1, "is not a run folder"),
        (["sample", tmp_path / "not-a-run", "--mode", "bogus"], 2, "--mode 'bogus'"),
        (["sample", tmp_path / "nowhere"], 1, "run folder not found"),
        (["eval-elbo", tmp_path / "not-a-run", "--samples", "0"], 2, "K must be at least 1"),
        (["eval-elbo", tmp_path / "not-a-run", "--split", "tset"], 2, "--split 'tset'"),
        (["eval-elbo", tmp_path / "nowhere"], 1, "run folder not found"),
        (["grad-snr", tmp_path / "not-a-run", "--samples", "x"], 2, "--samples x"),
    ]


def test_refusals_come_before_jax_and_tensorflow_are_imported(tmp_path, without_heavy_libraries):
    for args, code, needle in refusals(tmp_path):
        p = vae_process(*args, env=without_heavy_libraries)
        assert_error(Out(p.returncode, p.stdout, p.stderr), code, needle)


def test_no_data_offline_is_refused_before_jax_and_tensorflow_are_imported(tmp_path, without_heavy_libraries,
                                                                            offline):
    from vaecli.data import tfds_source

    if tfds_source.network_available():
        pytest.skip("this machine has a network: TFDS would download the data")
    p = vae_process("train", "--config", CONFIG, *offline, "--runs-dir", tmp_path / "runs",
                    env=without_heavy_libraries)
    assert_error(Out(p.returncode, p.stdout, p.stderr), 1, "binarized_mnist", "data.manual_dir")
    assert not (tmp_path / "runs").exists() or list((tmp_path / "runs").iterdir()) == []


# Each `vae` of the README's block runs through this stand-in, which records its arguments,
# exit code, time and stdout, and passes stdout on (stderr goes straight through).
RECORDER = """#!{python}
import json, os, subprocess, sys, time
start = time.monotonic()
p = subprocess.run([sys.executable, "-m", "vaecli.cli", *sys.argv[1:]], stdout=subprocess.PIPE)
sys.stdout.buffer.write(p.stdout)
with open(os.environ["VAE_RECORD"], "a") as f:
    f.write(json.dumps({{"argv": sys.argv[1:], "rc": p.returncode, "s": round(time.monotonic() - start, 1),
                        "stdout": p.stdout.decode()}}) + "\\n")
sys.exit(p.returncode)
"""


def quickstart_block() -> str:
    section = (ROOT / "README.md").read_text().split("## Quickstart (offline)", 1)[1]
    return section.split("```", 2)[1].strip("\n")


@pytest.mark.tensorflow
def test_readme_quickstart_runs_as_written_in_a_fresh_home(tmp_path):
    """The block as the README has it (no override), with bash, in an empty HOME: no vaecli
    or TFDS cache, no compile cache, no XDG or TFDS variables, no network. The first `vae
    train` prepares binarized MNIST through TFDS (which prints on stdout) and its stdout must
    still be the run folder alone, or every later line of the block fails."""
    if not (BMNIST / "binarized_mnist_train.amat").exists():
        pytest.skip("../shared/data/binarized_mnist is absent: the Quickstart has no data offline")
    home, repo, tools = tmp_path / "home", tmp_path / "work" / "repo", tmp_path / "bin"
    for folder in (home, repo, tools):
        folder.mkdir(parents=True)
    (repo / "configs").symlink_to(ROOT / "configs")
    (repo.parent / "shared").symlink_to(BMNIST.parents[1])  # the README's ../shared/data/...
    (tools / "vae").write_text(RECORDER.format(python=sys.executable))
    (tools / "vae").chmod(0o755)
    record = tmp_path / "record.jsonl"
    # as a new user has it: none of the suite's own settings (its compile cache, its XLA flags)
    env = {k: v for k, v in ENV.items()
           if k not in ("VAECLI_COMPILE_CACHE", "VAECLI_TEST_COMPILE_CACHE", "XDG_CACHE_HOME", "TFDS_DATA_DIR",
                        "XLA_FLAGS")}
    env.update(HOME=str(home), PATH=f"{tools}{os.pathsep}{env['PATH']}", VAE_RECORD=str(record),
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])))
    p = subprocess.run(["bash", "-e", "-c", quickstart_block()], cwd=repo, env=env, capture_output=True, text=True,
                       timeout=1500)
    calls = [json.loads(line) for line in record.read_text().splitlines()]
    for c in calls:  # seen with `pytest -s`: the figures of a first run
        print(f"vae {' '.join(c['argv'][:2])}: exit {c['rc']}, {c['s']} s, {len(c['stdout'].splitlines())} stdout lines")
    assert p.returncode == 0, p.stderr[-3000:]
    assert [c["argv"][0] for c in calls] == ["train", "sample", "eval-elbo", "plot", "runs", "train"]
    assert all(c["rc"] == 0 for c in calls), calls
    train, sample, evaluate, plot, table, resume = (c["stdout"].splitlines() for c in calls)
    assert len(train) == 1 and (repo / train[0]).is_dir() and Path(train[0]).parent.name == "runs", train
    run = repo / train[0]
    assert sample and all((repo / line).is_file() for line in sample), sample
    assert any("K=10" in line for line in evaluate) and evaluate[-1].endswith("-k10.json"), evaluate
    assert len(plot) == 2 and all((repo / line).is_file() for line in plot), plot
    assert any(line.split()[:2] == [run.name, "completed"] for line in table), table
    assert resume == train  # the same folder, trained on
    assert json.loads((run / "summary.json").read_text())["status"] == "completed"
    # real training on real data: the loss falls epoch by epoch, and log p(x) is a plausible one
    train_losses = [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()
                    if json.loads(line)["split"] == "train"]
    assert len(train_losses) == 3 and train_losses[2] < train_losses[1] < train_losses[0] < 200, train_losses
    k10 = json.loads((repo / evaluate[-1].split()[-1]).read_text())
    assert -130 < k10["elbo"] < k10["log_likelihood"] < -80, k10
    # what the first call did, said on stderr, and where it left its files
    assert "preparing it through TFDS" in p.stderr and "cached 'binarized_mnist'" in p.stderr
    assert (home / ".cache" / "vaecli" / "data" / "binarized_mnist" / "index.json").is_file()
    assert (home / "tensorflow_datasets" / "binarized_mnist").is_dir()
    assert (home / ".cache" / "vaecli" / "jax").is_dir()
