"""The `vae` command line: exit codes, one-line errors on stderr, nothing half-written, and
train -> sample -> eval-elbo end to end on the tiny synthetic dataset.

End-to-end checks run the real program in a subprocess (real exit codes, stdout and stderr
apart, no traceback); the many small error cases use typer's CliRunner in-process, where
an error that escaped as a Python exception shows up as `result.exception`.
"""
from __future__ import annotations

import datetime as dt
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import (
    CONFIG,
    ENV,
    ROOT,
    assert_error,
    run_folders,
    tiny_train_args,
    two_processes_once,
    vae,
    vae_inproc,
    vae_popen,
)

import vaecli
import vaecli.config

# ---------------------------------------------------------------------- version, help


def test_version():
    out = vae("--version")
    assert out.code == 0, out.stderr
    assert out.stdout.strip() == f"vaecli {vaecli.__version__}"


def test_help_lists_commands():
    out = vae("--help")
    assert out.code == 0, out.stderr
    for command in ("train", "sample", "eval-elbo", "plot"):
        assert command in out.stdout


def test_cli_module_does_not_import_jax():
    p = subprocess.run([sys.executable, "-c", "import vaecli.cli, sys; print('jax' in sys.modules)"],
                       cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "False"


# ------------------------------------------------------------- config and usage: exit 2


def _bad_yaml(tmp_path: Path) -> Path:
    p = tmp_path / "bad.yaml"
    p.write_text("model:\n  hidden: [500\n  latent_dim: 20\n")
    return p


CONFIG_ERRORS = {
    # id: (config path given tmp_path, extra args, words the error line must contain)
    "missing-config": (lambda t: t / "nope.yaml", [], ["config file not found", "nope.yaml"]),
    "config-is-folder": (lambda t: t, [], ["is a folder"]),
    "invalid-yaml": (_bad_yaml, [], ["bad.yaml", "not valid YAML"]),
    "unknown-key": (lambda t: CONFIG, ["--set", "optim.lrr=1"], ["unknown config key", "optim.lrr"]),
    "wrong-type": (lambda t: CONFIG, ["--set", "train.batch_size=abc"], ["train.batch_size", "expected int", "abc"]),
    "impossible-value": (lambda t: CONFIG, ["--set", "model.latent_dim=0"], ["model.latent_dim", "must be > 0"]),
    "bad-set-syntax": (lambda t: CONFIG, ["--set", "nonsense"], ["--set", "nonsense", "dotted.key=value"]),
    # Checked before any data is looked at: with the data unreachable, a late check would
    # report the missing data (exit 1) instead.
    "bad-name": (lambda t: CONFIG, ["--name", "a/b"], ["--name", "a/b"]),
}


@pytest.mark.parametrize("case", list(CONFIG_ERRORS), ids=list(CONFIG_ERRORS))
def test_train_config_errors_exit_2_and_create_nothing(case, tmp_path, offline):
    config_of, extra, needles = CONFIG_ERRORS[case]
    runs_dir = tmp_path / "runs"
    out = vae_inproc("train", "--config", config_of(tmp_path), *offline, *extra, "--runs-dir", runs_dir)
    assert_error(out, 2, *needles)
    assert run_folders(runs_dir) == []
    assert list((tmp_path / "cache").iterdir()) == []  # no data was prepared either


def test_config_error_in_a_real_process(tmp_path, offline):
    runs_dir = tmp_path / "runs"
    out = vae("train", "--config", CONFIG, *offline, "--set", "optim.lrr=1", "--runs-dir", runs_dir)
    assert_error(out, 2, "optim.lrr")
    assert run_folders(runs_dir) == []


def test_runs_dir_that_is_a_file_exits_2(tiny_cache, tmp_path):
    not_a_folder = tmp_path / "runs"
    not_a_folder.write_text("")
    out = vae_inproc(*tiny_train_args(tiny_cache, not_a_folder, "x"))
    assert_error(out, 2, "--runs-dir", str(not_a_folder))


def test_batch_larger_than_data_exits_1_and_creates_nothing(tiny_cache, tmp_path):
    runs_dir = tmp_path / "runs"
    out = vae_inproc(*tiny_train_args(tiny_cache, runs_dir, "x"), "--set", "train.batch_size=100000")
    assert_error(out, 1, "train.batch_size=100000")
    assert run_folders(runs_dir) == []


# ------------------------------------------------------------ sample / eval-elbo errors


@pytest.fixture
def no_checkpoint_run(tiny_run, tmp_path) -> Path:
    """A folder that looks like a run (config.yaml, meta.json) but saved no checkpoint."""
    run = tmp_path / "fresh-run"
    run.mkdir()
    for name in ("config.yaml", "meta.json"):
        shutil.copy(tiny_run / name, run / name)
    return run


@pytest.mark.parametrize("command", ["sample", "eval-elbo"])
def test_run_folder_errors(command, tmp_path, no_checkpoint_run):
    missing = tmp_path / "no-such-run"
    assert_error(vae_inproc(command, missing), 1, "run folder not found", str(missing))

    plain = tmp_path / "plain"
    plain.mkdir()
    assert_error(vae_inproc(command, plain), 1, str(plain), "is not a run folder")

    assert_error(vae_inproc(command, no_checkpoint_run), 1, "no checkpoint")
    assert sorted(p.name for p in no_checkpoint_run.iterdir()) == ["config.yaml", "meta.json"]  # untouched


@pytest.mark.parametrize("command", ["sample", "eval-elbo"])
def test_bad_step(command, tiny_run):
    steps = sorted(int(p.name) for p in (tiny_run / "checkpoints").iterdir() if p.name.isdigit())
    assert steps  # the fixture's run saved checkpoints
    available = ", ".join(map(str, steps))
    line = assert_error(vae_inproc(command, tiny_run, "--step", "999999"), 1, "999999", available)
    assert "available" in line
    # a malformed --step is a usage error (exit 2), as the README's exit codes say
    assert_error(vae_inproc(command, tiny_run, "--step", "abc"), 2, "--step", "abc", available)


@pytest.mark.parametrize("args, needle", [
    (["eval-elbo", "--samples", "0"], "--samples 0"),
    (["eval-elbo", "--samples", "1,x"], "--samples 1,x"),
    (["eval-elbo", "--kl-mc-samples", "-1"], "--kl-mc-samples -1"),
    (["eval-elbo", "--per-example", "/no/such/folder/x.npz"], "/no/such/folder"),
    (["sample", "--mode", "nope"], "--mode 'nope'"),
    (["sample", "--mode", "manifold"], "model.latent_dim=4"),
    (["sample", "--temperature", "0"], "--temperature"),
    (["sample", "--mode", "interpolate", "--steps", "1"], "--steps 1"),
    (["sample", "--n", "0"], "--n 0"),
    (["eval-elbo", "--split", "nope"], "nope"),
    (["eval-elbo", "--time-limit", "soon"], "--time-limit soon"),
], ids=["samples-0", "samples-not-int", "kl-mc-negative", "per-example-folder", "sample-mode",
        "manifold-needs-2d", "temperature-0", "steps-1", "n-0", "split-nope", "time-limit-soon"])
def test_bad_arguments_exit_2(args, needle, tiny_run):
    command, *rest = args
    assert_error(vae_inproc(command, tiny_run, *rest), 2, needle)


def test_debug_shows_the_traceback(tmp_path):
    out = vae("--debug", "train", "--config", tmp_path / "nope.yaml", "--runs-dir", tmp_path / "runs")
    assert out.code == 2  # the config error's own exit code, traceback or not
    assert "Traceback" in out.stderr
    assert "ConfigError" in out.stderr and "nope.yaml" in out.stderr
    assert run_folders(tmp_path / "runs") == []


@pytest.fixture(scope="module")
def cli_run(tiny_cache, tmp_path_factory) -> Path:
    """The first of `two_processes_once`: its stdout is the run folder and nothing else."""
    first, folders = two_processes_once(tiny_cache, tmp_path_factory)[:2]
    assert first.returncode == 0, first.stderr
    assert "Traceback" not in first.stderr
    lines = first.stdout.splitlines()
    assert len(lines) == 1, first.stdout
    run = Path(lines[-1])
    assert run.is_dir() and run.name.startswith("clitest-")
    assert folders == [run]
    return run


def test_train_writes_a_complete_run(cli_run):
    summary = json.loads((cli_run / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["steps"] == 2 * (640 // 32)
    assert (cli_run / "config.yaml").is_file() and (cli_run / "meta.json").is_file()


def test_sample(cli_run, tmp_path):
    from PIL import Image

    out = vae_inproc("sample", cli_run, "--n", 9, "--seed", 1)
    assert out.code == 0, out.stderr
    png, npy = (Path(line) for line in out.stdout.splitlines())
    assert png.parent == npy.parent == cli_run / "samples"
    with Image.open(png) as img:
        img.load()
        assert img.format == "PNG" and img.mode == "RGB"
        assert img.width >= 3 * 8 and img.height >= 3 * 8  # a 3x3 grid of 8x8 images, at least
        lo, hi = img.convert("L").getextrema()
        assert lo < hi  # not a blank picture
    means = np.load(npy)
    assert means.shape == (9, 8, 8, 1)
    assert np.issubdtype(means.dtype, np.floating)
    assert np.all((means >= 0) & (means <= 1))


def test_eval_elbo_out_of_time_exits_3_and_writes_nothing(cli_run, tmp_path):
    out = vae_inproc("eval-elbo", cli_run, "--samples", "3", "--time-limit", "0s", "--out", tmp_path / "ev")
    assert out.code == 3, out.stderr
    assert "Traceback" not in out.stderr and out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("out of time: K=3 on the test split"), out.stderr
    assert "nothing of it was written" in lines[0]
    assert not list((tmp_path / "ev").glob("*.json")) if (tmp_path / "ev").exists() else True


PROTOCOL_FIELDS = ("dataset", "split", "num_examples", "binarize", "samples", "seed", "checkpoint_step",
                   "estimator", "batch_size", "sample_chunk", "kl_mc_samples", "active_unit")


def test_eval_elbo_json(cli_run, tmp_path):
    npz = tmp_path / "per-example.npz"
    out = vae_inproc("eval-elbo", cli_run, "--split", "test", "--samples", "5,1", "--kl-mc-samples", 20,
              "--per-example", npz, "--json")
    assert out.code == 0, out.stderr
    report = json.loads(out.stdout)  # one JSON document and nothing else on stdout
    step = report["checkpoint_step"]
    assert step == 2 * (640 // 32)  # "latest"
    assert [doc["samples"] for doc in report["results"]] == [1, 5]  # sorted
    for doc in report["results"]:
        k = doc["samples"]
        for key in ("elbo", "recon", "kl", "kl_mc", "kl_mc_stderr", "log_likelihood", "log_likelihood_stderr",
                    "bits_per_dim"):
            assert isinstance(doc[key], float) and math.isfinite(doc[key]), key
        assert doc["num_examples"] == 128
        assert doc["elbo"] == pytest.approx(-(doc["recon"] + doc["kl"]))
        assert doc["bits_per_dim"] == pytest.approx(-doc["log_likelihood"] / (8 * 8 * math.log(2)))
        for field in PROTOCOL_FIELDS:
            assert field in doc["protocol"], field
        p = doc["protocol"]
        assert (p["split"], p["samples"], p["seed"], p["checkpoint_step"], p["kl_mc_samples"]) == ("test", k, 0, step, 20)
        assert len(doc["kl_per_dim"]) == len(doc["active"]) == doc["latent_dim"] == 4
        assert doc["active_units"] == sum(doc["active"])
        assert sum(doc["kl_per_dim"]) == pytest.approx(doc["kl"], rel=1e-5)
        written = cli_run / "eval" / f"test-step{step}-k{k}.json"
        assert doc["written_to"] == str(written)
        saved = json.loads(written.read_text())
        assert saved["log_likelihood"] == doc["log_likelihood"] and saved["num_examples"] == 128
    # the K-independent figures agree between the K's; a larger K tightens the bound on average
    k1, k5 = report["results"]
    assert (k1["kl"], k1["kl_mc"], k1["active"]) == (k5["kl"], k5["kl_mc"], k5["active"])
    assert k5["log_likelihood"] > k1["log_likelihood"]

    arrays = np.load(npz)
    assert report["per_example"] == str(npz)
    for name in ("log_likelihood_k1", "log_likelihood_k5", "elbo_k1", "elbo_k5", "kl", "kl_mc", "index"):
        assert arrays[name].shape == (128,), name
    assert arrays["log_likelihood_k5"].mean() == pytest.approx(k5["log_likelihood"], rel=1e-5)
    assert arrays["elbo_k1"].mean() == pytest.approx(k1["elbo"], rel=1e-5)
    assert list(arrays["samples"]) == [1, 5] and int(arrays["checkpoint_step"]) == step
    for doc in report["results"]:  # recon_k<K>: the reconstruction term averaged over the same K draws
        k = doc["samples"]
        assert arrays[f"recon_k{k}"].shape == (128,)
        assert arrays[f"recon_k{k}"].mean() == pytest.approx(doc["recon"], rel=1e-5)
    assert int(arrays["seed"]) == 0


def test_eval_elbo_is_deterministic_and_each_k_stands_alone(cli_run):
    """Same run, step, split, K and seed: the same numbers, whether K comes alone or with others."""
    from vaecli.evaluation.elbo import evaluate

    together = evaluate(cli_run, samples=[3, 7], seed=4, kl_mc_samples=5, write=False)["results"]
    alone = evaluate(cli_run, samples=7, seed=4, kl_mc_samples=5, batch_size=33, write=False)["results"]
    assert together[1]["log_likelihood"] == pytest.approx(alone[0]["log_likelihood"], rel=1e-6)
    again = evaluate(cli_run, samples=[3, 7], seed=4, kl_mc_samples=5, write=False)["results"]
    for a, b in zip(together, again):
        assert (a["log_likelihood"], a["elbo"], a["kl_mc"]) == (b["log_likelihood"], b["elbo"], b["kl_mc"])
    other_seed = evaluate(cli_run, samples=7, seed=5, kl_mc_samples=5, write=False)["results"][0]
    assert other_seed["log_likelihood"] != alone[0]["log_likelihood"]


def test_eval_elbo_table(cli_run):
    out = vae_inproc("eval-elbo", cli_run, "--split", "test", "--samples", "1,10")
    assert out.code == 0, out.stderr
    assert "tiny_bars test (128 images)" in out.stdout
    header = next(line for line in out.stdout.splitlines() if "K=1" in line)
    assert header.split() == ["K=1", "K=10"]
    for row in ("log p(x)", "standard error", "ELBO", "bits/dim", "KL(q‖p) analytic", "Monte Carlo (100 draws)",
                "active units:", "KL per dimension"):
        assert row in out.stdout, row
    for k in (1, 10):
        assert f"written to {cli_run / 'eval' / f'test-step40-k{k}.json'}" in out.stdout


# Each process sleeps until the same moment, then takes a run folder named "race" in the
# same (fixed) second: the clash README's run-folder layout promises to resolve (-2, -3...).
RACE = """
import datetime as dt, sys, time
from vaecli import clock
from vaecli.rundir import layout
clock.utc_now = lambda: dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
print(layout.create(sys.argv[1], "race"))
"""


def test_run_folders_taken_at_the_same_moment_are_never_shared(tiny_cache, tmp_path, monkeypatch):
    """Six processes (no JAX: vaecli.rundir.layout alone) create a run folder at the same moment in the
    same second: six folders, the timestamp then -2 ... -6, none shared. `vae train` takes its
    folder that way: two trainings in the same second get the timestamp and the timestamp-2."""
    from vaecli import clock

    runs_dir = tmp_path / "runs"
    start = time.time() + 1.5  # every interpreter is up by then
    procs = [subprocess.Popen([sys.executable, "-c", RACE, str(runs_dir), str(start)], cwd=ROOT, env=ENV,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(6)]
    results = [p.communicate(timeout=60) for p in procs]
    for p, (_, err) in zip(procs, results):
        assert p.returncode == 0, err
    base = "race-20260102T030405Z"
    folders = [Path(out.strip()) for out, _ in results]
    assert sorted(f.name for f in folders) == sorted([base] + [f"{base}-{i}" for i in range(2, 7)])
    assert run_folders(runs_dir) == sorted(folders)

    monkeypatch.setattr(clock, "utc_now", lambda: dt.datetime(2026, 1, 2, 3, 4, 6, tzinfo=dt.timezone.utc))
    trained = []
    for _ in range(2):
        out = vae_inproc(*tiny_train_args(tiny_cache, tmp_path / "trained", "race"), "--set", "train.epochs=1")
        assert out.code == 0, out.stderr
        trained.append(Path(out.stdout.strip()))
    assert [f.name for f in trained] == ["race-20260102T030406Z", "race-20260102T030406Z-2"]
    for folder in trained:
        assert json.loads((folder / "summary.json").read_text())["status"] == "completed"


def train_then_signal(tiny_cache, runs_dir: Path, *signames: str) -> tuple[subprocess.Popen, str, str]:
    """Start a long `vae train`, wait until its first epoch is logged, send `signames` one
    right after the other, and wait for it to end: (process, stdout, stderr)."""
    import signal

    args = tiny_train_args(tiny_cache, runs_dir, "sig") + ["--set", "train.epochs=100000",
                                                           "--set", "checkpoint.every_epochs=1000"]
    p = vae_popen(*args)
    try:
        deadline = time.time() + 180
        while time.time() < deadline:  # wait until training is under way
            folders = run_folders(runs_dir)
            if folders and (folders[0] / "metrics.jsonl").exists() and (folders[0] / "metrics.jsonl").read_text():
                break
            if p.poll() is not None:
                break
            time.sleep(0.2)
        else:
            pytest.fail("no epoch logged within 180 s")
        for name in signames:
            p.send_signal(getattr(signal, name))
        out, err = p.communicate(timeout=120)
    finally:
        p.kill()
    return p, out, err


@pytest.mark.parametrize("signame, code", [("SIGINT", 130), ("SIGTERM", 143)])
def test_signal_stops_after_the_epoch_with_a_checkpoint(tmp_path, tiny_cache, signame, code):
    from vaecli.rundir import metrics
    from vaecli.rundir.checkpoints import Checkpoints

    runs_dir = tmp_path / "runs"
    p, out, err = train_then_signal(tiny_cache, runs_dir, signame)
    assert p.returncode == code, err
    assert "Traceback" not in err and out == ""
    assert err.strip().splitlines()[-1].startswith(f"interrupted: {signame}")
    run = run_folders(runs_dir)[0]
    summary = json.loads((run / "summary.json").read_text())
    last_step = [r for r in metrics.read(run) if r["split"] == "train"][-1]["step"]
    assert summary["status"] == "interrupted" and summary["last_checkpoint_step"] == last_step
    with Checkpoints(run / "checkpoints", read_only=True) as ck:
        assert ck.steps() == [last_step]  # saved on the way out, though none was due


def test_a_second_signal_stops_at_once(tmp_path, tiny_cache):
    """SIGINT asks for a stop after the epoch in flight; a SIGTERM right behind it does not
    wait for that: the trainer stops at once (KeyboardInterrupt path, exit 130), without the
    first signal's 'stopped after epoch' checkpoint message."""
    p, out, err = train_then_signal(tiny_cache, tmp_path / "runs", "SIGINT", "SIGTERM")
    assert p.returncode == 130, err
    assert "Traceback" not in err and out == ""
    assert err.strip().splitlines()[-1] == "interrupted", err[-2000:]


def test_seeds_sweep_and_json_through_the_command_line(tiny_cache, tmp_path):
    """--seeds 0-1 × --sweep optim.lr=two values, at most 3 replicas per program: 4 ordinary
    run folders from 2 programs; --json prints {"runs": [{"run", "summary"}]} and nothing else."""
    runs_dir = tmp_path / "runs"
    out = vae_inproc(*tiny_train_args(tiny_cache, runs_dir, "grid"), "--set", "train.epochs=1", "--seeds", "0-1",
                     "--sweep", "optim.lr=1e-3,3e-3", "--max-replicas-per-program", 3, "--json")
    assert out.code == 0, out.stderr
    doc = json.loads(out.stdout)
    folders = [Path(r["run"]) for r in doc["runs"]]
    assert sorted(folders) == run_folders(runs_dir) and len(folders) == 4
    assert [f.name.rsplit("-", 1)[0] for f in folders] == [
        "grid-seed0-lr1e-3", "grid-seed0-lr3e-3", "grid-seed1-lr1e-3", "grid-seed1-lr3e-3"]
    programs = []
    for r, folder in zip(doc["runs"], folders):
        assert r["summary"] == json.loads((folder / "summary.json").read_text())
        assert r["summary"]["status"] == "completed"
        replica = json.loads((folder / "meta.json").read_text()).get("replica")  # none in a program of one
        programs.append((replica["program"] if replica else [folder.name], r["summary"]["replicas_in_program"]))
        cfg = vaecli.config.load(folder / "config.yaml")
        assert (cfg.seed, cfg.optim.lr) == (int(folder.name.split("seed")[1][0]),
                                            float(folder.name.split("-lr")[1].rsplit("-", 1)[0]))
    first = [f.name for f in folders[:3]]
    assert programs == [(first, 3)] * 3 + [([folders[3].name], 1)]


def test_progress_bar_on_a_terminal(tiny_cache, tmp_path):
    """log.progress=bar with stderr on a pseudo-terminal: rich redraws a bar; stdout stays the
    run folder alone."""
    import pty

    leader, follower = pty.openpty()
    args = [*tiny_train_args(tiny_cache, tmp_path / "runs", "bar"), "--set", "train.epochs=2",
            "--set", "log.progress=bar"]
    p = vae_popen(*args, env={"TERM": "xterm", "COLUMNS": "100"}, stderr=follower)
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal closed: the process is gone
            break
        if not chunk:
            break
        seen += chunk
    out, _ = p.communicate(timeout=120)
    os.close(leader)
    assert p.returncode == 0, seen.decode(errors="replace")[-2000:]
    text = seen.decode(errors="replace")
    assert "━" in text and "\x1b[" in text  # rich's bar, redrawn with escape codes
    assert "epoch 1/2" not in text  # not the plain per-epoch lines of a pipe
    assert Path(out.strip()).is_dir() and out.count("\n") == 1


def test_every_command_has_json_on_stdout_alone(cli_run, tmp_path):
    """sample, plot and runs with --json: stdout is one JSON document naming real files."""
    out = vae_inproc("sample", cli_run, "--n", 4, "--json", "--out", tmp_path / "s")
    assert out.code == 0, out.stderr
    doc = json.loads(out.stdout)
    assert Path(doc["png"]).is_file() and np.load(doc["npy"]).shape == (4, 8, 8, 1)
    out = vae_inproc("plot", cli_run, "--json", "--out", tmp_path / "curves.png")
    assert out.code == 0, out.stderr
    assert Path(json.loads(out.stdout)["png"]).is_file()
    out = vae_inproc("runs", cli_run.parent, "--json")
    assert out.code == 0, out.stderr
    rows = {row["name"]: row for row in json.loads(out.stdout)}
    assert sorted(rows) == sorted(p.name for p in cli_run.parent.iterdir())  # both of two_processes_once
    assert rows[cli_run.name]["status"] == "completed"
