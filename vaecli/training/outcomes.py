"""How a training run ends, and what it says on the way: completed (train.epochs reached,
or stopped early by train.patience), paused (train.time_limit), failed (non-finite
numbers), and the progress line of each epoch. Called by the loop (vaecli.training.loop)."""
from __future__ import annotations

import statistics
import time

from vaecli import clock
from vaecli.config import Config
from vaecli.errors import Paused, RunError
from vaecli.rundir.recorder import Recorder
from vaecli.training import stops
from vaecli.training.progress import Progress
from vaecli.training.records import EpochMetrics


def end_fields(rec: Recorder, epochs_done: int, epoch_times: list[float], compile_s: float, t_start: float,
                replicas: int) -> dict:
    steady = epoch_times[1:] if len(epoch_times) > 1 else epoch_times
    return dict(epochs_done=epochs_done, steps=rec.train_record["step"] if rec.train_record else rec.summary["step"],
                final_train=rec.train_record, final_validation=rec.val_record,
                wall_s=rec.summary.get("wall_s_before", 0.0) + time.perf_counter() - t_start, compile_s=compile_s,
                epoch_s_median=statistics.median(steady) if steady else None,
                epoch_s_first=epoch_times[0] if epoch_times else None, replicas_in_program=replicas)


def complete(rec: Recorder, watch: stops.EarlyStop, epoch_times: list[float], compile_s: float, t_start: float,
              replicas: int, bar: Progress) -> None:
    """A run that reached train.epochs, or whose patience ran out (train.patience)."""
    e = rec.train_record["epoch"]
    early = {"stopped_early": e < rec.cfg.train.epochs} if rec.cfg.train.patience else {}
    rec.end("completed", **end_fields(rec, e, epoch_times, compile_s, t_start, replicas), **early, **watch.summary())
    if early.get("stopped_early"):
        bar.message(f"{rec.path.name}: stopped early after epoch {e}: {watch.since} validations without "
                    f"an improvement > train.min_delta; best validation ELBO {watch.top_elbo:.2f} at epoch "
                    f"{watch.top_epoch} (checkpoint step {watch.top_step}, --step best)")


def pause(recs: list[Recorder], watch: list[stops.EarlyStop], epoch_times: list[float], compile_s: float,
           t0: list[float], budget: stops.TimeBudget, starts_epoch: int) -> None:
    """train.time_limit: the active runs end `paused` (checkpoint saved) and Paused is raised."""
    cfg = recs[0].cfg
    paused_after = starts_epoch
    for r, rec in enumerate(recs):
        if rec.active:
            done = rec.train_record["epoch"] if rec.train_record else rec.summary["epochs_done"]
            paused_after = max(paused_after, done)
            rec.end("paused", **end_fields(rec, done, epoch_times, compile_s, t0[r], len(recs)),
                    paused_after_epoch=done, time_limit=cfg.train.time_limit,
                    time_estimates=budget.estimates(), **watch[r].summary())
    failed = [rec.path.name for rec in recs if rec.summary["status"] == "failed"]
    where = str(recs[0].path) if len(recs) == 1 else f"{len(recs) - len(failed)} run folders"
    step = recs[0].summary.get("last_checkpoint_step")
    if paused_after == starts_epoch and budget.last.get("left_s", 0) <= 0:
        why = (f"train.time_limit={cfg.train.time_limit} had run out before the first epoch of this session "
               f"(start-up, data and compilation took {clock.now() - budget.start:.1f} s); nothing trained")
    elif paused_after == starts_epoch:
        why = (f"the first epoch of this session and a save (estimated at {budget.last['need_s']:.1f} s) do not "
               f"fit in the {budget.last['left_s']:.1f} s left of train.time_limit={cfg.train.time_limit}; "
               f"nothing trained")
    else:
        why = (f"stopped after epoch {paused_after} of {cfg.train.epochs} to fit train.time_limit="
               f"{cfg.train.time_limit} (checkpoint step {step}; one more epoch, a save and the exit were "
               f"estimated at {budget.last['need_s']:.1f} s, {max(0.0, budget.last['left_s']):.1f} s were left)")
    raise Paused(f"{why}; continue with vae train --resume {where}"
                 + (f"; {len(failed)} replicas failed (non-finite loss): {', '.join(failed)}" if failed else ""),
                 [rec.path for rec in recs])


def finish(recs: list[Recorder], epoch_times: list[float], bar: Progress, failures_are_results: bool = False) -> None:
    """The program's last line; RunError when replicas failed and failures are not results
    (in `vae tune` a failed trial is one)."""
    steady = epoch_times[1:] if len(epoch_times) > 1 else epoch_times
    failed = [rec.path.name for rec in recs if rec.summary["status"] == "failed"]
    completed = sum(rec.summary["status"] == "completed" for rec in recs)
    done = f"val ELBO {recs[0].val_record['elbo']:.2f} nats, " if len(recs) == 1 and recs[0].val_record else ""
    if steady:
        done += f"median epoch {statistics.median(steady):.3f} s; "
    bar.message(f"done: {done}" + (f"run folder {recs[0].path}" if len(recs) == 1
                                   else f"{completed} of {len(recs)} replicas completed"))
    if failed and not failures_are_results:
        raise RunError(f"{len(failed)} of {len(recs)} replicas failed (non-finite loss): {', '.join(failed)}; "
                       f"the others completed")


def progress_info(recs: list[Recorder], m: EpochMetrics, examples_per_s: float) -> str:
    # the replicas that logged this epoch (one that just completed included)
    logged = [r for r, rec in enumerate(recs) if rec.train_record is not None
              and rec.train_record["step"] == int(m.step[r])]
    losses = [float(m.loss[r]) for r in logged]
    rate = f"{examples_per_s * len(recs):,.0f} ex/s"
    if not losses:
        return rate
    if len(recs) == 1:
        info = f"loss {losses[0]:.2f}  {rate}"
        if recs[0].val_record and recs[0].val_record["epoch"] == recs[0].train_record["epoch"]:
            info += f"  val ELBO {recs[0].val_record['elbo']:.2f}"
        if int(m.skipped_steps[0]):
            info += f"  skipped {int(m.skipped_steps[0])} non-finite updates ({int(m.skipped_total[0])} in the run)"
        return info
    return f"loss {min(losses):.2f}..{max(losses):.2f} over {len(losses)} replicas  {rate}"


def nonfinite_message(cfg: Config, m: EpochMetrics, epoch: int, saved: list[int]) -> str:
    """Why a run failed (`m`: its slot's slice of the epoch's metrics), and what to do."""
    terms = [t for t, ok in zip(("reconstruction", "KL", "update"), m.bad_finite) if not ok]
    where = f"non-finite {' and '.join(terms) or 'loss'} at step {int(m.bad_step)} (epoch {epoch})"
    last = f"last good checkpoint: step {saved[-1]}" if saved else "no checkpoint was saved before it"
    if cfg.train.skip_nonfinite:
        fix = f"after skipping {cfg.train.skip_nonfinite} (train.skip_nonfinite)"
    else:
        fix = "set train.skip_nonfinite: N to drop up to N bad updates, or lower optim.lr"
    return f"{where}; {last}; {fix}"
