"""Why a run stops before `train.epochs`: a time limit (`--time-limit`, `train.time_limit`),
early stopping on the validation ELBO (`train.patience`, `train.min_delta`), and a signal
(SIGINT/SIGTERM: stop at the next epoch boundary, with a checkpoint).

- A run with a time limit stops at the last epoch boundary that fits: before each epoch it
  predicts the end of that epoch and of the final checkpoint save from measured times, and
  pauses (checkpoint, status `paused`, exit `EXIT_PAUSED`) when they would not fit.
- Early stopping counts the evaluations since the validation ELBO last rose by more than
  `min_delta`; at `patience` of them the run ends `completed` with `stopped_early: true`.
  The counter travels in every checkpoint's record, so a resumed run stops exactly where the
  uninterrupted one would.
"""
from __future__ import annotations

import math
import signal
import threading

from vaecli import clock
from vaecli.errors import Paused

EXIT_PAUSED = Paused.exit_code  # `vae train` paused by its time limit; `--resume` continues (0/1/2/130/143 mean other things)


class TimeBudget:
    """Does one more epoch, and then the final checkpoint save, fit before the deadline?

    An epoch's cost is the whole loop iteration (training epoch, validation, pictures,
    scheduled save), the largest of the last `WINDOW` (so an evaluation epoch counts), times
    `SAFETY`; the save's cost is the largest measured save (`DEFAULT_SAVE_S` until one is
    measured), and `EXIT_S` for what follows the last save (closing the checkpoint manager,
    the summary, the interpreter's exit), so that the process is gone, with exit code 3, when
    the limit is reached. With nothing measured yet (the first epoch of a new run) the epoch
    is run if the deadline has not passed: it is the measurement. A resumed run starts from
    the paused call's estimate, which counts only until this call has timed an epoch of its
    own: that call's machine load is not this one's."""

    WINDOW = 20
    SAFETY = 1.5
    DEFAULT_SAVE_S = 5.0
    EXIT_S = 3.0

    def __init__(self, limit_s: float, start: float, estimates: dict | None = None):
        """`start`: a `now()` reading, from which `limit_s` counts."""
        self.limit_s, self.start = limit_s, start
        self.deadline = start + limit_s
        self.recent: list[float] = []
        self.save_s: float | None = None
        self.last: dict = {}
        est = estimates or {}  # carried over from the summary of the paused session
        self.carried = [float(est["epoch_s"])] if est.get("epoch_s") else []
        if est.get("save_s"):
            self.save_s = float(est["save_s"])

    def iteration(self, seconds: float) -> None:
        self.recent = (self.recent + [seconds])[-self.WINDOW:]

    def saved(self, seconds: float) -> None:
        self.save_s = max(self.save_s or 0.0, seconds)

    def need(self) -> float:
        """Seconds one more epoch, the final save and the exit are expected to take."""
        save = self.DEFAULT_SAVE_S if self.save_s is None else self.save_s
        epochs = self.recent or self.carried
        return self.SAFETY * max(epochs) + save + self.EXIT_S if epochs else 0.0

    def fits_next(self) -> bool:
        t = clock.now()
        self.last = {"need_s": self.need(), "left_s": self.deadline - t}  # what the decision saw
        return t < self.deadline and t + self.last["need_s"] <= self.deadline

    def estimates(self) -> dict:
        epochs = self.recent or self.carried
        return {"epoch_s": max(epochs) if epochs else None, "save_s": self.save_s}


class EarlyStop:
    """The patience counter over a run's validations, and the best one seen.

    `best` is the reference an improvement is measured against: it moves only when the ELBO
    rises by more than `min_delta` (as in Keras' EarlyStopping); `top_*` is the highest ELBO
    seen, the checkpoint `--step best` selects."""

    def __init__(self, patience: int, min_delta: float, record: dict | None = None):
        self.patience, self.min_delta = patience, min_delta
        r = record or {}
        self.best = r.get("best")
        self.since = int(r.get("since", 0))
        self.top_elbo, self.top_epoch, self.top_step = r.get("top_elbo"), r.get("top_epoch"), r.get("top_step")

    @classmethod
    def resume(cls, train_cfg, record: dict | None, history=()) -> "EarlyStop":
        """The counter where a run restarts: from its checkpoint's record, or, for a checkpoint
        written before records carried it, by replaying the validation lines of metrics.jsonl
        (`history`, already cut at the checkpoint)."""
        if record is not None and isinstance(record.get("early_stopping"), dict):
            return cls(train_cfg.patience, train_cfg.min_delta, record["early_stopping"])
        out = cls(train_cfg.patience, train_cfg.min_delta)
        if record is not None:
            for line in history:
                if isinstance(line.get("elbo"), (int, float)) and isinstance(line.get("step"), int):
                    out.update(float(line["elbo"]), int(line.get("epoch") or 0), line["step"])
        return out

    def update(self, elbo: float, epoch: int, step: int) -> bool:
        """Count one validation; True when it is the highest ELBO so far."""
        finite = elbo is not None and math.isfinite(elbo)
        if finite and (self.best is None or elbo > self.best + self.min_delta):
            self.best, self.since = elbo, 0
        else:
            self.since += 1
        if finite and (self.top_elbo is None or elbo > self.top_elbo):
            self.top_elbo, self.top_epoch, self.top_step = elbo, epoch, step
            return True
        return False

    @property
    def stop(self) -> bool:
        return self.patience > 0 and self.since >= self.patience

    def record(self) -> dict:
        return {"best": self.best, "since": self.since, "top_elbo": self.top_elbo, "top_epoch": self.top_epoch,
                "top_step": self.top_step}

    def summary(self) -> dict:
        out = {"best_epoch": self.top_epoch, "best_step": self.top_step, "best_validation_elbo": self.top_elbo}
        if self.patience:
            out.update(patience=self.patience, evaluations_without_improvement=self.since)
        return out


class StopOnSignal:
    """SIGINT/SIGTERM ask the loop to stop after the epoch in flight (which then saves a
    checkpoint); a second signal interrupts at once. Only the main thread can install it."""

    def __init__(self):
        self.signum = None
        self._old = {}

    def _handle(self, signum, frame):
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
