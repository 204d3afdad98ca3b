"""`vae train`: the loop around the compiled epoch (vaecli.epoch).

`vaecli.launch.train_command` is the one entry the CLI calls. Every run — a single one, the replicas of
a --seeds/--sweep program, a resumed one — goes through `session`, which compiles the
epoch once and drives it: the host reads metrics once per epoch (the log point), never
inside it; there it logs, validates, draws pictures and saves checkpoints through each
run folder's recorder (vaecli.recorder), which keeps summary.json true on every exit path.

Host-side code always sees a replica axis: one run is the case of one replica.
"""
from __future__ import annotations

import contextlib
import signal
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import jax
import numpy as np

import vaecli
from vaecli import bounds, data, devices, objectives, recorder as recorder_lib, runs, sample, state as state_lib, stops, trackers
from vaecli import metrics as metrics_lib
from vaecli.checkpoints import Checkpoints
from vaecli.config import Config
from vaecli.epoch import make_epoch_fn
from vaecli.errors import AlreadyDone, Interrupted, Paused, RunError, StorageError, UsageError
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
    # Data first: a dataset that cannot be loaded leaves no run folder behind.
    train_split, val_split = _load_data(cfgs[0])
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
    run = recorder_lib.start(path, cfg, {**meta, **extra_meta})
    fn, tx, state = state_lib.init_state(cfg, train_split.image_shape, train=train_split)
    return run, (fn, tx), _Start(state)


def resume_run(run_path: str | Path, overrides: list[str], argv: list[str], progress: str | None = None,
               clock_start: float | None = None) -> Path:
    """Continue a run from its latest complete checkpoint (or from step 0 if it saved none)
    with its own config.yaml; `overrides` may change only `config.RESUMABLE` keys.

    Everything is checked (lock, config, data, checkpoint) before anything in the run
    folder is touched."""
    return resume_replicas([run_path], overrides, argv, progress=progress, clock_start=clock_start)[0]


def resume_replicas(run_paths: list[str | Path], overrides: list[str], argv: list[str],
                    progress: str | None = None, clock_start: float | None = None) -> list[Path]:
    """Continue the replicas of one program (as `train_replicas` wrote them) as one program
    again, so that they end with the bits an uninterrupted program gives. Runs that have
    nothing left to train (completed, or stopped early) are left as they are; the others must
    restart from the same epoch. One run: `resume_run`."""
    from vaecli import config as config_lib

    t_start = time.perf_counter()
    clock_start = stops.now() if clock_start is None else clock_start
    opened = [runs.open_run(p) for p in run_paths]
    if len(opened) > 1 and all("replica" in r.meta for r in opened):
        opened.sort(key=lambda r: r.meta["replica"]["index"])  # the program's own order: its bits
    cfgs = [config_lib.apply_resume_overrides(run.config, overrides) for run in opened]
    for cfg in cfgs:
        trackers.check(cfg)  # a tracker's missing extra or unreachable URI: exit 2, before anything is touched
    with contextlib.ExitStack() as locks:
        for run in opened:
            locks.enter_context(recorder_lib.lock(run.path))
        data_splits = _load_data(cfgs[0])
        todo, done = [], []
        for run, cfg in zip(opened, cfgs):
            try:
                todo.append((run, cfg, *_restore(run, cfg, data_splits[0])))
            except AlreadyDone as e:
                done.append(str(e))
        if not todo:
            raise AlreadyDone(done[0] if len(done) == 1 else f"all {len(done)} runs have nothing left to train")
        if len({t[4] for t in todo}) > 1:
            raise RunError("the runs to resume together restart from different epochs ("
                           + ", ".join(f"{t[0].path.name}: {t[4]}" for t in todo) + "); resume them one by one")
        run_list, starts = [], []
        for run, cfg, model, state, epoch, record, old_summary in todo:
            run, start = _reopen(run, cfg, state, epoch, record, old_summary, overrides, argv)
            run_list.append(run), starts.append(start)
        session(run_list, model, *data_splits, starts, t_start, progress, clock_start=clock_start)
        return [run.path for run in run_list]


def restart(run: runs.Run, cfg: Config, overrides: list[str], argv: list[str], train_split):
    """A run folder's state at its latest complete checkpoint (step 0 if none), its resume
    recorded: (model, run, _Start). The caller holds the run's lock and loaded the data."""
    model, state, epoch, record, old_summary = _restore(run, cfg, train_split)
    run, start = _reopen(run, cfg, state, epoch, record, old_summary, overrides, argv)
    return model, run, start


def _restore(run: runs.Run, cfg: Config, train_split):
    """(model, state, epoch, record, old summary) at the run's latest complete checkpoint;
    AlreadyDone when it has nothing left to train. Reads only."""
    old_summary = runs.read_json(run.path / "summary.json") or {}
    if list(train_split.image_shape) != list(run.image_shape) or len(train_split) != run.meta["data"].get("num_train"):
        raise RunError(f"the training data of {cfg.data.dataset} is not what {run.path} was trained on "
                       f"({len(train_split)} images of {train_split.image_shape}, the run saw "
                       f"{run.meta['data'].get('num_train')} of {tuple(run.image_shape)}); point data.* at the same data")
    # train= gives the staged lr schedule its epoch length (and an init the restore replaces)
    fn, tx, state = state_lib.init_state(cfg, train_split.image_shape, train=train_split)
    epoch, record = 0, None
    with Checkpoints(run.checkpoint_dir, read_only=True) as ckpts:
        steps = ckpts.steps()
        if steps:
            # state["hyper"] is not checkpointed (run format 2 has none): config.yaml gives it
            restored, record = ckpts.restore(steps[-1], state_lib.checkpointed(state))
            state = state_lib.with_hyper(restored, cfg)
            epoch = int(record["epoch"])
    if epoch > cfg.train.epochs:
        raise UsageError(f"{run.path} has already trained {epoch} epochs; --set train.epochs=N needs N >= {epoch}")
    if epoch == cfg.train.epochs and old_summary.get("status") == "completed":
        raise AlreadyDone(f"{run.path} already completed {epoch} epochs; extend it with --resume "
                          f"{run.path} --set train.epochs=N")
    early = stops.EarlyStop.resume(cfg.train, record, metrics_lib.read(run.path, "validation") if record else ())
    if early.stop and old_summary.get("status") == "completed":
        raise AlreadyDone(f"{run.path} stopped early after epoch {epoch} ({early.since} validations without "
                          f"improvement; the best was at epoch {early.top_epoch}); to go on, raise it with "
                          f"--resume {run.path} --set train.patience=N")
    return (fn, tx), state, epoch, record, old_summary


def _reopen(run: runs.Run, cfg: Config, state, epoch: int, record, old_summary: dict, overrides, argv):
    """The resume recorded in the run folder (vaecli.recorder.reopen): (run, _Start)."""
    step = int(state["step"])
    run = recorder_lib.reopen(run, cfg, step, {
        "from_step": step, "from_epoch": epoch, "overrides": list(overrides), "argv": list(argv),
        "time": runs.utc_now().isoformat(timespec="seconds"), "vaecli_version": vaecli.__version__})
    before = {"resumed_from_step": step, "wall_s_before": float(old_summary.get("wall_s") or 0.0)}
    if old_summary.get("time_estimates"):
        before["time_estimates"] = old_summary["time_estimates"]
    return run, _Start(state, epoch, record, before)


resume = resume_run  # the name the tests and scripts know


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
    epoch_fn = make_epoch_fn(fn, tx, cfg, len(train_split), train_split.scale, replicas=axis.n,
                             batch_sharding=devices.batch_sharding(mesh))
    epoch_fn = epoch_fn.lower(state, images).compile()
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
    cfg = recs[0].cfg  # the replicas differ only in values their states carry
    axis = _ReplicaAxis(len(recs))
    mesh = devices.make_mesh(cfg.train.devices)
    devices.check_batch(cfg.train.batch_size, mesh)
    state = devices.replicate(axis.stack([s.state for s in starts]), mesh)
    images = devices.replicate(train_split.flat, mesh)  # the whole training split, on every device, uint8
    budget = None
    if cfg.train.time_limit is not None:
        budget = stops.TimeBudget(stops.parse_duration(cfg.train.time_limit), clock_start,
                                  estimates=recs[0].summary.get("time_estimates"))
    # out of time already: pause at once, without compiling what could not run
    out_of_time = budget is not None and stops.now() >= budget.deadline
    program = None if out_of_time else _compile(model, cfg, train_split, val_split, state, images, axis, mesh)
    steps_per_epoch = len(train_split) // cfg.train.batch_size
    examples_per_epoch = steps_per_epoch * cfg.train.batch_size
    every = list(recs)  # each recorder the program has had, slots refilled included
    t0 = [t_start] * len(recs)  # when each slot's occupant started
    # the patience counters where each run restarts (carried in the checkpoint records)
    watch = [_watch(rec, s) for rec, s in zip(recs, starts)]
    saved_step = [int(s.state["step"]) if s.record else None for s in starts]
    save_s = [0.0]  # this epoch's saves, all replicas: the final save writes them all

    def save(r: int, host, step: int, epoch: int, force: bool):
        """Save slot r's state (`host`: the host copy, made here if None); return the copy."""
        t, rec = stops.now(), recs[r]
        host = devices.to_host(state) if host is None else host
        # ranked for keep_best only when validated at this very step (no extra pass)
        fresh_val = rec.val_record is not None and rec.val_record["step"] == step
        rec.save(step, state_lib.checkpointed(axis.take(host, r)),
                 {"epoch": epoch, "train": rec.train_record, "validation": rec.val_record,
                  "early_stopping": watch[r].record()},
                 validation_elbo=rec.val_record["elbo"] if fresh_val else None, force=force)
        saved_step[r] = step
        if budget is not None:  # measured whole (host copy, write, seal): the final save must fit too
            rec.finish_saves()
            save_s[0] += stops.now() - t
        return host

    epoch_times, epoch, paused = [], starts[0].epoch, False  # epoch: the program's count (a slot's own is its step's)
    try:
        while any(rec.active for rec in recs):
            if budget is not None and not budget.fits_next():
                paused, host = True, None
                for r, rec in enumerate(recs):  # the state after the last epoch, unless saved already
                    if rec.active and rec.train_record is not None and saved_step[r] != rec.train_record["step"]:
                        host = save(r, host, rec.train_record["step"], rec.train_record["epoch"], force=True)
                break
            epoch += 1
            t, t_budget, save_s[0] = time.perf_counter(), stops.now(), 0.0
            state, m = program.epoch(state, images)
            m = axis.host(m)  # the log point: the only host sync of the epoch
            dt = time.perf_counter() - t
            epoch_times.append(dt)
            stopping = stop.signum is not None
            own = [int(s) // steps_per_epoch for s in m["step"]]  # each slot's epoch
            last = [e >= cfg.train.epochs for e in own]
            host, done = None, []
            for r, rec in enumerate(recs):
                if not rec.active:
                    continue
                mr, e = {k: v[r] for k, v in m.items()}, own[r]
                step = int(mr["step"])
                rec.train_record = {"step": step, "epoch": e, "split": "train",
                                    "loss": float(mr["loss"]), "recon": float(mr["recon"]), "kl": float(mr["kl"]),
                                    "lr": float(mr["lr"]), "skipped_steps": int(mr["skipped_steps"]),
                                    "examples_per_s": examples_per_epoch / dt, "epoch_s": dt,
                                    "elapsed_s": time.perf_counter() - t0[r]}
                rec.log(rec.train_record)
                rec.poll_save()
                if mr["bad_step"] >= 0:
                    rec.finish_saves()  # the message names the last complete checkpoint
                    message = _nonfinite_message(rec.cfg, mr, e, rec.ckpts.steps())
                    rec.end("failed", message)
                    if len(recs) > 1:
                        bar.message(f"replica {rec.path.name} failed: {message}")
                    continue
                new_best = early_end = False
                if e % cfg.eval.every_epochs == 0 or last[r]:
                    params = devices.local(axis.take(state["ema" if "ema" in state else "params"], r))
                    rec.val_record = program.validate(rec, params, step, e, t0[r])
                    rec.log(rec.val_record)
                    rec.pictures(program.pictures, rec.cfg.seed, params, step)
                    new_best = watch[r].update(rec.val_record["elbo"], e, step)
                    early_end = watch[r].stop and not last[r]
                # with early stopping every new best is saved: it is the checkpoint the run is for
                saving = e % cfg.checkpoint.every_epochs == 0 or last[r] or stopping or early_end
                if saving or (new_best and cfg.train.patience > 0):
                    host = save(r, host, step, e, force=last[r] or stopping or early_end or new_best)
                rec.update(epochs_done=e, step=step, skipped_updates=int(mr["skipped_total"]),
                           wall_s=rec.summary.get("wall_s_before", 0.0) + time.perf_counter() - t0[r])
                if last[r] or early_end:
                    done.append(r)
            for r in done:  # after every save has started, so that they overlap
                recs[r].finish_saves()
                _complete(recs[r], watch[r], epoch_times, program.compile_s, t0[r], len(recs), bar)
            bar.epoch(epoch, _progress_info(recs, m, examples_per_epoch / dt))
            if budget is not None:
                budget.iteration(stops.now() - t_budget)
                if save_s[0]:
                    budget.saved(save_s[0])
            if not slots.failures_are_results and all(rec.summary["status"] == "failed" for rec in recs):
                raise RunError(recs[0].summary["error"] if len(recs) == 1 else
                               f"all {len(recs)} replicas failed; see each run's summary.json")
            if stopping:
                for rec in recs:
                    rec.finish_saves()  # the message below names a checkpoint that is complete
                name = signal.Signals(stop.signum).name
                where = recs[0].run.checkpoint_dir if len(recs) == 1 else f"each of the {len(recs)} run folders"
                raise Interrupted(f"{name}: stopped after epoch {epoch}, checkpoint saved at step "
                                  f"{int(m['step'][0])} in {where}", 128 + stop.signum)
            new = slots.after_epoch(recs, epoch)
            if new:  # refill slots in place: the same shapes, so the compiled program is reused
                full = devices.to_host(state)
                for r, (run, start) in sorted(new.items()):
                    assert not recs[r].active, f"slot {r} is still in use"
                    recs[r].finish_saves()
                    recs[r].close()
                    full = axis.put(full, r, start.state)
                    recs[r], t0[r] = open_recorder(run, start), time.perf_counter()
                    watch[r], saved_step[r] = _watch(recs[r], start), int(start.state["step"]) if start.record else None
                    every.append(recs[r])
                state = devices.replicate(full, mesh)
    except BaseException:  # every exit path: the saves in flight complete, the summaries name them
        for rec in recs:
            with contextlib.suppress(StorageError):  # the error on its way comes first
                rec.finish_saves()
        raise
    for rec in recs:
        rec.finish_saves()
    if paused:
        _pause(recs, watch, epoch_times, program.compile_s if program else 0.0, t0, budget, starts[0].epoch)
    _finish(every, epoch_times, bar, slots)


def _watch(rec: Recorder, start: _Start) -> stops.EarlyStop:
    """A run's early-stopping counter where it (re)starts: from its checkpoint's record."""
    return stops.EarlyStop.resume(rec.cfg.train, start.record,
                                  metrics_lib.read(rec.path, "validation") if start.record else ())


def _end_fields(rec: Recorder, epochs_done: int, epoch_times: list[float], compile_s: float, t_start: float,
                replicas: int) -> dict:
    steady = epoch_times[1:] if len(epoch_times) > 1 else epoch_times
    return dict(epochs_done=epochs_done, steps=rec.train_record["step"] if rec.train_record else rec.summary["step"],
                final_train=rec.train_record, final_validation=rec.val_record,
                wall_s=rec.summary.get("wall_s_before", 0.0) + time.perf_counter() - t_start, compile_s=compile_s,
                epoch_s_median=statistics.median(steady) if steady else None,
                epoch_s_first=epoch_times[0] if epoch_times else None, replicas_in_program=replicas)


def _complete(rec: Recorder, watch: stops.EarlyStop, epoch_times: list[float], compile_s: float, t_start: float,
              replicas: int, bar: Progress) -> None:
    """A run that reached train.epochs, or whose patience ran out (train.patience)."""
    e = rec.train_record["epoch"]
    early = {"stopped_early": e < rec.cfg.train.epochs} if rec.cfg.train.patience else {}
    rec.end("completed", **_end_fields(rec, e, epoch_times, compile_s, t_start, replicas), **early, **watch.summary())
    if early.get("stopped_early"):
        bar.message(f"{rec.path.name}: stopped early after epoch {e}: {watch.since} validations without "
                    f"an improvement > train.min_delta; best validation ELBO {watch.top_elbo:.2f} at epoch "
                    f"{watch.top_epoch} (checkpoint step {watch.top_step}, --step best)")


def _pause(recs: list[Recorder], watch: list[stops.EarlyStop], epoch_times: list[float], compile_s: float,
           t0: list[float], budget: stops.TimeBudget, starts_epoch: int) -> None:
    """train.time_limit: the active runs end `paused` (checkpoint saved) and Paused is raised."""
    cfg = recs[0].cfg
    paused_after = starts_epoch
    for r, rec in enumerate(recs):
        if rec.active:
            done = rec.train_record["epoch"] if rec.train_record else rec.summary["epochs_done"]
            paused_after = max(paused_after, done)
            rec.end("paused", **_end_fields(rec, done, epoch_times, compile_s, t0[r], len(recs)),
                    paused_after_epoch=done, time_limit=cfg.train.time_limit,
                    time_estimates=budget.estimates(), **watch[r].summary())
    failed = [rec.path.name for rec in recs if rec.summary["status"] == "failed"]
    where = str(recs[0].path) if len(recs) == 1 else f"{len(recs) - len(failed)} run folders"
    step = recs[0].summary.get("last_checkpoint_step")
    if paused_after == starts_epoch and budget.last.get("left_s", 0) <= 0:
        why = (f"train.time_limit={cfg.train.time_limit} had run out before the first epoch of this session "
               f"(start-up, data and compilation took {stops.now() - budget.start:.1f} s); nothing trained")
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


def _finish(recs: list[Recorder], epoch_times: list[float], bar: Progress, slots: Slots) -> None:
    steady = epoch_times[1:] if len(epoch_times) > 1 else epoch_times
    failed = [rec.path.name for rec in recs if rec.summary["status"] == "failed"]
    completed = sum(rec.summary["status"] == "completed" for rec in recs)
    done = f"val ELBO {recs[0].val_record['elbo']:.2f} nats, " if len(recs) == 1 and recs[0].val_record else ""
    if steady:
        done += f"median epoch {statistics.median(steady):.3f} s; "
    bar.message(f"done: {done}" + (f"run folder {recs[0].path}" if len(recs) == 1
                                   else f"{completed} of {len(recs)} replicas completed"))
    if failed and not slots.failures_are_results:
        raise RunError(f"{len(failed)} of {len(recs)} replicas failed (non-finite loss): {', '.join(failed)}; "
                       f"the others completed")


def _progress_info(recs: list[Recorder], m: dict, examples_per_s: float) -> str:
    losses = [float(m["loss"][r]) for r, rec in enumerate(recs) if rec.active]
    rate = f"{examples_per_s * len(recs):,.0f} ex/s"
    if not losses:
        return rate
    if len(recs) == 1:
        info = f"loss {losses[0]:.2f}  {rate}"
        if recs[0].val_record and recs[0].val_record["epoch"] == recs[0].train_record["epoch"]:
            info += f"  val ELBO {recs[0].val_record['elbo']:.2f}"
        if int(m["skipped_steps"][0]):
            info += f"  skipped {int(m['skipped_steps'][0])} non-finite updates ({int(m['skipped_total'][0])} in the run)"
        return info
    return f"loss {min(losses):.2f}..{max(losses):.2f} over {len(losses)} replicas  {rate}"


def _nonfinite_message(cfg: Config, m: dict, epoch: int, saved: list[int]) -> str:
    terms = [t for t, ok in zip(("reconstruction", "KL", "update"), m["bad_finite"]) if not ok]
    where = f"non-finite {' and '.join(terms) or 'loss'} at step {int(m['bad_step'])} (epoch {epoch})"
    last = f"last good checkpoint: step {saved[-1]}" if saved else "no checkpoint was saved before it"
    if cfg.train.skip_nonfinite:
        fix = f"after skipping {cfg.train.skip_nonfinite} (train.skip_nonfinite)"
    else:
        fix = "set train.skip_nonfinite: N to drop up to N bad updates, or lower optim.lr"
    return f"{where}; {last}; {fix}"
