"""The run recorder: the one owner of a training run folder's files while it trains.

One `Recorder` per run folder (per replica of a program): it writes config.yaml and
meta.json at the start (or, on resume, drops the metrics after the checkpoint and records
the resume in meta.json), appends log points to metrics.jsonl and TensorBoard, saves
pictures, keeps summary.json true on every exit path, and tracks the checkpoint save in
flight so that the summary names only checkpoints that are complete and sealed.

In a multi-process job only process 0 writes files: the others get a `NullRecorder`, which
has the same interface and writes nothing (but still takes part in the Orbax saves, which
are collective). The training loop therefore never asks which process it runs on.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

from vaecli import config as config_lib, devices, runs
from vaecli.checkpoints import Checkpoints
from vaecli.metrics import MetricsLog, truncate


def start(path: Path, cfg: config_lib.Config, meta: dict) -> runs.Run:
    """A new run folder's first files: the resolved config and meta.json, before step 0."""
    if devices.is_primary():
        runs.write_text(path / "config.yaml", config_lib.dump_yaml(cfg))
        runs.write_json(path / "meta.json", meta)
    return runs.Run(path, cfg, meta)


def reopen(run: runs.Run, cfg: config_lib.Config, step: int, resume_entry: dict) -> runs.Run:
    """Resume bookkeeping, once every check has passed: metrics after `step` (the checkpoint
    the run restarts from) are dropped — they will be recomputed bit for bit —, config.yaml
    takes the allowed overrides and meta.json lists the resume."""
    meta = dict(run.meta)
    meta["resumes"] = [*meta.get("resumes", []), resume_entry]
    if devices.is_primary():
        truncate(run.path, step)
        if cfg != run.config:
            runs.write_text(run.path / "config.yaml", config_lib.dump_yaml(cfg))
        runs.write_json(run.path / "meta.json", meta)
    return runs.Run(run.path, cfg, meta)


class Recorder:
    """One run folder's summary, metrics log, checkpoints and pictures during training.

    `state_step`/`epochs_done`: where the run starts (0 for a new run); `restored`: the
    checkpoint's record when resuming from one; `before`: summary fields carried over."""

    writes = True

    def __init__(self, run: runs.Run, stack: contextlib.ExitStack, *, state_step: int, epochs_done: int,
                 restored: dict | None, before: dict):
        self.run, self.cfg, self.path = run, run.config, run.path
        self.summary = {"status": "running", "run": str(run.path), "epochs": self.cfg.train.epochs,
                        "epochs_done": epochs_done, "step": state_step,
                        "last_checkpoint_step": state_step if restored else None, **before}
        record = restored or {}
        self.train_record, self.val_record = record.get("train"), record.get("validation")
        self.pending = None  # step of the checkpoint save in flight
        self.active = True  # False once ended (a failed replica): the others go on
        self.write_summary()
        own = stack.enter_context(contextlib.ExitStack())  # closed with `stack`, or earlier by close()
        self.close = own.close
        self.log_file = own.enter_context(self._metrics_log(state_step if epochs_done else None))
        self.ckpts = own.enter_context(Checkpoints(run.checkpoint_dir, keep=self.cfg.checkpoint.keep,
                                                   keep_best=self.cfg.checkpoint.keep_best))

    # ---------------------------------------------------------------- files (NullRecorder: none)

    def _metrics_log(self, purge_after: int | None):
        return MetricsLog(self.path, tensorboard=self.cfg.log.tensorboard, purge_after=purge_after)

    def write_summary(self) -> None:
        runs.write_json(self.path / "summary.json", self.summary)

    def log(self, record: dict) -> None:
        self.log_file.write(record)

    def pictures(self, draw, *args) -> None:
        """`draw(*args, run_dir)` writes the run's picture grids."""
        draw(*args, self.path)

    def _seal(self, step: int) -> None:
        self.ckpts.seal(step)

    # ---------------------------------------------------------------- checkpoints

    def save(self, step: int, state, record: dict, validation_elbo: float | None, force: bool) -> None:
        self.ckpts.save(step, state, record, validation_elbo=validation_elbo, force=force)
        self.pending = step

    def poll_save(self) -> None:
        """The save in flight has finished: seal its file sums and name it in the summary."""
        if self.pending is not None and not self.ckpts.saving():
            self._saved()

    def _saved(self) -> None:
        self._seal(self.pending)
        self.summary["last_checkpoint_step"], self.pending = self.pending, None

    def finish_saves(self) -> None:
        self.ckpts.wait()
        if self.pending is not None:
            self._saved()

    # ---------------------------------------------------------------- status

    def update(self, **fields) -> None:
        self.summary.update(fields)
        self.write_summary()

    def end(self, status: str, error: str | None = None, **fields) -> None:
        self.summary.update(fields, status=status)
        if error is not None:
            self.summary["error"] = error
        self.write_summary()
        self.active = False


class _NoLog:
    def write(self, record: dict) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


class NullRecorder(Recorder):
    """What processes other than 0 of a multi-process job record: nothing (they still take
    part in the collective checkpoint saves)."""

    writes = False

    def _metrics_log(self, purge_after):
        return _NoLog()

    def write_summary(self) -> None:
        pass

    def pictures(self, draw, *args) -> None:
        pass

    def _seal(self, step: int) -> None:
        pass


def recorder(run: runs.Run, stack: contextlib.ExitStack, **kwargs) -> Recorder:
    """The recorder for this process: a writing one on process 0, a null one elsewhere."""
    return (Recorder if devices.is_primary() else NullRecorder)(run, stack, **kwargs)


def lock(path: Path):
    """The run's train.lock on the writing process; nothing to hold elsewhere."""
    return runs.Lock(path) if devices.is_primary() else contextlib.nullcontext()
