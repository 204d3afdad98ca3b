"""The one training loop: every run — a single one, the replicas of a --seeds/--sweep
program, a resumed one (vaecli.training.resume), the trials of `vae tune` — goes through
`session`, which compiles the epoch once (vaecli.training.program) and drives it.

The host reads metrics once per epoch (the log point), never inside it; there each slot
logs, validates, draws pictures and saves checkpoints through its run folder's recorder
(vaecli.rundir.recorder), which keeps summary.json true on every exit path; how a run ends
(completed, stopped early, paused, failed) is vaecli.training.outcomes. Host-side code
always sees a replica axis: one run is the case of one replica.
"""
from __future__ import annotations

import contextlib
import signal
import time

from vaecli import clock
from vaecli.compiled import devices
from vaecli.errors import Interrupted, RunError, StorageError
from vaecli.rundir import layout, recorder as recorder_lib
from vaecli.rundir.recorder import Recorder
from vaecli.training import outcomes, program as program_lib, stops
from vaecli.training.progress import Progress
from vaecli.training.slots import Occupants, ReplicaAxis, Slots, Start


def session(run_list: list[layout.Run], model, train_split, val_split, starts: list[Start], t_start: float,
            progress: str | None, slots: Slots | None = None, clock_start: float | None = None) -> None:
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
            _Epochs(recs, model, train_split, val_split, starts, bar, t_start, stop, slots, open_recorder,
                    clock.now() if clock_start is None else clock_start).run()
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


class _Epochs:
    """One compiled program driven epoch by epoch until no slot is active: run the epoch, read
    its metrics (the only host sync), let each slot log, validate and save (`Occupants`),
    then end, pause or refill slots."""

    def __init__(self, recs: list[Recorder], model, train_split, val_split, starts: list[Start], bar: Progress,
                 t_start: float, stop: stops.StopOnSignal, slots: Slots, open_recorder, clock_start: float):
        cfg = recs[0].cfg  # the replicas differ only in values their states carry
        self.recs, self.bar, self.stop, self.slots, self.first_epoch = recs, bar, stop, slots, starts[0].epoch
        self.axis = ReplicaAxis(len(recs))
        mesh = devices.check_layout(cfg)
        self.images = devices.replicate(train_split.flat, mesh)  # the whole training split, on every device, uint8
        self.budget = None
        if cfg.train.time_limit is not None:
            self.budget = stops.TimeBudget(clock.parse_duration(cfg.train.time_limit), clock_start,
                                           estimates=recs[0].summary.get("time_estimates"))
        self.occ = Occupants(recs, starts, self.axis, mesh, t_start, self.budget, open_recorder)
        # out of time already: pause at once, without compiling what could not run
        out_of_time = self.budget is not None and clock.now() >= self.budget.deadline
        self.program = None if out_of_time else program_lib.build(model, cfg, train_split, val_split, self.occ.state,
                                                                  self.images, self.axis, mesh)
        self.steps_per_epoch = len(train_split) // cfg.train.batch_size
        self.examples_per_epoch = self.steps_per_epoch * cfg.train.batch_size
        self.epoch_times: list[float] = []
        self.epoch = starts[0].epoch  # the program's count (a slot's own is its step's)

    def run(self) -> None:
        recs, paused, deferred = self.recs, False, None
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

    def one_epoch(self, deferred: dict | None) -> dict | None:
        """Run one epoch and read its metrics. An epoch after which no slot validates, saves,
        fails or ends needs the state no more: its log point is returned, to be done while
        the next epoch runs (the device does not wait for the host's bookkeeping, a few ms
        an epoch: a GPU's bmnist_mlp epoch is ~37 ms). `deferred`: such a log point of the
        epoch before, done here once this epoch is under way."""
        occ = self.occ
        self.epoch += 1
        t, t_budget, occ.save_s = time.perf_counter(), clock.now(), 0.0
        occ.state, m = self.program.epoch(occ.state, self.images)
        if deferred is not None:
            deferred["t_end"] = t_budget  # its loop iteration ended as this epoch began
        self.log_point(deferred)
        m = self.axis.host(m)  # the only host sync of the epoch
        dt = time.perf_counter() - t
        self.epoch_times.append(dt)
        point = {"m": m, "dt": dt, "epoch": self.epoch, "t_budget": t_budget, "stopping": self.stop.signum is not None}
        if not point["stopping"] and occ.quiet(m, self.steps_per_epoch):
            return point
        self.log_point(point)
        return None

    def log_point(self, point: dict | None) -> None:
        """The epoch's bookkeeping: each slot logs (and validates, draws and saves when due),
        ended runs complete, the progress line, the time budget, the slots' policy."""
        if point is None:
            return
        recs, occ, program, m, dt = self.recs, self.occ, self.program, point["m"], point["dt"]
        done = occ.log_point(program, m, self.steps_per_epoch, dt, self.examples_per_epoch / dt, point["stopping"],
                             self.bar)
        for r in done:  # after every save has started, so that they overlap
            recs[r].finish_saves()
            outcomes.complete(recs[r], occ.watch[r], self.epoch_times, program.compile_s, occ.t0[r], len(recs),
                              self.bar)
        self.bar.epoch(point["epoch"], outcomes.progress_info(recs, m, self.examples_per_epoch / dt))
        if self.budget is not None:
            self.budget.iteration((point["t_end"] if "t_end" in point else clock.now()) - point["t_budget"])
            if occ.save_s:
                self.budget.saved(occ.save_s)
        if not self.slots.failures_are_results and all(rec.summary["status"] == "failed" for rec in recs):
            raise RunError(recs[0].summary["error"] if len(recs) == 1 else
                           f"all {len(recs)} replicas failed; see each run's summary.json")
        if point["stopping"]:
            _interrupt(recs, self.stop.signum, point["epoch"], int(m["step"][0]))
        occ.refill(self.slots.after_epoch(recs, point["epoch"]))


def _interrupt(recs: list[Recorder], signum: int, epoch: int, step: int):
    """A signal arrived during the epoch: the saves it forced complete, then Interrupted."""
    for rec in recs:
        rec.finish_saves()  # the message below names a checkpoint that is complete
    name = signal.Signals(signum).name
    where = recs[0].run.checkpoint_dir if len(recs) == 1 else f"each of the {len(recs)} run folders"
    raise Interrupted(f"{name}: stopped after epoch {epoch}, checkpoint saved at step {step} in {where}",
                      128 + signum)
