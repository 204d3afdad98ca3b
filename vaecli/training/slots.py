"""A program's replica slots between epochs, on the host.

One compiled program advances several replicas at once (--seeds, --sweep, the trials of
`vae tune`); on the host every tree has a leading replica axis (`ReplicaAxis`, the one place
that knows a single run's program has none), and each slot has its occupant: a run folder's
recorder, when it started, its early-stopping counter, its last saved step (`Occupants`).
`Slots` is the policy at each epoch boundary: by default every replica trains its
`train.epochs` and stops; `vae tune` refills finished slots with new trials.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import jax
import numpy as np

from vaecli import clock, registry
from vaecli.compiled import devices, state as state_lib
from vaecli.rundir import layout, metrics as metrics_lib
from vaecli.rundir.recorder import Recorder
from vaecli.training import outcomes, stops
from vaecli.training.progress import Progress


@dataclass
class Start:
    """Where a run (re)starts: its state, the epochs it has trained, the checkpoint's record
    when resuming, and the summary fields carried over."""
    state: dict
    epoch: int = 0
    record: dict | None = None
    summary: dict = field(default_factory=dict)


class Slots:
    """Per-epoch control of a program's replica slots. This default lets every replica train
    its `train.epochs` and stop; `vae tune` (vaecli.tune) refills the slots of finished and
    pruned trials with new ones, in place, without recompiling.

    Each slot's slice of the state carries its own step counter, so a slot's epoch is its
    step // steps-per-epoch: a new occupant starting at step 0 draws exactly the numbers of
    a fresh single run of its config."""

    failures_are_results = False  # True: a failed (non-finite) replica does not fail the command
    total_epochs: int | None = None  # the progress bar's length (None: train.epochs)

    def after_epoch(self, recs: list[Recorder], epoch: int) -> dict[int, tuple[layout.Run, Start]]:
        """Called at each epoch boundary once every replica is logged, validated, saved, and
        those at `train.epochs` completed. It may end active replicas (`rec.end(status)`) and
        return new occupants for slots whose recorder is no longer active: {slot: (run, start)}.
        The loop ends when no slot is active. After an epoch at which no slot validated, saved,
        failed or ended (`Occupants.quiet`) it is called while the next epoch runs, and must
        return no occupants."""
        return {}


class ReplicaAxis:
    """The host's view of a program's replicas: every tree it reads has a leading replica
    axis. The device program of a single run carries no such axis (it is then the plain,
    unbatched program, and its checkpoints have the plain layout); this class is the only
    place that knows."""

    def __init__(self, n: int):
        self.n = n

    def stack(self, trees):
        return trees[0] if self.n == 1 else jax.tree.map(lambda *a: np.stack(a), *trees)

    def take(self, tree, r: int):
        return tree if self.n == 1 else jax.tree.map(lambda a: a[r], tree)

    def put(self, host_tree, r: int, tree):
        """`host_tree` (owned numpy arrays) with slice r replaced by `tree`."""
        if self.n == 1:
            return tree

        def put(a, b):
            a[r] = np.asarray(b)
            return a

        return jax.tree.map(put, host_tree, tree)

    def host(self, tree) -> dict:
        """Device arrays -> numpy with the replica axis first."""
        out = devices.to_host(tree)
        return jax.tree.map(lambda a: np.asarray(a)[None], out) if self.n == 1 else out


class Occupants:
    """The host side of a program's slots between epochs: the state, and per slot its
    recorder, when its occupant started, its early-stopping counter and its last saved step.
    `recs` is the caller's list, updated in place when a slot is refilled."""

    def __init__(self, recs: list[Recorder], starts: list[Start], axis: ReplicaAxis, mesh, t_start: float,
                 budget: stops.TimeBudget | None, open_recorder):
        self.recs, self.axis, self.mesh, self.budget, self.open_recorder = recs, axis, mesh, budget, open_recorder
        self.state = devices.replicate(axis.stack([s.state for s in starts]), mesh)
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

    def quiet(self, m: dict, steps_per_epoch: int) -> bool:
        """Whether the log point of the epoch whose metrics are `m` leaves the state alone: no
        active slot validates, saves, fails or reaches its end there (so neither can early
        stopping end it, nor `Slots.after_epoch` refill it)."""
        cfg = self.recs[0].cfg
        for r, rec in enumerate(self.recs):
            if not rec.active:
                continue
            e = int(m["step"][r]) // steps_per_epoch
            if (m["bad_step"][r] >= 0 or e >= cfg.train.epochs or e % cfg.eval.every_epochs == 0
                    or e % cfg.checkpoint.every_epochs == 0):
                return False
        return True

    def log_point(self, program, m: dict, steps_per_epoch: int, dt: float, examples_per_s: float,
                  stopping: bool, bar: Progress) -> list[int]:
        """Each active slot logs its epoch, validates, draws and saves when due; returns the
        slots whose runs reached their end (train.epochs, or early stopping)."""
        cfg = self.recs[0].cfg
        host, done = None, []
        for r, rec in enumerate(self.recs):
            if not rec.active:
                continue
            mr = {k: v[r] for k, v in m.items()}
            step = int(mr["step"])
            e = step // steps_per_epoch  # the slot's own epoch
            last = e >= cfg.train.epochs
            rec.train_record = {"step": step, "epoch": e, "split": "train",
                                "loss": float(mr["loss"]), "recon": float(mr["recon"]), "kl": float(mr["kl"]),
                                **{k: float(mr[k]) for k in registry.objective(cfg).logs},
                                "lr": float(mr["lr"]), "skipped_steps": int(mr["skipped_steps"]),
                                "examples_per_s": examples_per_s, "epoch_s": dt,
                                "elapsed_s": time.perf_counter() - self.t0[r]}
            rec.log(rec.train_record)
            rec.poll_save()
            if mr["bad_step"] >= 0:
                rec.finish_saves()  # the message names the last complete checkpoint
                message = outcomes.nonfinite_message(rec.cfg, mr, e, rec.ckpts.steps())
                rec.end("failed", message)
                if len(self.recs) > 1:
                    bar.message(f"replica {rec.path.name} failed: {message}")
                continue
            new_best = early_end = False
            if e % cfg.eval.every_epochs == 0 or last:
                params = devices.local(self.axis.take(self.state["ema" if "ema" in self.state else "params"], r))
                rec.val_record = program.validate(rec, params, step, e, self.t0[r])
                rec.log(rec.val_record)
                rec.pictures(program.pictures, rec.cfg.seed, params, step)
                new_best = self.watch[r].update(rec.val_record["elbo"], e, step)
                early_end = self.watch[r].stop and not last
            # with early stopping every new best is saved: it is the checkpoint the run is for
            saving = e % cfg.checkpoint.every_epochs == 0 or last or stopping or early_end
            if saving or (new_best and cfg.train.patience > 0):
                host = self.save(r, host, step, e, force=last or stopping or early_end or new_best)
            rec.update(epochs_done=e, step=step, skipped_updates=int(mr["skipped_total"]),
                       wall_s=rec.summary.get("wall_s_before", 0.0) + time.perf_counter() - self.t0[r])
            if last or early_end:
                done.append(r)
        return done

    def refill(self, new: dict[int, tuple[layout.Run, Start]]) -> None:
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
        self.state = devices.replicate(full, self.mesh)


def watch(rec: Recorder, start: Start) -> stops.EarlyStop:
    """A run's early-stopping counter where it (re)starts: from its checkpoint's record."""
    return stops.EarlyStop.resume(rec.cfg.train, start.record,
                                  metrics_lib.read(rec.path, "validation") if start.record else ())
