"""Sweeps from the shell: examples/sweep.sh and examples/slurm_array.sh run on the tiny
dataset with bash, and `vae runs` tabulates what they wrote (content checked against the
run folders' own files), including damaged, dead and live runs."""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import (
    CONFIG,
    ENV,
    ROOT,
    assert_error,
    built_once,
    sets,
    tiny_overrides,
    vae_inproc,
)

from vaecli.rundir import layout as runs
from vaecli.rundir import metrics

# The scripts call `vae`: the one installed next to this interpreter.
SHELL_ENV = {**ENV, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{ENV.get('PATH', '')}"}


def bash(script: str, *args, env: dict, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(ROOT / "examples" / script), *map(str, args)], cwd=ROOT,
                          env={**SHELL_ENV, **env}, capture_output=True, text=True, timeout=timeout)


def tiny_args(cache: Path) -> list[str]:
    return [*sets(tiny_overrides(cache)), "--set", "train.epochs=2"]


def runs_json(*args) -> list[dict]:
    out = vae_inproc("runs", *args, "--format", "json")
    assert out.code == 0, out.stderr
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def sweep(tiny_cache, tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    """examples/sweep.sh over 2 learning rates x 2 seeds, 2 epochs each."""
    def build(root: Path):
        p = bash("sweep.sh", *tiny_args(tiny_cache),
                 env={"RUNS_DIR": str(root / "runs"), "LRS": "1e-3 3e-3", "SEEDS": "0 1", "CONFIG": str(CONFIG)})
        return p, root / "runs"

    return built_once(tmp_path_factory, "sweep", build)[1]


def test_sweep_script_trains_every_combination(sweep):
    p, runs_dir = sweep
    assert p.returncode == 0, p.stderr
    folders = sorted(runs_dir.iterdir())
    assert [f.name.rsplit("-", 1)[0] for f in folders] == [
        "lr1e-3-seed0", "lr1e-3-seed1", "lr3e-3-seed0", "lr3e-3-seed1"]
    for f in folders:
        cfg = runs.open_run(f).config
        assert json.loads((f / "summary.json").read_text())["status"] == "completed"
        lr, seed = f.name.split("-seed")
        assert cfg.optim.lr == float(lr[2:]) and cfg.seed == int(seed.split("-")[0])
    # Its last step is `vae runs --group-by optim.lr`: a header and one row per learning rate.
    lines = p.stdout.splitlines()
    assert lines[0].split()[:3] == ["optim.lr", "count", "status"]
    assert sorted(line.split()[0] for line in lines[1:]) == ["0.001", "0.003"]
    assert all(" ± " in line for line in lines[1:])


def _by_name(rows):
    return {r["name"]: r for r in rows}


def test_runs_table_content(sweep):
    _, runs_dir = sweep
    rows = runs_json(runs_dir)
    folders = sorted(runs_dir.iterdir())
    assert [r["name"] for r in rows] == [f.name for f in folders]
    for r, f in zip(rows, folders):
        summary = json.loads((f / "summary.json").read_text())
        cfg = runs.open_run(f).config
        # The differing keys, and only them, are columns: seed and optim.lr.
        assert list(r)[:4] == ["name", "status", "seed", "optim.lr"]
        assert (r["seed"], r["optim.lr"]) == (cfg.seed, cfg.optim.lr)
        assert "model.hidden" not in r and "train.epochs" not in r
        assert r["status"] == "completed" and r["epochs"] == 2 and r["epochs_total"] == 2
        assert r["val_elbo"] == max(m["elbo"] for m in metrics.read(f) if m["split"] == "validation")
        assert r["wall_s"] == summary["wall_s"]
        assert r["test_ll"] is None and r["test_k"] is None  # not evaluated
        assert r["path"] == str(f)


def test_runs_csv_and_table_carry_the_same_rows(sweep):
    _, runs_dir = sweep
    rows = runs_json(runs_dir)
    out = vae_inproc("runs", runs_dir, "--format", "csv")
    assert out.code == 0 and out.stderr == ""
    parsed = list(csv.DictReader(io.StringIO(out.stdout)))
    assert [r["name"] for r in parsed] == [r["name"] for r in rows]
    for c, j in zip(parsed, rows):
        assert float(c["val_elbo"]) == j["val_elbo"] and float(c["optim.lr"]) == j["optim.lr"]
        assert c["test_ll"] == ""  # missing: empty cell
    out = vae_inproc("runs", runs_dir)
    assert out.code == 0 and "\x1b" not in out.stdout
    header, *lines = out.stdout.splitlines()
    assert header.split() == ["name", "status", "seed", "optim.lr", "epochs", "val_elbo", "test_ll", "test_k",
                              "wall_s"]
    for line, r in zip(lines, rows):
        cells = line.split()
        assert cells[0] == r["name"] and cells[4] == "2/2" and cells[5] == f"{r['val_elbo']:.2f}"


def test_runs_sort_filter_group(sweep):
    _, runs_dir = sweep
    rows = runs_json(runs_dir)
    elbos = [r["val_elbo"] for r in runs_json(runs_dir, "--sort", "val_elbo")]
    assert elbos == sorted(r["val_elbo"] for r in rows)
    assert [r["val_elbo"] for r in runs_json(runs_dir, "--sort", "val_elbo", "--reverse")] == elbos[::-1]
    assert [r["seed"] for r in runs_json(runs_dir, "--sort", "seed")] == [0, 0, 1, 1]

    fast = runs_json(runs_dir, "--filter", "optim.lr=3e-3")
    assert [r["name"] for r in fast] == [r["name"] for r in rows if r["optim.lr"] == 0.003]
    assert "optim.lr" not in fast[0] and "seed" in fast[0]  # equal in the listed runs: no longer a column
    assert len(runs_json(runs_dir, "--filter", "optim.lr=3e-3", "--filter", "seed=1")) == 1
    assert len(runs_json(runs_dir, "--filter", "status=completed")) == 4
    assert len(runs_json(runs_dir, "--filter", "model.hidden=[32]")) == 4  # a list, compared as YAML
    assert [r["name"] for r in runs_json(runs_dir, "--filter", "name=lr1e-3-*")] == [
        r["name"] for r in rows if r["name"].startswith("lr1e-3-")]
    assert runs_json(runs_dir, "--filter", "seed=7") == []

    groups = runs_json(runs_dir, "--group-by", "optim.lr", "--sort", "optim.lr")
    assert [g["optim.lr"] for g in groups] == [0.001, 0.003]
    for g in groups:
        members = [r for r in rows if r["optim.lr"] == g["optim.lr"]]
        xs = [r["val_elbo"] for r in members]
        assert g["count"] == 2 and g["status"] == "completed"
        assert g["val_elbo"] == pytest.approx(statistics.mean(xs), rel=1e-12)
        assert g["val_elbo_std"] == pytest.approx(statistics.stdev(xs), rel=1e-12)
        assert g["val_elbo_n"] == 2 and g["test_ll"] is None and g["test_ll_n"] == 0
    out = vae_inproc("runs", runs_dir, "--group-by", "optim.lr")
    assert out.code == 0 and out.stdout.count(" ± ") >= 4


def test_runs_shows_the_latest_test_evaluation(sweep, tmp_path):
    _, runs_dir = sweep
    run = tmp_path / "evaluated"
    shutil.copytree(sorted(runs_dir.iterdir())[0], run)
    steps = sorted(int(p.name) for p in (run / "checkpoints").iterdir() if p.name.isdigit())
    docs = {}
    for step, k in [(steps[-1], 2), (steps[-1], 3), (steps[0], 4)]:
        out = vae_inproc("eval-elbo", run, "--split", "test", "--samples", k, "--step", step, "--json")
        assert out.code == 0, out.stderr
        docs[step, k] = json.loads(out.stdout)
    (row,) = runs_json(run)  # a run folder given directly is a one-row table
    # The highest step first, then the highest K: (last step, K=3), not (first step, K=4).
    assert (row["test_ll"], row["test_k"]) == (docs[steps[-1], 3]["results"][0]["log_likelihood"], 3)


def test_runs_shows_fid_and_kid_when_a_run_has_them(sweep, tmp_path):
    """The columns of `vae eval-samples`' files on the test split (and, val_*, on the
    validation split): the highest step, then the largest N; only when some listed run has one."""
    from vaecli.rundir.names import Output

    a, b = _copy_run(sweep, tmp_path, "a"), _copy_run(sweep, tmp_path, "b")
    assert "fid" not in vae_inproc("runs", tmp_path).stdout
    (a / "eval").mkdir(exist_ok=True)
    for step, n, split, fid in [(5, 100, "test", 3.0), (9, 50, "test", 2.0), (9, 20, "test", 7.0),
                                (12, 50, "train", 1.0), (9, 50, "validation", 4.0)]:
        name = Output("samples", step, split=split, n=n, seed=0, features="abc123")
        (a / "eval" / name.file()).write_text(json.dumps({"fid": fid, "kid": {"mean": fid / 100}}))
    rows = {r["name"]: r for r in runs_json(tmp_path)}
    assert (rows["a"]["fid"], rows["a"]["kid"]) == (2.0, 0.02) and rows["b"]["fid"] is None
    assert (rows["a"]["val_fid"], rows["a"]["val_kid"]) == (4.0, 0.04) and rows["b"]["val_fid"] is None
    out = vae_inproc("runs", tmp_path, "--sort", "fid")
    header = out.stdout.splitlines()[0].split()
    assert out.code == 0 and header[-4:] == ["fid", "kid", "val_fid", "val_kid"]
    assert out.stdout.splitlines()[1].split()[0] == "a" and "2.000" in out.stdout


def _copy_run(sweep, root: Path, name: str) -> Path:
    dst = root / name
    shutil.copytree(sorted(sweep[1].iterdir())[0], dst, ignore=shutil.ignore_patterns("checkpoints", "events.*"))
    return dst


def _set_status(run: Path, status: str | None) -> None:
    if status is None:
        (run / "summary.json").unlink()
        return
    s = json.loads((run / "summary.json").read_text())
    s["status"] = status
    (run / "summary.json").write_text(json.dumps(s))


def test_runs_group_with_values_in_only_some_runs_shows_n(sweep, tmp_path):
    """A group of 3 runs of which 2 have a validation ELBO: mean ± std over those 2, `(n=2)`."""
    root = tmp_path / "runs"
    for name in ("a-1", "a-2", "a-3"):
        _copy_run(sweep, root, name)
    lines = (root / "a-3" / "metrics.jsonl").read_text().splitlines()
    (root / "a-3" / "metrics.jsonl").write_text("".join(f"{line}\n" for line in lines if '"validation"' not in line))
    (group,) = runs_json(root, "--group-by", "optim.lr")
    assert group["count"] == 3 and group["val_elbo_n"] == 2 and group["epochs_n"] == 3
    expected = runs_json(root / "a-1")[0]["val_elbo"]
    assert group["val_elbo"] == pytest.approx(expected, rel=1e-12) and group["val_elbo_std"] == 0
    out = vae_inproc("runs", root, "--group-by", "optim.lr")
    assert out.code == 0, out.stderr
    (row,) = out.stdout.splitlines()[1:]
    assert "(n=2)" in row and row.count("(n=") == 1  # only val_elbo is partial (test_ll: none has one)


def test_runs_status_of_damaged_dead_and_live_runs(sweep, tmp_path):
    root = tmp_path / "runs"
    ok = _copy_run(sweep, root, "a-ok")
    bad_meta = _copy_run(sweep, root, "b-bad-meta")
    (bad_meta / "meta.json").write_text("{not json")
    bad_yaml = _copy_run(sweep, root, "c-bad-yaml")
    (bad_yaml / "config.yaml").write_text("model: [\n")
    died = _copy_run(sweep, root, "d-died")
    _set_status(died, "running")  # a trainer killed with -9 leaves this, and no lock holder
    live = _copy_run(sweep, root, "e-live")
    _set_status(live, "running")
    starting = _copy_run(sweep, root, "f-starting")
    _set_status(starting, None)  # the trainer is still loading data
    gone = _copy_run(sweep, root, "g-gone")
    _set_status(gone, None)
    with (ok / "metrics.jsonl").open("a") as f:
        f.write('{"step": 99, "split": "validation", "elb')  # a line cut short by a kill
    (root / "not-a-run").mkdir()
    (root / "not-a-run" / "notes.txt").write_text("")
    (root / "nested").mkdir()
    _copy_run(sweep, root / "nested", "h-nested")

    held = [runs.Lock(live).acquire(), runs.Lock(starting).acquire()]
    try:
        rows = _by_name(runs_json(root))
        dead = runs_json(root, "--filter", "status=died", "--sort", "name")
    finally:
        for lock in held:
            lock.release()
    assert {n: r["status"] for n, r in rows.items()} == {
        "a-ok": "completed", "b-bad-meta": "damaged", "c-bad-yaml": "damaged", "d-died": "died",
        "e-live": "running", "f-starting": "starting", "g-gone": "died", "nested/h-nested": "completed"}
    original = sorted(sweep[1].iterdir())[0]
    assert rows["a-ok"]["val_elbo"] == max(m["elbo"] for m in metrics.read(original) if m["split"] == "validation")
    assert rows["b-bad-meta"]["val_elbo"] is None
    assert dead == [rows["d-died"], rows["g-gone"]]
    # The probes let go of the locks: a trainer can take them, and without their holders
    # the live runs read as dead.
    with runs.Lock(died):
        pass
    assert _by_name(runs_json(root))["e-live"]["status"] == "died"


@pytest.mark.parametrize("args, needles", [
    (["--sort", "nope"], ["--sort nope", "not a column or config key"]),
    (["--filter", "nope=1"], ["--filter nope"]),
    (["--filter", "seed"], ["--filter 'seed'", "key=value"]),
    (["--group-by", "optim.lr,nope"], ["--group-by nope"]),
], ids=["sort", "filter-key", "filter-syntax", "group-by"])
def test_runs_bad_keys_exit_2(sweep, args, needles):
    assert_error(vae_inproc("runs", sweep[1], *args), 2, *needles)


def test_runs_missing_or_empty_folder(tmp_path):
    assert_error(vae_inproc("runs", tmp_path / "nowhere"), 2, str(tmp_path / "nowhere"), "no such folder")
    (tmp_path / "empty" / "not-a-run").mkdir(parents=True)
    out = vae_inproc("runs", tmp_path / "empty")
    assert (out.code, out.stdout) == (0, "") and out.stderr.startswith("no runs under")
    assert runs_json(tmp_path / "empty") == []


def test_runs_in_a_real_process_does_not_import_jax(sweep):
    code = ("import sys; from vaecli.cli import app\n"
            "try:\n    app()\nexcept SystemExit as e:\n    code = e.code\n"
            "print('jax' in sys.modules, code, file=sys.stderr)")
    p = subprocess.run([sys.executable, "-c", code, "runs", str(sweep[1]), "--format", "json"], cwd=ROOT,
                       env=ENV, capture_output=True, text=True, timeout=60)
    assert p.stderr.split() == ["False", "0"], p.stderr
    assert len(json.loads(p.stdout)) == 4  # stdout: one JSON document, nothing else


# ------------------------------------------------------------------- SLURM job array


def test_slurm_array_script(tiny_cache, tmp_path):
    runs_dir = tmp_path / "runs"
    lines = tmp_path / "grid.txt"
    lines.write_text("optim.lr=3e-3 seed=1\ntrain.epochs=1 seed=2\n")  # no new program to compile
    env = {"RUNS_DIR": str(runs_dir), "CONFIG": str(CONFIG)}
    for task in (1, 2):
        p = bash("slurm_array.sh", lines, *tiny_args(tiny_cache), env={**env, "SLURM_ARRAY_TASK_ID": str(task)})
        assert p.returncode == 0, p.stderr
        assert Path(p.stdout.strip()).parent == runs_dir  # `vae train` printed its run folder
    one, two = sorted(runs_dir.iterdir())
    assert one.name.startswith("grid-1-") and two.name.startswith("grid-2-")
    c1, c2 = runs.open_run(one).config, runs.open_run(two).config
    assert (c1.optim.lr, c1.seed, c1.train.epochs) == (3e-3, 1, 2)  # the line, with the extra args
    assert (c2.optim.lr, c2.seed, c2.train.epochs) == (1e-3, 2, 1)  # the line, over the extra args

    # A requeued task finds its run and resumes it: completed, so nothing to do, exit 0.
    p = bash("slurm_array.sh", lines, *tiny_args(tiny_cache), env={**env, "SLURM_ARRAY_TASK_ID": "1"})
    assert p.returncode == 0, p.stderr
    assert "resuming" in p.stderr and "nothing to do" in p.stderr
    assert sorted(runs_dir.iterdir()) == [one, two]

    rows = runs_json(runs_dir)
    assert [r["name"] for r in rows] == [one.name, two.name]
    assert [(r["seed"], r["optim.lr"], r["train.epochs"], r["epochs"]) for r in rows] == [(1, 3e-3, 2, 2), (2, 1e-3, 1, 1)]
    assert all(r["status"] == "completed" for r in rows)

    # A task id past the end of the file, or not a line number: one line, exit 2, nothing started.
    p = bash("slurm_array.sh", lines, env={**env, "SLURM_ARRAY_TASK_ID": "3"})
    assert p.returncode == 2 and p.stderr.startswith("error:") and "no line 3" in p.stderr
    p = bash("slurm_array.sh", lines, env={**env, "SLURM_ARRAY_TASK_ID": "0"})
    assert p.returncode == 2 and p.stderr.startswith("error:") and "from 1" in p.stderr
    assert sorted(runs_dir.iterdir()) == [one, two]
