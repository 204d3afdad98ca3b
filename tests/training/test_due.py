"""The one due-rule (vaecli.training.due): what is due after an epoch, asked both by the loop
(may this epoch's log point wait for the next epoch?) and by each slot's bookkeeping."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np

from helpers import tiny_overrides
from vaecli import config
from vaecli.rundir import layout as runs, metrics
from vaecli.rundir.checkpoints import Checkpoints
from vaecli.training import start as train
from vaecli.training.due import Due, itstime
from vaecli.training.occupants import Occupants
from vaecli.training.records import EpochMetrics


def scheduled(every: int | None, last: int, upto: int) -> set[int]:
    """The epochs in 1..upto an action of period `every` runs at, written as ranges."""
    periodic = set(range(every, upto + 1, every)) if every else set()
    return periodic | set(range(last, upto + 1))


def test_itstime_is_each_multiple_of_the_period_and_the_end():
    for last in range(1, 8):
        for every in (None, 1, 2, 3, 5, 9):
            upto = last + 2
            got = {e for e in range(1, upto + 1) if itstime(e, every, last)}
            assert got == scheduled(every, last, upto), (every, last)


def cfg_of(tiny_cache, *sets) -> config.Config:
    return config.load(None, tiny_overrides(tiny_cache) + list(sets))


def test_due_at_follows_each_key(tiny_cache):
    cfg = cfg_of(tiny_cache, "train.epochs=7", "eval.every_epochs=3", "checkpoint.every_epochs=2")
    due = {e: Due.at(cfg, e) for e in range(1, 10)}
    assert {e for e, d in due.items() if d.validate} == scheduled(3, 7, 9)
    assert {e for e, d in due.items() if d.pictures} == scheduled(3, 7, 9)  # drawn with each validation
    assert {e for e, d in due.items() if d.save} == scheduled(2, 7, 9)
    assert {e for e, d in due.items() if d.end} == scheduled(None, 7, 9)


def test_an_epoch_is_quiet_exactly_when_nothing_is_due_and_no_step_failed(tiny_cache):
    cfg = cfg_of(tiny_cache, "train.epochs=9", "eval.every_epochs=4", "checkpoint.every_epochs=3")
    busy = scheduled(4, 9, 10) | scheduled(3, 9, 10)
    occ = object.__new__(Occupants)  # quiet reads only the slots' recorders: their config and activity
    steps = 7

    def metrics_at(epochs, bad=-1):
        n = len(epochs)
        a = lambda v: np.full(n, v)
        return EpochMetrics(step=np.array(epochs) * steps, loss=a(1.0), recon=a(1.0), kl=a(0.0), lr=a(1e-3),
                            skipped_steps=a(0), skipped_total=a(0), bad_step=a(bad), bad_finite=np.ones((n, 3), bool),
                            logs={})

    occ.recs = [SimpleNamespace(cfg=cfg, active=True)]
    for e in range(1, 11):
        assert occ.quiet(metrics_at([e]), steps) == (e not in busy), e
        assert not occ.quiet(metrics_at([e], bad=e * steps), steps)
    # two slots at different epochs (a refilled one): busy if either is; an ended slot does not count
    occ.recs = [SimpleNamespace(cfg=cfg, active=True), SimpleNamespace(cfg=cfg, active=True)]
    assert not occ.quiet(metrics_at([1, 4]), steps) and occ.quiet(metrics_at([1, 5]), steps)
    occ.recs[1].active = False
    assert occ.quiet(metrics_at([1, 4]), steps)


def test_a_run_validates_draws_and_saves_when_due(tmp_path, tiny_cache):
    cfg = cfg_of(tiny_cache, "train.epochs=5", "eval.every_epochs=2", "checkpoint.every_epochs=3")
    path = train.train(cfg, tmp_path, "due", argv=[], progress="none")
    steps = 640 // 32
    recs = metrics.read(path)
    assert [r["epoch"] for r in recs if r["split"] == "train"] == [1, 2, 3, 4, 5]
    assert [r["epoch"] for r in recs if r["split"] == "validation"] == sorted(scheduled(2, 5, 5))
    with Checkpoints(runs.open_run(path).checkpoint_dir, read_only=True) as ck:
        assert ck.steps() == [steps * e for e in sorted(scheduled(3, 5, 5))]
    assert sorted(p.name for p in (path / "samples").glob("prior-*.png")) == sorted(
        f"prior-step{steps * e}.png" for e in scheduled(2, 5, 5))
    assert json.loads((path / "summary.json").read_text())["status"] == "completed"
