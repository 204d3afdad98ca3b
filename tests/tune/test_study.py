"""`vae tune`: the search space, a study whose trials train as replicas of one compiled
program, pruned slots refilled without a recompile, resume, per-replica β."""
from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np
import optuna
import pytest
from helpers import assert_error, built_once, tiny_overrides, vae_inproc

from vaecli import config
from vaecli.compiled import cache as programs
from vaecli.compiled import epoch
from vaecli.errors import Interrupted, UsageError
from vaecli.rundir import layout as runs
from vaecli.rundir import metrics
from vaecli.training import replicas as sweep
from vaecli.training import start as train
from vaecli.tune import space as search_space
from vaecli.tune import study as tune

SPACE = ["optim.lr=log:1e-4:1e-2", "objective.beta=0.5:4", "optim.weight_decay=0,1e-5,1e-4"]


class PruneTrials(optuna.pruners.BasePruner):
    """Prunes the listed trial numbers at their first report: a deterministic pruner for the tests."""

    def __init__(self, numbers):
        self.numbers = set(numbers)

    def prune(self, study, trial):
        return trial.number in self.numbers


def trial_dirs(study_dir):
    return {json.loads((p / "meta.json").read_text())["trial"]["number"]: p
            for p in sorted((study_dir / "trials").iterdir())}


def test_space_spelling():
    raw = config.to_dict(config.load(None))
    d = search_space.parse("optim.lr=log:1e-4:1e-2", raw)
    assert (d.kind, d.low, d.high, d.log, d.integer) == ("range", 1e-4, 1e-2, True, False)
    d = search_space.parse("objective.beta=0.5:4", raw)
    assert (d.low, d.high, d.log) == (0.5, 4.0, False) and isinstance(d.high, float)
    assert search_space.parse("optim.weight_decay=0,1e-5,1e-4", raw).choices == (0.0, 1e-5, 1e-4)
    d = search_space.parse("seed=0:99", raw)
    assert d.integer and (d.low, d.high) == (0, 99)
    assert search_space.parse("objective.warmup_epochs=0:5", raw).key == "objective.warmup_epochs"
    cfg = search_space.with_values(raw, {"objective.beta": 2.5, "optim.lr": 3e-4})
    assert cfg.objective.beta == 2.5 and cfg.optim.lr == 3e-4


@pytest.mark.parametrize("space, needles", [
    ("optim.lrr=log:1e-4:1e-2", ["unknown config key", "lrr"]),
    ("model.latent_dim=2,8,32", ["model.latent_dim changes shapes or code", "for v in 2 8 32",
                                 "--set model.latent_dim=$v"]),
    ("objective.beta=2:2", ["empty", "LOW < HIGH"]),
    ("objective.beta=4:0.5", ["inverted"]),
    ("optim.weight_decay=log:0:1e-2", ["log range needs LOW > 0"]),
    ("objective.beta=-1:2", ["objective.beta"]),
    ("objective.beta=3", ["one value is not a search", "--set objective.beta=3"]),
    ("optim.lr=1e-3:", ["a range is LOW:HIGH"]),
    ("optim.weight_decay=0,,1", ["empty value"]),
    ("optim.lr", ["expected KEY=SPEC"]),
])
def test_space_refusals_are_one_line_exit_2(space, needles, tmp_path):
    out = vae_inproc("tune", "-c", "configs/bmnist_mlp.yaml", "--space", space, "--runs-dir", tmp_path / "runs")
    assert_error(out, 2, "--space", *needles)
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())


def test_budget_and_resume_refusals(tmp_path):
    assert_error(vae_inproc("tune", "-c", "configs/bmnist_mlp.yaml", "--space", SPACE[0], "--trials", "0"),
                 2, "--trials 0")
    assert_error(vae_inproc("tune", "-c", "configs/bmnist_mlp.yaml", "--space", SPACE[0], "--pruner", "x"),
                 2, "--pruner x", "median")
    assert_error(vae_inproc("tune", "-c", "configs/bmnist_mlp.yaml"), 2, "--space")
    assert_error(vae_inproc("tune", "--resume", tmp_path), 2, "not a study folder")
    assert_error(vae_inproc("tune", "--resume", tmp_path, "--space", SPACE[0]), 2, "drop --config")


@pytest.fixture(scope="module")
def study(tiny_cache, tmp_path_factory):
    """6 trials, 3 per program, 2 epochs; trial 1 pruned at its first validation, so trial 3
    takes its slot after epoch 1 while trials 0 and 2 go on."""
    def build(root: Path):
        raw = config.to_dict(config.load(None, tiny_overrides(tiny_cache) + ["train.epochs=2"]))
        study_dir = tune.create(raw, SPACE, 6, 3, "median", root, "study", ["pytest"])
        programs.clear()  # a program kept from an earlier test would make it 0
        before = epoch.TRACES["epoch"]
        summary = tune.run(study_dir, ["pytest"], pruner=PruneTrials([1]))
        return study_dir, summary, epoch.TRACES["epoch"] - before

    return built_once(tmp_path_factory, "study", build, copy=False)[1]  # read only: paths in its files stay true


def test_study_trains_trials_as_replicas_and_refills_a_pruned_slot(study):
    study_dir, summary, traces = study
    assert traces == 1  # one compiled program served every trial: the refilled slot was not recompiled
    assert summary["states"] == {"complete": 5, "pruned": 1}
    slots = summary["sessions"][0]["slots"]
    assert slots[1][:2] == [1, 3] and sorted(sum(slots, [])) == list(range(6))
    assert summary["sessions"][0]["trials_served"] == 6
    dirs = trial_dirs(study_dir)
    assert sorted(dirs) == list(range(6))
    pruned = json.loads((dirs[1] / "summary.json").read_text())
    assert pruned["status"] == "pruned" and pruned["epochs_done"] == 1 and "pruned by Optuna" in pruned["error"]
    # trial 3 started in slot 1 at the epoch boundary after the prune, from step 0
    meta3 = json.loads((dirs[3] / "meta.json").read_text())
    assert meta3["trial"]["slot"] == 1
    assert [r["step"] for r in metrics.read(dirs[3], "train")] == [20, 40]
    elbos = {}
    for n, path in dirs.items():
        run = runs.open_run(path)  # an ordinary run folder
        meta = json.loads((path / "meta.json").read_text())["trial"]
        assert meta["number"] == n
        assert run.config.optim.lr == meta["params"]["optim.lr"]
        assert run.config.objective.beta == meta["params"]["objective.beta"]
        if n != 1:
            s = json.loads((path / "summary.json").read_text())
            assert s["status"] == "completed" and s["replicas_in_program"] == 3
            elbos[n] = s["final_validation"]["elbo"]
    best = max(elbos, key=elbos.get)
    assert summary["best"]["trial"] == best and summary["best"]["validation_elbo"] == elbos[best]
    assert summary["best"]["params"] == json.loads((dirs[best] / "meta.json").read_text())["trial"]["params"]
    assert (study_dir / "search.png").stat().st_size > 1000
    assert json.loads((study_dir / "summary.json").read_text())["best"] == summary["best"]


def test_a_refilled_slot_trains_like_a_fresh_single_run(study, tmp_path):
    """The re-initialised slice starts at step 0 with its own seed, lr, wd and β: the
    trial's losses are those of `vae train` of its config alone."""
    dirs = trial_dirs(study[0])
    single = train.train(runs.open_run(dirs[3]).config, tmp_path, "single", argv=["pytest"], progress="none")
    for split in ("train", "validation"):
        a = [r["loss"] for r in metrics.read(dirs[3], split)]
        b = [r["loss"] for r in metrics.read(single, split)]
        np.testing.assert_allclose(a, b, rtol=1e-5)


def test_tune_json_and_runs_table(study):
    study_dir = study[0]
    out = vae_inproc("runs", study_dir, "--json")
    assert out.code == 0, out.stderr
    rows = json.loads(out.stdout)
    assert len(rows) == 6 and {r["status"] for r in rows} == {"completed", "pruned"}


def test_resume_continues_a_stopped_study_without_repeating_trials(tiny_cache, tmp_path, monkeypatch):
    """Stopped (SIGTERM) after epoch 3 of the program: trial 0 was pruned, trial 1 finished,
    trial 2 (in trial 0's slot) is at epoch 2. --resume continues trial 2 from its
    checkpoint, trains the one trial left, and runs no finished trial again."""
    from helpers import tiny_overrides

    raw = config.to_dict(config.load(None, tiny_overrides(tiny_cache) + ["train.epochs=3"]))
    study_dir = tune.create(raw, SPACE[:2], 4, 2, "median", tmp_path, "stop", ["pytest"])
    real, calls = tune._Study.after_epoch, []

    def stop_after_second_epoch(self, recs, epoch_):
        calls.append(epoch_)
        if epoch_ == 2:
            signal.raise_signal(signal.SIGTERM)  # as `kill` would: the loop stops after the next epoch
        return real(self, recs, epoch_)

    monkeypatch.setattr(tune._Study, "after_epoch", stop_after_second_epoch)
    with pytest.raises(Interrupted):
        tune.run(study_dir, ["pytest"], pruner=PruneTrials([0]))
    monkeypatch.setattr(tune._Study, "after_epoch", real)
    dirs = trial_dirs(study_dir)
    assert sorted(dirs) == [0, 1, 2]
    frozen = {n: (dirs[n] / "metrics.jsonl").read_bytes() for n in (0, 1)}
    assert json.loads((dirs[2] / "summary.json").read_text())["status"] == "interrupted"

    out = vae_inproc("tune", "--resume", study_dir, "--json")
    assert out.code == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["states"] == {"pruned": 1, "complete": 3}
    dirs = trial_dirs(study_dir)
    assert sorted(dirs) == [0, 1, 2, 3]  # no trial ran twice
    assert all((dirs[n] / "metrics.jsonl").read_bytes() == frozen[n] for n in (0, 1))
    meta2 = json.loads((dirs[2] / "meta.json").read_text())
    assert [r["from_epoch"] for r in meta2["resumes"]] == [2]
    assert [r["epoch"] for r in metrics.read(dirs[2], "train")] == [1, 2, 3]
    assert len(summary["sessions"]) == 2 and summary["sessions"][1]["slots"] == [[2], [3]]


def test_per_replica_beta_takes_effect_and_is_not_checkpointed(tiny_config, tmp_path):
    base = config.replace(tiny_config, train={"epochs": 1})
    items = sweep.expand(config.to_dict(base), None, ["objective.beta=0,1,3"], "beta")
    paths = train.train_replicas([c for _, c in items], tmp_path, [n for n, _ in items], argv=["pytest"])
    by_beta = {c.objective.beta: metrics.read(p, "train")[-1] for (_, c), p in zip(items, paths)}
    assert by_beta[0.0]["loss"] == by_beta[0.0]["recon"]  # β = 0: the loss is the reconstruction alone
    assert by_beta[0.0]["kl"] > 0
    for beta in (1.0, 3.0):
        r = by_beta[beta]
        assert r["loss"] == pytest.approx(r["recon"] + beta * r["kl"], rel=1e-5)
    # state["hyper"] comes from config.yaml: checkpoints keep the run-format-2 layout
    from vaecli.rundir.checkpoints import Checkpoints

    with Checkpoints(runs.open_run(paths[0]).checkpoint_dir, read_only=True) as ck:
        saved = ck.manager.item_metadata(ck.steps()[-1])["state"]
    assert "hyper" not in saved and {"params", "opt_state", "step", "rng", "skipped"} <= set(saved)


def test_space_keys_are_the_replica_keys():
    assert {"objective.beta", "objective.warmup_epochs", "objective.free_bits"} <= set(sweep.REPLICA_KEYS)
    with pytest.raises(UsageError, match="given twice"):
        search_space.parse_all(["optim.lr=1e-4:1e-3", "optim.lr=1e-4:1e-2"], config.to_dict(config.load(None)))
