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
import logging
from pathlib import Path

from vaecli import config as config_lib, files
from vaecli.compiled import devices
from vaecli.errors import StorageError, storage_error
from vaecli.rundir import layout, trackers as trackers_lib
from vaecli.rundir.checkpoints import Checkpoints
from vaecli.rundir.metrics import MetricsLog, read as read_metrics, truncate

log = logging.getLogger("vaecli")


def start(path: Path, cfg: config_lib.Config, meta: dict) -> layout.Run:
    """A new run folder's first files: the resolved config and meta.json, before step 0."""
    if devices.is_primary():
        files.write_text(layout.Folder(path).config_file, config_lib.dump_yaml(cfg))
        files.write_json(layout.Folder(path).meta_file, meta)
    return layout.Run(path, cfg, meta)


def reopen(run: layout.Run, cfg: config_lib.Config, step: int, resume_entry: dict) -> layout.Run:
    """Resume bookkeeping, once every check has passed: metrics after `step` (the checkpoint
    the run restarts from) are dropped — they will be recomputed bit for bit —, config.yaml
    takes the allowed overrides and meta.json lists the resume."""
    meta = dict(run.meta)
    if devices.is_primary():
        # the last step the trackers were sent: a resumed run sends them only later ones
        logged = [r["step"] for r in read_metrics(run.path) if isinstance(r.get("step"), int)]
        resume_entry = {**resume_entry, "logged_to_step": max(logged, default=None)}
    meta["resumes"] = [*meta.get("resumes", []), resume_entry]
    if devices.is_primary():
        try:
            truncate(run.path, step)
            if cfg != run.config:
                files.write_text(run.config_file, config_lib.dump_yaml(cfg))
            files.write_json(run.meta_file, meta)
        except OSError as e:  # each file is replaced atomically: the run can still be resumed
            raise storage_error(e, then=f"once fixed, resume it again (or copy {run.path} to writable storage "
                                        f"and resume the copy)") from e
    return layout.Run(run.path, cfg, meta)


class Recorder:
    """One run folder's summary, metrics log, checkpoints and pictures during training.

    `state_step`/`epochs_done`: where the run starts (0 for a new run); `restored`: the
    checkpoint's record when resuming from one; `before`: summary fields carried over."""

    def __init__(self, run: layout.Run, stack: contextlib.ExitStack, *, state_step: int, epochs_done: int,
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
        self.trackers = self._trackers(resumed="resumed_from_step" in before)

    def _trackers(self, resumed: bool) -> trackers_lib.Trackers:
        """W&B / MLflow when the config asks for them; their run ids go into meta.json, and a
        resumed run continues the tracker runs meta.json names."""
        if not trackers_lib.enabled(self.cfg):
            return trackers_lib.NoTrackers()
        meta = self.run.meta
        logged_to = meta["resumes"][-1].get("logged_to_step") if resumed and meta.get("resumes") else None
        trackers = trackers_lib.Trackers(self.run, meta.get("trackers"), logged_to)
        if trackers.ids and trackers.ids != meta.get("trackers"):
            meta = {**meta, "trackers": {**(meta.get("trackers") or {}), **trackers.ids}}
            files.write_json(self.run.meta_file, meta)
            self.run = layout.Run(self.path, self.cfg, meta)
        return trackers

    # ---------------------------------------------------------------- files (NullRecorder: none)

    def _metrics_log(self, purge_after: int | None):
        return MetricsLog(self.path, tensorboard=self.cfg.log.tensorboard, purge_after=purge_after)

    def write_summary(self) -> None:
        """A summary that cannot be written stops the run: the one on disk (written atomically)
        stays the previous one, which names only complete checkpoints; once this process has
        exited, `vae runs` shows the run as died (its train.lock is free)."""
        try:
            files.write_json(self.run.summary_file, self.summary)
        except OSError as e:
            self._settle()
            raise storage_error(e, self.run.summary_file, self.resume_hint()) from e

    def log(self, record: dict) -> None:
        """A log point that cannot be written stops the run before the checkpoint of that
        epoch: metrics.jsonl then ends at (or in a damaged line after) the last complete
        checkpoint, and `--resume` recomputes what is missing bit for bit."""
        try:
            self.log_file.write(record)
        except OSError as e:
            self._settle()
            raise storage_error(e, self.run.metrics_file,
                                f"no checkpoint is saved after a lost log line; {self.resume_hint()}") from e
        self.trackers.log(record)

    def pictures(self, draw, *args) -> None:
        """`draw(*args, run_dir)` writes the run's picture grids. A picture that cannot be
        written is a warning (once per run): training goes on, nothing else depends on it."""
        try:
            paths = draw(*args, self.path)
        except OSError as e:
            if not self.picture_failed:
                log.warning(f"{storage_error(e)}; training goes on without pictures (no further warning)")
            self.picture_failed = True
            return
        if paths and self.train_record:  # the trackers get them at the step of the latest training record
            self.trackers.pictures(paths, self.train_record["step"])

    picture_failed = False

    def _settle(self) -> None:
        """Before a failure is reported: the save in flight completes (or fails), so that
        the message names the last complete checkpoint."""
        if self.pending is not None:
            with contextlib.suppress(StorageError):
                self.finish_saves()

    def resume_hint(self) -> str:
        step = self.summary.get("last_checkpoint_step")
        where = f"the last complete checkpoint is step {step}" if step is not None else "no checkpoint is complete"
        return f"{where}; once fixed, `vae train --resume {self.path}` continues from it"

    def _seal(self, step: int) -> None:
        self.ckpts.seal(step)

    # ---------------------------------------------------------------- checkpoints

    def save(self, step: int, state, record: dict, validation_elbo: float | None, force: bool) -> None:
        self.finish_saves()  # the save before it is complete and sealed first (Orbax waits for it anyway)
        try:
            self.ckpts.save(step, state, record, validation_elbo=validation_elbo, force=force)
        except StorageError as e:
            raise StorageError(f"{e}; {self.resume_hint()}") from None
        self.pending = step

    def poll_save(self) -> None:
        """The save in flight has finished: seal its file sums and name it in the summary."""
        if self.pending is not None and not self.ckpts.saving():
            self.finish_saves()

    def finish_saves(self) -> None:
        """Wait for the save in flight; once it is complete, seal it and name it in the
        summary. A failed save (StorageError) is never named: the summary keeps the last
        complete checkpoint, which Orbax's failed save leaves as it was."""
        step, self.pending = self.pending, None
        try:
            self.ckpts.wait()
            if step is not None:
                self._seal(step)
        except StorageError as e:
            raise StorageError(f"{e}; {self.resume_hint()}") from None
        except OSError as e:  # sealing: the sums of a complete step could not be written
            raise storage_error(e, then=self.resume_hint()) from e
        if step is not None:
            self.summary["last_checkpoint_step"] = step

    # ---------------------------------------------------------------- status

    def update(self, **fields) -> None:
        self.summary.update(fields)
        self.write_summary()

    def end(self, status: str, error: str | None = None, **fields) -> None:
        self.summary.update(fields, status=status)
        if error is not None:
            self.summary["error"] = error
        self.active = False
        self.write_summary()
        self.trackers.end(self.summary)


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

    def _metrics_log(self, purge_after):
        return _NoLog()

    def _trackers(self, resumed: bool):
        return trackers_lib.NoTrackers()

    def write_summary(self) -> None:
        pass

    def pictures(self, draw, *args) -> None:
        pass

    def _seal(self, step: int) -> None:
        pass


def recorder(run: layout.Run, stack: contextlib.ExitStack, **kwargs) -> Recorder:
    """The recorder for this process: a writing one on process 0, a null one elsewhere."""
    return (Recorder if devices.is_primary() else NullRecorder)(run, stack, **kwargs)


def lock(path: Path):
    """The run's train.lock on the writing process; nothing to hold elsewhere."""
    return layout.Lock(path) if devices.is_primary() else contextlib.nullcontext()
