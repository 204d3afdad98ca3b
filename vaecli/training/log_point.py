"""An epoch's log point, slot by slot: each active slot logs its training record, and
validates, draws its pictures and saves its state when they are due (vaecli.training.due)
or when an event forces them (a signal, early stopping, a new best under patience); a slot
whose epoch had a non-finite step fails.
"""
from __future__ import annotations

import time

from vaecli import registry
from vaecli.compiled import devices
from vaecli.config import Config
from vaecli.rundir.recorder import Recorder
from vaecli.training import outcomes
from vaecli.training.due import Due
from vaecli.training.occupants import Occupants
from vaecli.training.program import Program
from vaecli.training.progress import Progress
from vaecli.training.records import EpochMetrics, LogPoint


def log_slots(occ: Occupants, program: Program, point: LogPoint, bar: Progress) -> list[int]:
    """Each active slot's bookkeeping of the epoch `point`; returns the slots whose runs reached
    their end (train.epochs, or early stopping)."""
    cfg = occ.recs[0].cfg  # the schedule's keys are the same in every replica
    examples_per_s = program.examples_per_epoch / point.seconds
    host, done = None, []  # host: one host copy of the state serves every slot's save
    for r, rec in enumerate(occ.recs):
        if not rec.active:
            continue
        m = point.metrics.replica(r)
        step = int(m.step)
        e = step // program.steps_per_epoch  # the slot's own epoch
        due = Due.at(cfg, e)
        rec.train_record = train_record(cfg, m, e, examples_per_s, point.seconds, occ.t0[r])
        rec.log(rec.train_record)
        rec.poll_save()
        if m.bad_step >= 0:
            fail(rec, m, e, bar, len(occ.recs))
            continue
        new_best = early_end = False
        if due.validate:
            new_best, early_end = validate(occ, program, r, step, e, draw=due.pictures, last=due.end)
        # with early stopping every new best is saved: it is the checkpoint the run is for
        forced = due.end or point.stopping or early_end
        if due.save or forced or (new_best and cfg.train.patience > 0):
            host = occ.save(r, host, step, e, force=forced or new_best)
        rec.update(epochs_done=e, step=step, skipped_updates=int(m.skipped_total),
                   wall_s=rec.summary.get("wall_s_before", 0.0) + time.perf_counter() - occ.t0[r])
        if due.end or early_end:
            done.append(r)
    return done


def train_record(cfg: Config, m: EpochMetrics, epoch: int, examples_per_s: float, seconds: float,
                 t_start: float) -> dict:
    """The line metrics.jsonl gets for a slot's training epoch (`m`: its slice)."""
    return {"step": int(m.step), "epoch": epoch, "split": "train",
            "loss": float(m.loss), "recon": float(m.recon), "kl": float(m.kl),
            **{k: float(m.logs[k]) for k in registry.objective(cfg).logs},
            "lr": float(m.lr), "skipped_steps": int(m.skipped_steps),
            "examples_per_s": examples_per_s, "epoch_s": seconds, "elapsed_s": time.perf_counter() - t_start}


def validate(occ: Occupants, program: Program, r: int, step: int, epoch: int, draw: bool,
             last: bool) -> tuple[bool, bool]:
    """Slot r validates (and draws its pictures); returns (a new best, early stopping ends the run)."""
    rec = occ.recs[r]
    params = devices.local(occ.axis.take(occ.state["ema" if "ema" in occ.state else "params"], r))
    rec.val_record = program.validate(rec, params, step, epoch, occ.t0[r])
    rec.log(rec.val_record)
    if draw:
        rec.pictures(program.pictures, rec.cfg.seed, params, step)
    new_best = occ.watch[r].update(rec.val_record["elbo"], epoch, step)
    return new_best, occ.watch[r].stop and not last


def fail(rec: Recorder, m: EpochMetrics, epoch: int, bar: Progress, replicas: int) -> None:
    """A non-finite step was applied: the run ends `failed`, naming it and its last checkpoint."""
    rec.finish_saves()  # the message names the last complete checkpoint
    message = outcomes.nonfinite_message(rec.cfg, m, epoch, rec.ckpts.steps())
    rec.end("failed", message)
    if replicas > 1:
        bar.message(f"replica {rec.path.name} failed: {message}")
