"""`vae train`: the loop around the compiled epoch (vaecli.epoch).

`vaecli.launch.train_command` is the one entry the CLI calls. Every run — a single one,
the replicas of a --seeds/--sweep program, a resumed one (vaecli.resume), the trials of
`vae tune` — goes through `session`, which compiles the epoch once and drives it: the host reads metrics once per epoch (the log point), never
inside it; there it logs, validates, draws pictures and saves checkpoints through each
run folder's recorder (vaecli.recorder), which keeps summary.json true on every exit path;
how a run ends (completed, stopped early, paused, failed) is vaecli.outcomes.

Host-side code always sees a replica axis: one run is the case of one replica.
"""
from __future__ import annotations

import contextlib
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import jax
import numpy as np

from vaecli import bounds, data, devices, objectives, outcomes, programs, recorder as recorder_lib, runs, sample, state as state_lib, stops
from vaecli import metrics as metrics_lib
from vaecli.config import Config
from vaecli.epoch import MATMUL_PRECISION, make_epoch_fn
from vaecli.errors import Interrupted, RunError, StorageError
from vaecli.progress import Progress
from vaecli.recorder import Recorder
from vaecli.signals import StopOnSignal


def train(cfg: Config, runs_dir: str | Path, name: str, argv: list[str], progress: str | None = None,
          clock_start: float | None = None) -> Path:
    """Train a model as `cfg` says in a new run folder; return the folder. `progress`
    overrides log.progress (auto | bar | lines | none). `clock_start`: the `stops.now()` reading
    from which `train.time_limit` counts (default: this call)."""
    return train_replicas([cfg], runs_dir, [name], argv, progress=progress, clock_start=clock_start)[0]


def train_replicas(cfgs: list[Config], runs_dir: str | Path, names: list[str], argv: list[str],
                   progress: str | None = None, clock_start: float | None = None) -> list[Path]:
    """Train configs that differ only in `sweep.REPLICA_KEYS` (seed, learning rate, weight
    decay) as ONE compiled program with a replica axis; each replica writes an ordinary run
    folder. Raises `Paused` (with the folders) when `train.time_limit` stopped it."""
    t_start = time.perf_counter()
    clock_start = stops.now() if clock_start is None else clock_start
    if devices.is_primary():
        for name in names:
            runs.check_target(runs_dir, name)  # a bad --name or --runs-dir is reported before any data work
    # Data and devices first: a dataset that cannot be loaded, or a batch the devices cannot
    # share, leaves no run folder behind.
    train_split, val_split = _load_data(cfgs[0])
    devices.check_layout(cfgs[0])
    paths = devices.share_paths([runs.create(runs_dir, name) for name in names] if devices.is_primary() else None)
    with contextlib.ExitStack() as locks:
        run_list, starts = [], []
        for i, (cfg, path) in enumerate(zip(cfgs, paths)):
            extra = {"replica": {"index": i, "count": len(cfgs), "program": [p.name for p in paths]}} if len(cfgs) > 1 else {}
            locks.enter_context(recorder_lib.lock(path))
            run, model, start = new_run(path, cfg, argv, train_split, val_split, extra)
            run_list.append(run), starts.append(start)
        session(run_list, model, train_split, val_split, starts, t_start, progress, clock_start=clock_start)
    return paths


def new_run(path: Path, cfg: Config, argv: list[str], train_split, val_split, extra_meta: dict):
    """A new run folder's first files and its state at step 0: (run, model, _Start)."""
    meta = runs.environment_meta(argv)
    meta["data"] = {"dataset": cfg.data.dataset, "image_shape": list(train_split.image_shape),
                    "num_train": len(train_split), "num_validation": len(val_split),
                    "binarize": cfg.data.binarize, "train_scale": train_split.scale}
    # the matmul precision the step runs at (XLA's CPU backend computes every setting in float32)
    meta["precision"] = {"train": cfg.train.precision, "matmul": MATMUL_PRECISION[cfg.train.precision],
                         "effective": cfg.train.precision if meta["backend"] != "cpu" else "float32"}
    run = recorder_lib.start(path, cfg, {**meta, **extra_meta})
    fn, tx, state = state_lib.init_state(cfg, train_split.image_shape, train=train_split)
    return run, (fn, tx), _Start(state)


@dataclass
class _Start:
    state: dict
    epoch: int = 0  # epochs already trained
    record: dict | None = None  # the checkpoint's record, when resuming
    summary: dict = field(default_factory=dict)  # summary fields carried over


class Slots:
    """Per-epoch control of a program's replica slots. This default lets every replica train
    its `train.epochs` and stop; `vae tune` (vaecli.tune) refills the slots of finished and
    pruned trials with new ones, in place, without recompiling.

    Each slot's slice of the state carries its own step counter, so a slot's epoch is its
    step // steps-per-epoch: a new occupant starting at step 0 draws exactly the numbers of
    a fresh single run of its config."""

    failures_are_results = False  # True: a failed (non-finite) replica does not fail the command
    total_epochs: int | None = None  # the progress bar's length (None: train.epochs)

    def after_epoch(self, recs: list[Recorder], epoch: int) -> dict[int, tuple[runs.Run, _Start]]:
        """Called at each epoch boundary once every replica is logged, validated, saved, and
        those at `train.epochs` completed. It may end active replicas (`rec.end(status)`) and
        return new occupants for slots whose recorder is no longer active: {slot: (run, start)}.
        The loop ends when no slot is active."""
        return {}


def _load_data(cfg: Config):
    train_split = data.load_split(cfg.data, "train")
    val_split = data.load_split(cfg.data, "validation")
    if len(train_split) < cfg.train.batch_size:
        raise RunError(f"train.batch_size={cfg.train.batch_size} is larger than the training split "
                       f"({len(train_split)} images); lower it")
    return train_split, val_split


class _ReplicaAxis:
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


def session(run_list: list[runs.Run], model, train_split, val_split, starts: list[_Start], t_start: float,
            progress: str | None, slots: Slots | None = None, clock_start: float | None = None) -> None:
    """Run the epochs of every replica from its start to its `train.epochs` (and of the
    replicas `slots` puts in their place), keeping each summary.json's status true on every
    exit path. `clock_start`: the `stops.now()` reading from which `train.time_limit` counts."""
    slots = slots or Slots()
    cfg = run_list[0].config
    first = starts[0]
    bar = Progress(slots.total_epochs or cfg.train.epochs,
                   (progress or cfg.log.progress) if devices.is_primary() else "none", first_epoch=first.epoch)
    recs = []
    try:
        with contextlib.ExitStack() as stack, StopOnSignal() as stop:
            def open_recorder(run: runs.Run, start: _Start) -> Recorder:
                resumed = start.record or start.epoch
                bar.message(f"run folder: {run.path}" + (f" (resuming after epoch {start.epoch}, step "
                                                         f"{int(start.state['step'])})" if resumed else ""))
                return recorder_lib.recorder(run, stack, state_step=int(start.state["step"]), epochs_done=start.epoch,
                                             restored=start.record, before=start.summary)

            recs.extend(open_recorder(run, start) for run, start in zip(run_list, starts))
            _loop(recs, model, train_split, val_split, starts, bar, t_start, stop, slots, open_recorder,
                  stops.now() if clock_start is None else clock_start)
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


@dataclass
class _Program:
    """What one program compiles: the epoch, the validation estimator, the picture grids."""
    epoch: object
    validate: object
    pictures: object
    compile_s: float


def _compile(model, cfg: Config, train_split, val_split, state, images, axis: _ReplicaAxis, mesh) -> _Program:
    fn, tx = model
    t0 = time.perf_counter()
    batch_sharding = devices.batch_sharding(mesh)
    # kept for the process: a later run of the same program in it (the library called in a
    # loop, the tests) reuses it instead of tracing, lowering and loading it again
    key = programs.key("epoch", fn, programs.training_fields(cfg), len(train_split), train_split.scale, axis.n,
                       batch_sharding, programs.signature(state), programs.signature(images))
    epoch_fn = programs.get(key, lambda: make_epoch_fn(fn, tx, cfg, len(train_split), train_split.scale,
                                                       replicas=axis.n, batch_sharding=batch_sharding)
                            .lower(state, images).compile())
    val_estimate, _ = bounds.compile_estimator(fn, devices.local(axis.take(state["params"], 0)), val_split.images,
                                               val_split.scale, 1, cfg.eval.batch_size,
                                               deterministic=not objectives.of(cfg).draws_samples)
    compile_s = time.perf_counter() - t0
    num_pixels = int(np.prod(val_split.image_shape))

    ema = state_lib.params_kind(cfg) == "ema"  # validation and pictures use the EMA parameters

    def validate(rec: Recorder, params, step, epoch, t_start):
        s = bounds.summarize(val_estimate(params, rec.cfg.seed), num_pixels)
        return {"step": step, "epoch": epoch, "split": "validation", "loss": -s["elbo"], "recon": s["recon"],
                "kl": s["kl"], "elbo": s["elbo"], "elapsed_s": time.perf_counter() - t_start,
                **({"params": "ema"} if ema else {})}

    n_pic = min(cfg.eval.grid, len(val_split))
    pic_images = val_split.flat[:n_pic].astype(np.float32).reshape(-1, *val_split.image_shape) / val_split.scale

    def draw(seed, params, step, run_dir: Path):
        title = f"{run_dir.name} step {step}" + (" (EMA params)" if ema else "")
        return list(sample.training_pictures(fn, params, pic_images, seed, step, run_dir, title))

    return _Program(epoch_fn, validate, draw, compile_s)


def _loop(recs: list[Recorder], model, train_split, val_split, starts: list[_Start], bar: Progress,
          t_start: float, stop: StopOnSignal, slots: Slots, open_recorder, clock_start: float) -> None:
    """Drive one compiled program epoch by epoch until no slot is active: run the epoch, read
    its metrics (the only host sync), let each slot log, validate and save (`_Occupants`),
    then end, pause or refill slots."""
    cfg = recs[0].cfg  # the replicas differ only in values their states carry
    axis = _ReplicaAxis(len(recs))
    mesh = devices.check_layout(cfg)
    images = devices.replicate(train_split.flat, mesh)  # the whole training split, on every device, uint8
    budget = None
    if cfg.train.time_limit is not None:
        budget = stops.TimeBudget(stops.parse_duration(cfg.train.time_limit), clock_start,
                                  estimates=recs[0].summary.get("time_estimates"))
    occ = _Occupants(recs, starts, axis, mesh, t_start, budget, open_recorder)
    # out of time already: pause at once, without compiling what could not run
    out_of_time = budget is not None and stops.now() >= budget.deadline
    program = None if out_of_time else _compile(model, cfg, train_split, val_split, occ.state, images, axis, mesh)
    steps_per_epoch = len(train_split) // cfg.train.batch_size
    examples_per_epoch = steps_per_epoch * cfg.train.batch_size
    epoch_times, epoch, paused = [], starts[0].epoch, False  # epoch: the program's count (a slot's own is its step's)
    try:
        while any(rec.active for rec in recs):
            if budget is not None and not budget.fits_next():
                paused = True
                occ.save_unsaved()  # the state after the last epoch, unless saved already
                break
            epoch += 1
            t, t_budget, occ.save_s = time.perf_counter(), stops.now(), 0.0
            occ.state, m = program.epoch(occ.state, images)
            m = axis.host(m)  # the log point: the only host sync of the epoch
            dt = time.perf_counter() - t
            epoch_times.append(dt)
            stopping = stop.signum is not None
            done = occ.log_point(program, m, steps_per_epoch, dt, examples_per_epoch / dt, stopping, bar)
            for r in done:  # after every save has started, so that they overlap
                recs[r].finish_saves()
                outcomes.complete(recs[r], occ.watch[r], epoch_times, program.compile_s, occ.t0[r], len(recs), bar)
            bar.epoch(epoch, outcomes.progress_info(recs, m, examples_per_epoch / dt))
            if budget is not None:
                budget.iteration(stops.now() - t_budget)
                if occ.save_s:
                    budget.saved(occ.save_s)
            if not slots.failures_are_results and all(rec.summary["status"] == "failed" for rec in recs):
                raise RunError(recs[0].summary["error"] if len(recs) == 1 else
                               f"all {len(recs)} replicas failed; see each run's summary.json")
            if stopping:
                _interrupt(recs, stop.signum, epoch, int(m["step"][0]))
            occ.refill(slots.after_epoch(recs, epoch))
    except BaseException:  # every exit path: the saves in flight complete, the summaries name them
        for rec in recs:
            with contextlib.suppress(StorageError):  # the error on its way comes first
                rec.finish_saves()
        raise
    for rec in recs:
        rec.finish_saves()
    if paused:
        outcomes.pause(recs, occ.watch, epoch_times, program.compile_s if program else 0.0, occ.t0, budget,
                       starts[0].epoch)
    outcomes.finish(occ.every, epoch_times, bar, slots)


class _Occupants:
    """The host side of a program's slots between epochs: the state, and per slot its
    recorder, when its occupant started, its early-stopping counter and its last saved step.
    `recs` is the caller's list, updated in place when a slot is refilled."""

    def __init__(self, recs: list[Recorder], starts: list[_Start], axis: _ReplicaAxis, mesh, t_start: float,
                 budget: stops.TimeBudget | None, open_recorder):
        self.recs, self.axis, self.mesh, self.budget, self.open_recorder = recs, axis, mesh, budget, open_recorder
        self.state = devices.replicate(axis.stack([s.state for s in starts]), mesh)
        self.every = list(recs)  # each recorder the program has had, slots refilled included
        self.t0 = [t_start] * len(recs)  # when each slot's occupant started
        # the patience counters where each run restarts (carried in the checkpoint records)
        self.watch = [_watch(rec, s) for rec, s in zip(recs, starts)]
        self.saved_step = [int(s.state["step"]) if s.record else None for s in starts]
        self.save_s = 0.0  # this epoch's saves, all replicas: the final save writes them all

    def save(self, r: int, host, step: int, epoch: int, force: bool):
        """Save slot r's state (`host`: the host copy, made here if None); return the copy."""
        t, rec = stops.now(), self.recs[r]
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
            self.save_s += stops.now() - t
        return host

    def save_unsaved(self) -> None:
        """Before a pause: save each active slot's state after its last epoch, unless saved."""
        host = None
        for r, rec in enumerate(self.recs):
            if rec.active and rec.train_record is not None and self.saved_step[r] != rec.train_record["step"]:
                host = self.save(r, host, rec.train_record["step"], rec.train_record["epoch"], force=True)

    def log_point(self, program: _Program, m: dict, steps_per_epoch: int, dt: float, examples_per_s: float,
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

    def refill(self, new: dict[int, tuple[runs.Run, _Start]]) -> None:
        """New occupants in place: the same shapes, so the compiled program is reused."""
        if not new:
            return
        full = devices.to_host(self.state)
        for r, (run, start) in sorted(new.items()):
            assert not self.recs[r].active, f"slot {r} is still in use"
            self.recs[r].finish_saves()
            self.recs[r].close()
            full = self.axis.put(full, r, start.state)
            self.recs[r], self.t0[r] = self.open_recorder(run, start), time.perf_counter()
            self.watch[r] = _watch(self.recs[r], start)
            self.saved_step[r] = int(start.state["step"]) if start.record else None
            self.every.append(self.recs[r])
        self.state = devices.replicate(full, self.mesh)


def _interrupt(recs: list[Recorder], signum: int, epoch: int, step: int):
    """A signal arrived during the epoch: the saves it forced complete, then Interrupted."""
    for rec in recs:
        rec.finish_saves()  # the message below names a checkpoint that is complete
    name = signal.Signals(signum).name
    where = recs[0].run.checkpoint_dir if len(recs) == 1 else f"each of the {len(recs)} run folders"
    raise Interrupted(f"{name}: stopped after epoch {epoch}, checkpoint saved at step {step} in {where}",
                      128 + signum)


def _watch(rec: Recorder, start: _Start) -> stops.EarlyStop:
    """A run's early-stopping counter where it (re)starts: from its checkpoint's record."""
    return stops.EarlyStop.resume(rec.cfg.train, start.record,
                                  metrics_lib.read(rec.path, "validation") if start.record else ())
