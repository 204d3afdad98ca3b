"""`vae train --resume`: a run folder continues from its latest complete checkpoint.

Everything is checked (lock, config, trackers, data, checkpoint) before anything in the run
folder is touched; then the recorder records the resume (vaecli.rundir.recorder.reopen) and
the one training loop (vaecli.training.loop.session) goes on, bit-identical to an
uninterrupted run.
"""
from __future__ import annotations

import contextlib
import time
from pathlib import Path

import vaecli
from vaecli import clock, config as config_lib
from vaecli.compiled import devices, state as state_lib
from vaecli.config import Config
from vaecli.errors import AlreadyDone, RunError, UsageError
from vaecli.rundir import layout, metrics as metrics_lib, recorder as recorder_lib, restore, trackers
from vaecli.rundir.checkpoints import Checkpoints
from vaecli.training import stops
from vaecli.training.loop import session
from vaecli.training.records import Model, Opened, Restored, Start
from vaecli.training.start import load_data


def resume_run(run_path: str | Path, overrides: list[str], argv: list[str], progress: str | None = None,
               clock_start: float | None = None) -> Path:
    """Continue a run from its latest complete checkpoint (or from step 0 if it saved none)
    with its own config.yaml; `overrides` may change only resumable keys (vaecli.config.schema).

    Everything is checked (lock, config, data, checkpoint) before anything in the run
    folder is touched."""
    return resume_replicas([run_path], overrides, argv, progress=progress, clock_start=clock_start)[0]


def resume_replicas(run_paths: list[str | Path], overrides: list[str], argv: list[str],
                    progress: str | None = None, clock_start: float | None = None) -> list[Path]:
    """Continue the replicas of one program (as `start.train_replicas` wrote them) as one program
    again, so that they end with the bits an uninterrupted program gives. Runs that have
    nothing left to train (completed, or stopped early) are left as they are; the others must
    restart from the same epoch. One run: `resume_run`."""
    t_start = time.perf_counter()
    clock_start = clock.now() if clock_start is None else clock_start
    opened = [layout.open_run(p) for p in run_paths]
    if len(opened) > 1 and all("replica" in r.meta for r in opened):
        opened.sort(key=lambda r: r.meta["replica"]["index"])  # the program's own order: its bits
    cfgs = [config_lib.apply_resume_overrides(run.config, overrides) for run in opened]
    for cfg in cfgs:
        trackers.check(cfg)  # a tracker's missing extra or unreachable URI: exit 2, before anything is touched
        devices.check_layout(cfg)  # so is a --set train.devices the batch cannot be split over
    with contextlib.ExitStack() as locks:
        for run in opened:
            locks.enter_context(recorder_lib.lock(run.path))
        data_splits = load_data(cfgs[0], progress)
        todo: list[tuple[layout.Run, Config, Restored]] = []
        done = []
        for run, cfg in zip(opened, cfgs):
            try:
                todo.append((run, cfg, _restored(run, cfg, data_splits[0])))
            except AlreadyDone as e:
                done.append(str(e))
        if not todo:
            raise AlreadyDone(done[0] if len(done) == 1 else f"all {len(done)} runs have nothing left to train")
        if len({r.epoch for _, _, r in todo}) > 1:
            raise RunError("the runs to resume together restart from different epochs ("
                           + ", ".join(f"{run.path.name}: {r.epoch}" for run, _, r in todo)
                           + "); resume them one by one")
        run_list, starts = [], []
        for run, cfg, r in todo:
            run, start = _reopen(run, cfg, r, overrides, argv)
            run_list.append(run), starts.append(start)
        model = r.model  # the replicas' models differ only in values their states carry
        session(run_list, model, *data_splits, starts, t_start, progress, clock_start=clock_start)
        return [run.path for run in run_list]


def restart(run: layout.Run, cfg: Config, overrides: list[str], argv: list[str], train_split) -> Opened:
    """A run folder's state at its latest complete checkpoint (step 0 if none), its resume
    recorded. The caller holds the run's lock and loaded the data."""
    r = _restored(run, cfg, train_split)
    run, start = _reopen(run, cfg, r, overrides, argv)
    return Opened(run, r.model, start)


def _restored(run: layout.Run, cfg: Config, train_split) -> Restored:
    """The run at its latest complete checkpoint; AlreadyDone when it has nothing left to
    train. Reads only."""
    old_summary = run.summary() or {}
    if list(train_split.image_shape) != list(run.image_shape) or len(train_split) != run.meta["data"].get("num_train"):
        raise RunError(f"the training data of {cfg.data.dataset} is not what {run.path} was trained on "
                       f"({len(train_split)} images of {train_split.image_shape}, the run saw "
                       f"{run.meta['data'].get('num_train')} of {tuple(run.image_shape)}); point data.* at the same data")
    epoch, record = 0, None
    with Checkpoints(run.checkpoint_dir, read_only=True) as ckpts:
        steps = ckpts.steps()
        if steps:
            fn, tx, state, record = restore.restore_at(ckpts, steps[-1], cfg, train_split.image_shape,
                                                       train=train_split)
            epoch = int(record["epoch"])
        else:  # killed before its first checkpoint: it starts again from the init of step 0
            fn, tx, state = state_lib.init_state(cfg, train_split.image_shape, train=train_split)
    if epoch > cfg.train.epochs:
        raise UsageError(f"{run.path} has already trained {epoch} epochs; --set train.epochs=N needs N >= {epoch}")
    if epoch == cfg.train.epochs and old_summary.get("status") == "completed":
        raise AlreadyDone(f"{run.path} already completed {epoch} epochs; extend it with --resume "
                          f"{run.path} --set train.epochs=N")
    early = stops.EarlyStop.resume(cfg.train, record, metrics_lib.read(run.path, "validation") if record else ())
    if early.stop and old_summary.get("status") == "completed":
        raise AlreadyDone(f"{run.path} stopped early after epoch {epoch} ({early.since} validations without "
                          f"improvement; the best was at epoch {early.top_epoch}); to go on, raise it with "
                          f"--resume {run.path} --set train.patience=N")
    return Restored(Model(fn, tx), state, epoch, record, old_summary)


def _reopen(run: layout.Run, cfg: Config, r: Restored, overrides, argv) -> tuple[layout.Run, Start]:
    """The resume recorded in the run folder (vaecli.rundir.recorder.reopen): the reopened run,
    and where it starts."""
    step = int(r.state["step"])
    run = recorder_lib.reopen(run, cfg, step, {
        "from_step": step, "from_epoch": r.epoch, "overrides": list(overrides), "argv": list(argv),
        "time": clock.utc_now().isoformat(timespec="seconds"), "vaecli_version": vaecli.__version__})
    before = {"resumed_from_step": step, "wall_s_before": float(r.summary.get("wall_s") or 0.0)}
    if r.summary.get("time_estimates"):
        before["time_estimates"] = r.summary["time_estimates"]
    return run, Start(r.state, r.epoch, r.record, before)
