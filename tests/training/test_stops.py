"""Runs that stop before train.epochs: --time-limit (paused, exit 3, bit-identical resume),
early stopping (train.patience; the counter survives a resume), and the paper-row script
(benchmarks/paper_rows.py) that builds on both.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers import (
    ROOT,
    assert_error,
    assert_same_bits,
    built_once,
    final_state,
    run_folders,
    sets,
    summary,
    tiny_train_args,
    train_records,
    vae_inproc,
)

from vaecli import clock, config, files
from vaecli.errors import AlreadyDone, Paused
from vaecli.rundir import layout as runs
from vaecli.rundir import metrics, restore
from vaecli.rundir.checkpoints import Checkpoints
from vaecli.training import resume as resume_lib
from vaecli.training import start as train
from vaecli.training import stops


def test_bad_time_limit_is_one_line_exit_2(tiny_cache, tmp_path):
    runs_dir = tmp_path / "runs"
    assert_error(vae_inproc(*tiny_train_args(tiny_cache, runs_dir, "x"), "--time-limit", "5x"), 2,
                 "train.time_limit", "'5x'", "9m30s")
    assert_error(vae_inproc(*tiny_train_args(tiny_cache, runs_dir, "x"), "--set", "train.time_limit=soon"), 2,
                 "train.time_limit")
    assert run_folders(runs_dir) == []


# ------------------------------------------------------------------------ time limit


class Ticks:
    """A clock for time limits that advances one second per reading: where the run pauses
    is then the same on a loaded machine as on an idle one (training itself is real)."""

    def __init__(self):
        self.t = 1000.0

    def __call__(self) -> float:
        self.t += 1.0
        return self.t


def test_time_limit_pauses_then_resume_is_bit_identical(tiny_config, tmp_path, monkeypatch):
    """A run with a time limit stops at the last epoch boundary that fits (checkpoint,
    `paused`, the end inside the limit); resumed to a length past that point it ends with
    the bits, and the metrics, of a run that was never stopped."""
    ticks = Ticks()
    monkeypatch.setattr(clock, "clock", ticks)
    limit = 30
    cfg = config.replace(tiny_config, train={"epochs": 100000, "time_limit": f"{limit}s"},
                         eval={"every_epochs": 10}, checkpoint={"every_epochs": 7})
    start = ticks.t
    with pytest.raises(Paused) as e:
        train.train(cfg, tmp_path / "a", "limited", argv=["pytest"], progress="none")
    run = e.value.paths[0]
    s = summary(run)
    paused = s["epochs_done"]
    assert s["status"] == "paused" and s["paused_after_epoch"] == paused >= 4, s
    assert ticks.t - start <= limit, "the run ended past its time limit"
    assert s["last_checkpoint_step"] == paused * 20 and s["time_limit"] == "30s"
    assert s["time_estimates"] == {"epoch_s": 3.0, "save_s": 1.0}  # the largest iteration held a save
    with Checkpoints(run / "checkpoints", read_only=True) as ck:
        assert ck.steps()[-1] == paused * 20
    assert "--resume" in str(e.value) and str(run) in str(e.value)

    total = paused + 3
    assert resume_lib.resume_run(run, [f"train.epochs={total}", "train.time_limit=null"], argv=["pytest"]) == run
    reference = train.train(config.replace(cfg, train={"epochs": total, "time_limit": None}), tmp_path / "b", "ref",
                            argv=["pytest"], progress="none")
    assert_same_bits(final_state(reference)[0], final_state(run)[0])
    assert train_records(run) == train_records(reference)
    val_steps = lambda path: [r["step"] for r in metrics.read(path, "validation")]
    assert val_steps(run) == val_steps(reference)
    assert summary(run)["status"] == "completed"


def test_a_paused_call_s_estimate_counts_until_this_call_times_an_epoch(monkeypatch):
    """A call resumed after a loaded one (epochs of 1,000 s) refuses its first epoch only
    while that estimate is all it has; once it has timed an epoch of its own (10 s), it
    plans by its own epochs, the largest of its recent ones."""
    monkeypatch.setattr(clock, "clock", lambda: 0.0)
    budget = stops.TimeBudget(600.0, 0.0, {"epoch_s": 1000.0, "save_s": 2.0})
    assert budget.need() == 1.5 * 1000 + 2 + budget.EXIT_S and not budget.fits_next()
    assert budget.estimates() == {"epoch_s": 1000.0, "save_s": 2.0}
    budget.iteration(10.0)
    budget.iteration(12.0)
    assert budget.need() == 1.5 * 12 + 2 + budget.EXIT_S and budget.fits_next()
    assert budget.estimates() == {"epoch_s": 12.0, "save_s": 2.0}
    fresh = stops.TimeBudget(600.0, 0.0)
    assert fresh.need() == 0.0 and fresh.fits_next()  # a new run's first epoch is its measurement


def test_replicas_pause_together_and_resume_as_one_program(tiny_config, tmp_path, monkeypatch):
    """--seeds replicas paused by a time limit are resumed together as one program (in
    their program's order, whatever order the folders are given in) and end with the bits
    of the uninterrupted program."""
    monkeypatch.setattr(clock, "clock", Ticks())
    cfg = config.replace(tiny_config, train={"epochs": 100000, "time_limit": "20s"}, eval={"every_epochs": 10},
                         checkpoint={"every_epochs": 10})
    cfgs = [config.replace(cfg, seed=s) for s in (0, 1)]
    with pytest.raises(Paused) as e:
        train.train_replicas(cfgs, tmp_path / "a", ["r0", "r1"], argv=["pytest"], progress="none")
    paused = {summary(p)["epochs_done"] for p in e.value.paths}
    assert len(paused) == 1 and min(paused) >= 2 and {summary(p)["status"] for p in e.value.paths} == {"paused"}
    total = paused.pop() + 2
    assert resume_lib.resume_replicas(e.value.paths[::-1], [f"train.epochs={total}", "train.time_limit=null"],
                                 argv=["pytest"]) == e.value.paths
    ref = train.train_replicas([config.replace(c, train={"epochs": total, "time_limit": None}) for c in cfgs],
                               tmp_path / "b", ["r0", "r1"], argv=["pytest"], progress="none")
    for a, b in zip(e.value.paths, ref):
        assert_same_bits(final_state(b)[0], final_state(a)[0])
        assert train_records(a) == train_records(b) and summary(a)["status"] == "completed"


def test_time_limit_exit_code_and_requeue(tiny_cache, tiny_run, tmp_path):
    """--time-limit that has run out: the run folder on stdout, a `paused:` notice, exit 3;
    --resume under the same limit pauses again (a requeue loop); without it, it completes
    with the bits of the uninterrupted tiny run (same config, 3 epochs)."""
    runs_dir = tmp_path / "runs"
    args = ["train", "--config", ROOT / "configs" / "bmnist_mlp.yaml", *sets(config_overrides(tiny_cache)),
            "--name", "tl", "--runs-dir", runs_dir]
    out = vae_inproc(*args, "--time-limit", "0s")
    assert out.code == stops.EXIT_PAUSED == 3, out.stderr
    (run,) = run_folders(runs_dir)
    assert out.stdout.strip() == str(run)
    assert out.stderr.startswith("paused:") and "--resume" in out.stderr and "nothing trained" in out.stderr
    s = summary(run)
    assert s["status"] == "paused" and s["epochs_done"] == 0 and runs.open_run(run).config.train.time_limit == "0s"

    again = vae_inproc("train", "--resume", run)  # config.yaml keeps the limit: paused again
    assert again.code == 3 and again.stdout.strip() == str(run)
    done = vae_inproc("train", "--resume", run, "--set", "train.time_limit=null")
    assert done.code == 0, done.stderr
    assert summary(run)["status"] == "completed"
    assert_same_bits(final_state(tiny_run)[0], final_state(run)[0])
    assert vae_inproc("train", "--resume", run).code == 0  # completed: nothing to do, exit 0


def config_overrides(cache) -> list[str]:
    from helpers import tiny_overrides

    return tiny_overrides(cache)


# ---------------------------------------------------------------------- early stopping


@pytest.fixture(scope="module")
def early(tiny_config, tmp_path_factory) -> Path:
    """min_delta larger than any gain: the first validation is the reference, patience 3
    more end the run after epoch 4 of 30."""
    cfg = config.replace(tiny_config, train={"epochs": 30, "patience": 3, "min_delta": 1000.0})
    return built_once(tmp_path_factory, "early", lambda root: train.train(
        cfg, root, "early", argv=["pytest"], progress="none"))[1]


def test_early_stopping_ends_completed_with_the_best_checkpoint(early):
    s = summary(early)
    vals = metrics.read(early, "validation")
    assert s["status"] == "completed" and s["stopped_early"] is True
    assert s["epochs_done"] == 4 == len(vals) and s["epochs"] == 30
    assert s["evaluations_without_improvement"] == 3 and s["patience"] == 3
    best = max(vals, key=lambda r: r["elbo"])
    assert (s["best_epoch"], s["best_step"], s["best_validation_elbo"]) == (best["epoch"], best["step"], best["elbo"])
    with Checkpoints(early / "checkpoints", read_only=True) as ck:
        assert best["step"] in ck.steps() and ck.best_step() == best["step"] and ck.steps()[-1] == 80
    # eval-elbo and sample use the best checkpoint of a run that stopped early
    assert restore.default_step(early) == "best"
    run = runs.open_run(early)
    assert restore.load_state(run.config, run.image_shape, run.checkpoint_dir)[2] == best["step"]


def test_resume_keeps_the_patience_counter(early, tmp_path):
    """What a trainer killed after epoch 3 leaves (its epoch-4 checkpoint never written):
    resumed, it stops after epoch 4 as the uninterrupted run did, counter and all (a counter
    started afresh would run to epoch 6)."""
    run = shutil.copytree(early, tmp_path / "killed")
    shutil.rmtree(run / "checkpoints" / "80")
    (run / "checkpoint_sums" / "80.json").unlink(missing_ok=True)
    files.write_json(run / "summary.json", {**summary(run), "status": "running"})
    resume_lib.resume_run(run, [], argv=["pytest"])
    assert summary(run)["stopped_early"] is True and summary(run)["epochs_done"] == 4
    assert_same_bits(final_state(early)[0], final_state(run)[0])
    assert train_records(run) == train_records(early)
    # a completed early stop has nothing left to do
    with pytest.raises(AlreadyDone, match="stopped early"):
        resume_lib.resume_run(run, [], argv=["pytest"])


def test_counter_from_metrics_matches_the_checkpoint_record(early):
    """Checkpoints written before records carried the counter: replaying metrics.jsonl gives
    the same counter as the record."""
    run = runs.open_run(early)
    _, _, _, record = restore.load_state(run.config, run.image_shape, run.checkpoint_dir, 60)
    from_record = stops.EarlyStop.resume(run.config.train, record)
    history = [r for r in metrics.read(early, "validation") if r["step"] <= 60]
    replayed = stops.EarlyStop.resume(run.config.train, {k: v for k, v in record.items() if k != "early_stopping"},
                                      history)
    assert replayed.record() == from_record.record() and from_record.since == 2


def test_patience_without_validation_is_refused(tiny_cache, tmp_path):
    runs_dir = tmp_path / "runs"
    base = tiny_train_args(tiny_cache, runs_dir, "p")  # 2 epochs, validated every epoch
    assert_error(vae_inproc(*base, "--set", "train.patience=2"), 2, "train.patience", "validates 2 times",
                 "below 2")
    assert_error(vae_inproc(*base, "--set", "train.epochs=40", "--set", "eval.every_epochs=20",
                            "--set", "train.patience=5"), 2, "train.patience", "eval.every_epochs")
    assert_error(vae_inproc(*base, "--set", "train.patience=1", "--set", "checkpoint.keep_best=false"), 2,
                 "checkpoint.keep_best")
    assert run_folders(runs_dir) == []
    cfg = config.load(ROOT / "configs" / "paper" / "vampprior.yaml")
    assert (cfg.train.patience, cfg.eval.every_epochs, cfg.checkpoint.keep_best) == (50, 1, True)
