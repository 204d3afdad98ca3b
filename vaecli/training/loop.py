"""The one training loop: every run — a single one, the replicas of a --seeds/--sweep
program, a resumed one (vaecli.training.resume), the trials of `vae tune` — goes through
`session`, which compiles the epoch once (vaecli.training.program) and drives it. Host-side
code always sees a replica axis (vaecli.training.replica_axis): one run is one replica.

The life of an epoch, in `_Epochs.run`:

1. Time limit: if one more epoch, a save and the exit would not fit (stops.TimeBudget),
   the state after the last epoch is saved and the runs pause.
2. The compiled epoch is dispatched (`Program.epoch`); the device runs it.
3. While it runs, the host does the log point of the epoch before, if that one was quiet.
4. The epoch's metrics come to the host: the loop's one host sync (`LogPoint`).
5. Quiet or not: the epoch is quiet when no slot validates, saves, fails or ends after it
   (vaecli.training.due says what is due; `Occupants.quiet` asks it). A quiet epoch's log
   point needs the state no more, so it is deferred to step 3 of the next epoch; the device
   does not wait for the host's bookkeeping.
6. The log point (`_Epochs.log_point`), now for a busy epoch, else one epoch later: each
   slot logs, and validates, draws and saves when due (vaecli.training.log_point); ended
   runs complete (vaecli.training.outcomes); the progress line; the time budget learns
   the iteration's time; all replicas failed -> RunError; a signal -> Interrupted after
   the saves it forced; the slot policy may refill ended slots (vaecli.training.slots).

Each run folder's recorder (vaecli.rundir.recorder) keeps its summary.json true on every
exit path: completed, stopped early, paused, failed or interrupted.
"""
from __future__ import annotations

import contextlib
import signal
import time
from dataclasses import dataclass, field

from vaecli import clock
from vaecli.compiled import devices
from vaecli.config import Config
from vaecli.data import Split
from vaecli.errors import Interrupted, RunError, StorageError
from vaecli.rundir import layout, recorder as recorder_lib
from vaecli.rundir.recorder import Recorder
from vaecli.training import log_point as log_point_lib, outcomes, program as program_lib, stops
from vaecli.training.occupants import Occupants
from vaecli.training.program import Program
from vaecli.training.progress import Progress
from vaecli.training.records import EpochMetrics, LogPoint, Model, Start
from vaecli.training.slots import Slots


def session(run_list: list[layout.Run], model: Model, train_split: Split, val_split: Split, starts: list[Start],
            t_start: float, progress: str | None, slots: Slots | None = None, clock_start: float | None = None) -> None:
    """Run the epochs of every replica from its start to its `train.epochs` (and of the
    replicas `slots` puts in their place), keeping each summary.json's status true on every
    exit path. `clock_start`: the `clock.now()` reading from which `train.time_limit` counts."""
    slots = slots or Slots()
    cfg = run_list[0].config
    bar = Progress(slots.total_epochs or cfg.train.epochs,
                   (progress or cfg.log.progress) if devices.is_primary() else "none", first_epoch=starts[0].epoch)
    recs = []
    try:
        with contextlib.ExitStack() as stack, stops.StopOnSignal() as stop:
            def open_recorder(run: layout.Run, start: Start) -> Recorder:
                resumed = start.record or start.epoch
                bar.message(f"run folder: {run.path}" + (f" (resuming after epoch {start.epoch}, step "
                                                         f"{int(start.state['step'])})" if resumed else ""))
                return recorder_lib.recorder(run, stack, state_step=int(start.state["step"]), epochs_done=start.epoch,
                                             restored=start.record, before=start.summary)

            recs.extend(open_recorder(run, start) for run, start in zip(run_list, starts))
            budget = _budget(cfg, recs[0], clock.now() if clock_start is None else clock_start)
            # the replicas differ only in values their states carry
            mesh = devices.replica_layout(cfg, len(recs)) or devices.check_layout(cfg)
            occ = Occupants(recs, starts, mesh, t_start, budget, open_recorder)
            # out of time already: pause at once, without compiling what could not run
            out_of_time = budget is not None and clock.now() >= budget.deadline
            program = None if out_of_time else program_lib.build(model, cfg, train_split, val_split, occ.state,
                                                                  occ.axis, mesh)
            _Epochs(occ, program, budget, bar, stop, slots, starts[0].epoch).run()
    except BaseException as e:
        status = "interrupted" if isinstance(e, (KeyboardInterrupt, Interrupted)) else "failed"
        for rec in recs:
            if rec.active:
                try:
                    rec.end(status, str(e) or type(e).__name__)
                except StorageError:
                    pass  # the summary cannot be written (a full disk): the error on its way says why
        raise
    finally:
        bar.close()


def _budget(cfg: Config, rec: Recorder, clock_start: float) -> stops.TimeBudget | None:
    """`train.time_limit`'s budget, with the times a paused session measured; None without one."""
    if cfg.train.time_limit is None:
        return None
    return stops.TimeBudget(clock.parse_duration(cfg.train.time_limit), clock_start,
                            estimates=rec.summary.get("time_estimates"))


@dataclass
class _Epochs:
    """One compiled program driven epoch by epoch until no slot is active (see the module)."""
    occ: Occupants  # the slots: the state, each run's recorder and counters
    program: Program | None  # None: out of time before it was compiled
    budget: stops.TimeBudget | None  # train.time_limit
    bar: Progress
    stop: stops.StopOnSignal
    slots: Slots  # the policy at each epoch boundary
    first_epoch: int  # the program's epoch count where this session starts
    epoch: int = field(init=False)  # the program's count (a slot's own is its step's)
    epoch_times: list[float] = field(default_factory=list)

    def __post_init__(self):
        self.epoch = self.first_epoch

    def run(self) -> None:
        recs, paused, deferred = self.occ.recs, False, None
        try:
            while any(rec.active for rec in recs):
                if self.budget is not None and not self.budget.fits_next():
                    self.log_point(deferred)
                    deferred, paused = None, True
                    self.occ.save_unsaved()  # the state after the last epoch, unless saved already
                    break
                deferred = self.one_epoch(deferred)
            self.log_point(deferred)  # none left: an epoch after which a run ends is never deferred
        except BaseException:  # every exit path: the saves in flight complete, the summaries name them
            for rec in recs:
                with contextlib.suppress(StorageError):  # the error on its way comes first
                    rec.finish_saves()
            raise
        for rec in recs:
            rec.finish_saves()
        if paused:
            outcomes.pause(recs, self.occ.watch, self.epoch_times, self.program.compile_s if self.program else 0.0,
                           self.occ.t0, self.budget, self.first_epoch)
        outcomes.finish(self.occ.every, self.epoch_times, self.bar, self.slots.failures_are_results)

    def one_epoch(self, deferred: LogPoint | None) -> LogPoint | None:
        """Run one epoch and read its metrics; return its log point when it is quiet, to be
        done while the next epoch runs (the device does not wait for the host's bookkeeping,
        a few ms an epoch: a GPU's bmnist_mlp epoch is ~37 ms), else do it now. `deferred`:
        such a log point of the epoch before, done here once this epoch is under way."""
        occ, program = self.occ, self.program
        self.epoch += 1
        t, began, occ.save_s = time.perf_counter(), clock.now(), 0.0
        occ.state, m = program.epoch(occ.state, program.images)
        if deferred is not None:
            deferred.ended = began  # its loop iteration ended as this epoch began
        self.log_point(deferred)
        metrics = EpochMetrics.read(occ.axis.host(m))  # the only host sync of the epoch
        dt = time.perf_counter() - t
        self.epoch_times.append(dt)
        point = LogPoint(self.epoch, metrics, dt, began, stopping=self.stop.signum is not None)
        if not point.stopping and occ.quiet(metrics, program.steps_per_epoch):
            return point
        self.log_point(point)
        return None

    def log_point(self, point: LogPoint | None) -> None:
        """The epoch's bookkeeping: each slot logs (and validates, draws and saves when due),
        ended runs complete, the progress line, the time budget, the slots' policy."""
        if point is None:
            return
        occ, program, recs = self.occ, self.program, self.occ.recs
        done = log_point_lib.log_slots(occ, program, point, self.bar)
        for r in done:  # after every save has started, so that they overlap
            recs[r].finish_saves()
            outcomes.complete(recs[r], occ.watch[r], self.epoch_times, program.compile_s, occ.t0[r], len(recs),
                              self.bar)
        self.bar.epoch(point.epoch, outcomes.progress_info(recs, point.metrics,
                                                           program.examples_per_epoch / point.seconds))
        if self.budget is not None:
            self.budget.iteration((clock.now() if point.ended is None else point.ended) - point.began)
            if occ.save_s:
                self.budget.saved(occ.save_s)
        if not self.slots.failures_are_results and all(rec.summary["status"] == "failed" for rec in recs):
            raise RunError(recs[0].summary["error"] if len(recs) == 1 else
                           f"all {len(recs)} replicas failed; see each run's summary.json")
        if point.stopping:
            _interrupt(recs, self.stop.signum, point.epoch, int(point.metrics.step[0]))
        occ.refill(self.slots.after_epoch(recs, point.epoch))


def _interrupt(recs: list[Recorder], signum: int, epoch: int, step: int):
    """A signal arrived during the epoch: the saves it forced complete, then Interrupted."""
    for rec in recs:
        rec.finish_saves()  # the message below names a checkpoint that is complete
    name = signal.Signals(signum).name
    where = recs[0].run.checkpoint_dir if len(recs) == 1 else f"each of the {len(recs)} run folders"
    raise Interrupted(f"{name}: stopped after epoch {epoch}, checkpoint saved at step {step} in {where}",
                      128 + signum)
