"""A program's slots between epochs, on the host: the state of all of them, and per slot its
occupant (a run folder's recorder), when that started, its early-stopping counter and its
last saved step. Saves a slot's state, and tells whether an epoch's log point leaves the
state alone (`quiet`), so that it may be done while the next epoch runs.
"""
from __future__ import annotations

import time
from typing import Callable

from jax.sharding import Mesh

from vaecli import clock
from vaecli.compiled import devices, state as state_lib
from vaecli.rundir import layout, metrics as metrics_lib
from vaecli.rundir.recorder import Recorder
from vaecli.training import stops
from vaecli.training.due import Due
from vaecli.training.records import EpochMetrics, Start
from vaecli.training.replica_axis import ReplicaAxis
from vaecli.training.slots import Refills

OpenRecorder = Callable[[layout.Run, Start], Recorder]  # a run folder opened for this session


class Occupants:
    """`recs` is the caller's list, updated in place when a slot is refilled."""

    def __init__(self, recs: list[Recorder], starts: list[Start], mesh: Mesh, t_start: float,
                 budget: stops.TimeBudget | None, open_recorder: OpenRecorder):
        self.recs, self.mesh, self.budget, self.open_recorder = recs, mesh, budget, open_recorder
        self.axis = ReplicaAxis(len(recs))
        self.state = devices.place(self.axis.stack([s.state for s in starts]), mesh)
        self.every = list(recs)  # each recorder the program has had, slots refilled included
        self.t0 = [t_start] * len(recs)  # when each slot's occupant started
        # the patience counters where each run restarts (carried in the checkpoint records)
        self.watch = [watch(rec, s) for rec, s in zip(recs, starts)]
        self.saved_step = [int(s.state["step"]) if s.record else None for s in starts]
        self.save_s = 0.0  # this epoch's saves, all replicas: the final save writes them all

    def save(self, r: int, host, step: int, epoch: int, force: bool):
        """Save slot r's state (`host`: the host copy, made here if None); return the copy."""
        t, rec = clock.now(), self.recs[r]
        host = devices.to_host(self.state) if host is None else host
        # ranked for keep_best only when validated at this very step (no extra pass)
        fresh_val = rec.val_record is not None and rec.val_record["step"] == step
        rec.save(step, state_lib.checkpointed(self.axis.take(host, r)),
                 {"epoch": epoch, "train": rec.train_record, "validation": rec.val_record,
                  "early_stopping": self.watch[r].record()},
                 validation_elbo=rec.val_record["elbo"] if fresh_val else None, force=force)
        self.saved_step[r] = step
        if self.budget is not None:  # measured whole (host copy, write, seal): the final save must fit too
            rec.finish_saves()
            self.save_s += clock.now() - t
        return host

    def save_unsaved(self) -> None:
        """Before a pause: save each active slot's state after its last epoch, unless saved."""
        host = None
        for r, rec in enumerate(self.recs):
            if rec.active and rec.train_record is not None and self.saved_step[r] != rec.train_record["step"]:
                host = self.save(r, host, rec.train_record["step"], rec.train_record["epoch"], force=True)

    def quiet(self, m: EpochMetrics, steps_per_epoch: int) -> bool:
        """Whether the log point of the epoch whose metrics are `m` leaves the state alone: no
        active slot validates, saves, fails or reaches its end there (so neither can early
        stopping end it, nor `Slots.after_epoch` refill it)."""
        cfg = self.recs[0].cfg
        return not any(m.bad_step[r] >= 0 or any(Due.at(cfg, int(m.step[r]) // steps_per_epoch))
                       for r, rec in enumerate(self.recs) if rec.active)

    def refill(self, new: Refills) -> None:
        """New occupants in place: the same shapes, so the compiled program is reused."""
        if not new:
            return
        full = devices.to_host(self.state)  # the state after the epoch just logged (refills follow no quiet epoch)
        for r, (run, start) in sorted(new.items()):
            assert not self.recs[r].active, f"slot {r} is still in use"
            self.recs[r].finish_saves()
            self.recs[r].close()
            full = self.axis.put(full, r, start.state)
            self.recs[r], self.t0[r] = self.open_recorder(run, start), time.perf_counter()
            self.watch[r] = watch(self.recs[r], start)
            self.saved_step[r] = int(start.state["step"]) if start.record else None
            self.every.append(self.recs[r])
        self.state = devices.place(full, self.mesh)


def watch(rec: Recorder, start: Start) -> stops.EarlyStop:
    """A run's early-stopping counter where it (re)starts: from its checkpoint's record."""
    return stops.EarlyStop.resume(rec.cfg.train, start.record,
                                  metrics_lib.read(rec.path, "validation") if start.record else ())
