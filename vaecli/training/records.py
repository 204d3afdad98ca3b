"""What passes between the parts of the training host loop, as typed records.

    Model        the functional model and its optimizer, built once per program
    Start        where a run (re)starts: its state, epochs trained, checkpoint record
    Opened       a run folder opened for training: (run, model, start)
    Restored     a run's state read back from its latest checkpoint (vaecli.training.resume)
    EpochMetrics one epoch's metrics on the host, replica axis first
    LogPoint     an epoch read to the host: what its bookkeeping needs
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import NamedTuple

import numpy as np
import optax

from vaecli.models.vae import Functional
from vaecli.rundir import layout


class Model(NamedTuple):
    """The model as a pure function of its parameters, and the optimizer that trains it."""
    fn: Functional
    tx: optax.GradientTransformation


@dataclass
class Start:
    """Where a run (re)starts: its state, the epochs it has trained, the checkpoint's record
    when resuming, and the summary fields carried over."""
    state: dict
    epoch: int = 0
    record: dict | None = None
    summary: dict = field(default_factory=dict)


class Opened(NamedTuple):
    """A run folder ready to train: its layout, its model, and where it starts."""
    run: layout.Run
    model: Model
    start: Start


class Restored(NamedTuple):
    """A run's state at its latest complete checkpoint (step 0 if it saved none)."""
    model: Model
    state: dict
    epoch: int  # the epochs the checkpoint had trained
    record: dict | None  # the checkpoint's record; None when nothing was saved
    summary: dict  # the run's summary.json before this session


@dataclass(frozen=True)
class EpochMetrics:
    """One epoch's metrics as the compiled epoch reports them (vaecli.compiled.epoch), read to
    the host: every field has a leading replica axis; `replica(r)` is one slot's slice."""
    step: np.ndarray  # the step count after the epoch
    loss: np.ndarray  # means over the epoch's finite steps
    recon: np.ndarray
    kl: np.ndarray
    lr: np.ndarray  # the learning rate of the last step
    skipped_steps: np.ndarray  # non-finite updates skipped in this epoch (train.skip_nonfinite)
    skipped_total: np.ndarray  # ... and in the whole run
    bad_step: np.ndarray  # the first non-finite update applied (the run must stop); -1 if none
    bad_finite: np.ndarray  # at that step: were reconstruction, KL, update finite
    logs: dict[str, np.ndarray]  # the objective's own terms (registry.objective(cfg).logs)

    @classmethod
    def read(cls, host: dict[str, np.ndarray]) -> EpochMetrics:
        """From the compiled epoch's metrics dict, already on the host."""
        named = {f.name for f in fields(cls)} - {"logs"}
        return cls(**{k: host[k] for k in named}, logs={k: v for k, v in host.items() if k not in named})

    def replica(self, r: int) -> EpochMetrics:
        return EpochMetrics(**{f.name: np.asarray(getattr(self, f.name)[r]) for f in fields(self) if f.name != "logs"},
                            logs={k: np.asarray(v[r]) for k, v in self.logs.items()})


@dataclass
class LogPoint:
    """An epoch read to the host (the loop's one host sync), and what its bookkeeping needs."""
    epoch: int  # the program's epoch count (a slot's own is its step's)
    metrics: EpochMetrics
    seconds: float  # from the epoch's dispatch to its metrics on the host
    began: float  # `clock.now()` as the epoch was dispatched: the time budget's clock
    stopping: bool  # a signal asked to stop after this epoch
    ended: float | None = None  # a deferred point: when its loop iteration ended (the next epoch's start)
