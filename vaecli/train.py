"""`vae train`: the loop around the compiled epoch (vaecli.epoch).

`vaecli.launch.train_command` is the one entry the CLI calls. Every run — a single one, the replicas of
a --seeds/--sweep program, a resumed one — goes through `_session`, which compiles the
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
from vaecli import bounds, data, devices, pictures, recorder as recorder_lib, runs, state as state_lib, stops
from vaecli import metrics as metrics_lib
from vaecli.checkpoints import Checkpoints
from vaecli.config import Config
from vaecli.epoch import _PICTURES, make_epoch_fn, make_pictures_fn
from vaecli.errors import AlreadyDone, Interrupted, Paused, RunError, UsageError
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
            meta = runs.environment_meta(argv)
            meta["data"] = {"dataset": cfg.data.dataset, "image_shape": list(train_split.image_shape),
                            "num_train": len(train_split), "num_validation": len(val_split),
                            "binarize": cfg.data.binarize, "train_scale": train_split.scale}
            if len(cfgs) > 1:
                meta["replica"] = {"index": i, "count": len(cfgs), "program": [p.name for p in paths]}
            locks.enter_context(recorder_lib.lock(path))
            run_list.append(recorder_lib.start(path, cfg, meta))
            fn, tx, state = state_lib.init_state(cfg, train_split.image_shape, train=train_split)
            starts.append(_Start(state))
        _session(run_list, (fn, tx), train_split, val_split, starts, t_start, progress, clock_start)
    return paths


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
    from vaecli import config as config_lib, metrics

    t_start = time.perf_counter()
    clock_start = stops.now() if clock_start is None else clock_start
    opened = [runs.open_run(p) for p in run_paths]
    if len(opened) > 1 and all("replica" in r.meta for r in opened):
        opened.sort(key=lambda r: r.meta["replica"]["index"])  # the program's own order: its bits
    with contextlib.ExitStack() as locks:
        for run in opened:
            locks.enter_context(recorder_lib.lock(run.path))
        todo, done, data_splits, model = [], [], None, None
        for run in opened:
            cfg = config_lib.apply_resume_overrides(run.config, overrides)
            old_summary = runs.read_json(run.path / "summary.json") or {}
            if data_splits is None:
                data_splits = _load_data(cfg)
            train_split, val_split = data_splits
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
                    state, record = ckpts.restore(steps[-1], state)
                    epoch = int(record["epoch"])
            if epoch > cfg.train.epochs:
                raise UsageError(f"{run.path} has already trained {epoch} epochs; --set train.epochs=N needs N >= {epoch}")
            early = stops.EarlyStop.resume(cfg.train, record, metrics.read(run.path, "validation") if record else ())
            if epoch == cfg.train.epochs and old_summary.get("status") == "completed":
                done.append(f"{run.path} already completed {epoch} epochs; extend it with --resume "
                            f"{run.path} --set train.epochs=N")
                continue
            if early.stop and old_summary.get("status") == "completed":
                done.append(f"{run.path} stopped early after epoch {epoch} ({early.since} validations without "
                            f"improvement; the best was at epoch {early.top_epoch}); to go on, raise it with "
                            f"--resume {run.path} --set train.patience=N")
                continue
            todo.append((run, cfg, state, epoch, record, old_summary))
            model = (fn, tx)
        if not todo:
            raise AlreadyDone(done[0] if len(done) == 1 else f"all {len(done)} runs have nothing left to train")
        if len({t[3] for t in todo}) > 1:
            raise RunError("the runs to resume together restart from different epochs ("
                           + ", ".join(f"{t[0].path.name}: {t[3]}" for t in todo) + "); resume them one by one")
        run_list, starts = [], []
        for run, cfg, state, epoch, record, old_summary in todo:
            step = int(state["step"])
            run_list.append(recorder_lib.reopen(run, cfg, step, {
                "from_step": step, "from_epoch": epoch, "overrides": list(overrides), "argv": list(argv),
                "time": runs.utc_now().isoformat(timespec="seconds"), "vaecli_version": vaecli.__version__}))
            before = {"resumed_from_step": step, "wall_s_before": float(old_summary.get("wall_s") or 0.0)}
            if old_summary.get("time_estimates"):
                before["time_estimates"] = old_summary["time_estimates"]
            starts.append(_Start(state, epoch, record, before))
        _session(run_list, model, *data_splits, starts, t_start, progress, clock_start)
        return [run.path for run in run_list]


resume = resume_run  # the name the tests and scripts know


@dataclass
class _Start:
    state: dict
    epoch: int = 0  # epochs already trained
    record: dict | None = None  # the checkpoint's record, when resuming
    summary: dict = field(default_factory=dict)  # summary fields carried over


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

    def host(self, tree) -> dict:
        """Device arrays -> numpy with the replica axis first."""
        out = devices.to_host(tree)
        return jax.tree.map(lambda a: np.asarray(a)[None], out) if self.n == 1 else out


def _session(run_list: list[runs.Run], model, train_split, val_split, starts: list[_Start], t_start: float,
             progress: str | None, clock_start: float | None = None) -> None:
    """Run the epochs of every replica from its start to its `train.epochs`, keeping each
    summary.json's status true on every exit path. `clock_start`: the `stops.now()` reading
    from which `train.time_limit` counts."""
    cfg = run_list[0].config
    first = starts[0]
    bar = Progress(cfg.train.epochs, (progress or cfg.log.progress) if devices.is_primary() else "none",
                   first_epoch=first.epoch)
    for run, start in zip(run_list, starts):
        bar.message(f"run folder: {run.path}" + (f" (resuming after epoch {start.epoch}, step {int(start.state['step'])})"
                                                 if start.record or start.epoch else ""))
    recs = []
    try:
        with contextlib.ExitStack() as stack, StopOnSignal() as stop:
            recs = [recorder_lib.recorder(run, stack, state_step=int(start.state["step"]), epochs_done=start.epoch,
                                          restored=start.record, before=start.summary)
                    for run, start in zip(run_list, starts)]
            _loop(recs, model, train_split, val_split, starts, bar, t_start, stop, clock_start)
    except BaseException as e:
        status = "interrupted" if isinstance(e, (KeyboardInterrupt, Interrupted)) else "failed"
        for rec in recs:
            if rec.active:
                rec.end(status, str(e) or type(e).__name__)
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


def _compile(model, cfg: Config, train_split, val_split, state, images, axis: _ReplicaAxis, mesh,
             t_start: float) -> _Program:
    fn, tx = model
    t0 = time.perf_counter()
    epoch_fn = make_epoch_fn(fn, tx, cfg, len(train_split), train_split.scale, replicas=axis.n,
                             batch_sharding=devices.batch_sharding(mesh))
    epoch_fn = epoch_fn.lower(state, images).compile()
    val_estimate, _ = bounds.compile_estimator(fn, devices.local(axis.take(state["params"], 0)), val_split.images,
                                               val_split.scale, 1, cfg.eval.batch_size,
                                               deterministic=cfg.objective.name == "ae")
    compile_s = time.perf_counter() - t0
    num_pixels = int(np.prod(val_split.image_shape))

    def validate(rec: Recorder, params, step, epoch):
        s = bounds.summarize(val_estimate(params, rec.cfg.seed), num_pixels)
        return {"step": step, "epoch": epoch, "split": "validation", "loss": -s["elbo"], "recon": s["recon"],
                "kl": s["kl"], "elbo": s["elbo"], "elapsed_s": time.perf_counter() - t_start}

    n_pic = min(cfg.eval.grid, len(val_split))
    pic_host = val_split.flat[:n_pic].astype(np.float32) / val_split.scale  # kept for the grids
    pic_x = jax.numpy.asarray(pic_host)
    as_images = lambda a: np.asarray(a).reshape(-1, *val_split.image_shape)
    pictures_fn = make_pictures_fn(fn, n_pic)

    def draw(seed, params, step, run_dir: Path):
        prior, recon = jax.device_get(pictures_fn(params, jax.random.fold_in(jax.random.key(seed), _PICTURES), pic_x))
        title = f"{run_dir.name} step {step}"
        pictures.save_grid(as_images(prior), run_dir / "samples" / f"prior-step{step}.png", f"{title} prior samples")
        half = max(1, n_pic // 2)
        both = as_images(np.concatenate([pic_host[:half], recon[:half]]))
        pictures.save_grid(both, run_dir / "samples" / f"recon-step{step}.png",
                           f"{title} data (top) / reconstructions (bottom)")

    return _Program(epoch_fn, validate, draw, compile_s)


def _loop(recs: list[Recorder], model, train_split, val_split, starts: list[_Start], bar: Progress,
          t_start: float, stop: StopOnSignal, clock_start: float) -> None:
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
    program = None if out_of_time else _compile(model, cfg, train_split, val_split, state, images, axis, mesh, t_start)
    examples_per_epoch = len(train_split) // cfg.train.batch_size * cfg.train.batch_size
    # the patience counters, where each run restarts (carried in the checkpoint records)
    watch = [stops.EarlyStop.resume(cfg.train, s.record, metrics_lib.read(rec.path, "validation") if s.record else ())
             for rec, s in zip(recs, starts)]
    saved_step = [int(s.state["step"]) if s.record else None for s in starts]

    save_s = [0.0]  # this epoch's saves, all replicas: the final save writes them all

    def save(r: int, rec: Recorder, host, step: int, epoch: int, force: bool):
        """Save replica r's state (`host`: the host copy, made here if None); return the copy."""
        t = stops.now()
        host = devices.to_host(state) if host is None else host
        # ranked for keep_best only when validated at this very step (no extra pass)
        fresh_val = rec.val_record is not None and rec.val_record["step"] == step
        rec.save(step, axis.take(host, r), {"epoch": epoch, "train": rec.train_record, "validation": rec.val_record,
                                            "early_stopping": watch[r].record()},
                 validation_elbo=rec.val_record["elbo"] if fresh_val else None, force=force)
        saved_step[r] = step
        if budget is not None:  # measured whole (host copy, write, seal): the final save must fit too
            rec.finish_saves()
            save_s[0] += stops.now() - t
        return host

    epoch_times, paused_after, ends = [], None, {}
    try:
        for epoch in range(starts[0].epoch + 1, cfg.train.epochs + 1):
            if budget is not None and not budget.fits_next():
                paused_after, host = epoch - 1, None
                for r, rec in enumerate(recs):  # the state after the last epoch, unless saved already
                    if rec.active and rec.train_record is not None and saved_step[r] != rec.train_record["step"]:
                        host = save(r, rec, host, rec.train_record["step"], epoch - 1, force=True)
                break
            t, t_budget, save_s[0] = time.perf_counter(), stops.now(), 0.0
            state, m = program.epoch(state, images)
            m = axis.host(m)  # the log point: the only host sync of the epoch
            dt = time.perf_counter() - t
            epoch_times.append(dt)
            last_epoch, stopping = epoch == cfg.train.epochs, stop.signum is not None
            evaluating = epoch % cfg.eval.every_epochs == 0 or last_epoch
            saving = epoch % cfg.checkpoint.every_epochs == 0 or last_epoch or stopping
            host = None
            for r, rec in enumerate(recs):
                if not rec.active:
                    continue
                mr = {k: v[r] for k, v in m.items()}
                step = int(mr["step"])
                rec.train_record = {"step": step, "epoch": epoch, "split": "train",
                                    "loss": float(mr["loss"]), "recon": float(mr["recon"]), "kl": float(mr["kl"]),
                                    "lr": float(mr["lr"]), "skipped_steps": int(mr["skipped_steps"]),
                                    "examples_per_s": examples_per_epoch / dt, "epoch_s": dt,
                                    "elapsed_s": time.perf_counter() - t_start}
                rec.log(rec.train_record)
                rec.poll_save()
                if mr["bad_step"] >= 0:
                    rec.finish_saves()  # the message names the last complete checkpoint
                    message = _nonfinite_message(rec.cfg, mr, epoch, rec.ckpts.steps())
                    rec.end("failed", message)
                    if len(recs) > 1:
                        bar.message(f"replica {rec.path.name} failed: {message}")
                    continue
                new_best = early_end = False
                if evaluating:
                    params = devices.local(axis.take(state["params"], r))
                    rec.val_record = program.validate(rec, params, step, epoch)
                    rec.log(rec.val_record)
                    rec.pictures(program.pictures, rec.cfg.seed, params, step)
                    new_best = watch[r].update(rec.val_record["elbo"], epoch, step)
                    early_end = watch[r].stop and not last_epoch
                # with early stopping every new best is saved: it is the checkpoint the run is for
                if saving or early_end or (new_best and cfg.train.patience > 0):
                    host = save(r, rec, host, step, epoch, force=last_epoch or stopping or early_end or new_best)
                rec.update(epochs_done=epoch, step=step, skipped_updates=int(mr["skipped_total"]),
                           wall_s=rec.summary.get("wall_s_before", 0.0) + time.perf_counter() - t_start)
                if early_end:
                    rec.finish_saves()
                    ends[r] = epoch
                    rec.end("completed", **_end_fields(rec, epoch, epoch_times, program.compile_s, t_start, len(recs)),
                            stopped_early=True, **watch[r].summary())
                    w = watch[r]
                    bar.message(f"{rec.path.name}: stopped early after epoch {epoch}: {w.since} validations without "
                                f"an improvement > train.min_delta; best validation ELBO {w.top_elbo:.2f} at epoch "
                                f"{w.top_epoch} (checkpoint step {w.top_step}, --step best)")
            bar.epoch(epoch, _progress_info(recs, m, examples_per_epoch / dt))
            if budget is not None:
                budget.iteration(stops.now() - t_budget)
                if save_s[0]:
                    budget.saved(save_s[0])
            if not any(rec.active for rec in recs):
                if ends:
                    break  # every replica has ended, some of them early
                raise RunError(recs[0].summary["error"] if len(recs) == 1 else
                               f"all {len(recs)} replicas failed; see each run's summary.json")
            if stopping:
                name = signal.Signals(stop.signum).name
                where = recs[0].run.checkpoint_dir if len(recs) == 1 else f"each of the {len(recs)} run folders"
                raise Interrupted(f"{name}: stopped after epoch {epoch}, checkpoint saved at step "
                                  f"{int(m['step'][0])} in {where}", 128 + stop.signum)
    finally:  # every exit path: the saves in flight complete, the summaries name them
        for rec in recs:
            rec.finish_saves()
    _finish(recs, epoch_times, program.compile_s if program else 0.0, t_start, bar, watch, paused_after, budget,
            starts[0].epoch)


def _end_fields(rec: Recorder, epochs_done: int, epoch_times: list[float], compile_s: float, t_start: float,
                replicas: int) -> dict:
    steady = epoch_times[1:] if len(epoch_times) > 1 else epoch_times
    return dict(epochs_done=epochs_done, steps=rec.train_record["step"] if rec.train_record else rec.summary["step"],
                final_train=rec.train_record, final_validation=rec.val_record,
                wall_s=rec.summary.get("wall_s_before", 0.0) + time.perf_counter() - t_start, compile_s=compile_s,
                epoch_s_median=statistics.median(steady) if steady else None,
                epoch_s_first=epoch_times[0] if epoch_times else None, replicas_in_program=replicas)


def _finish(recs: list[Recorder], epoch_times: list[float], compile_s: float, t_start: float, bar: Progress,
            watch: list[stops.EarlyStop], paused_after: int | None, budget: stops.TimeBudget | None,
            starts_epoch: int) -> None:
    cfg = recs[0].cfg
    steady = epoch_times[1:] if len(epoch_times) > 1 else epoch_times
    for r, rec in enumerate(recs):
        if not rec.active:
            continue
        early = {"stopped_early": False} if cfg.train.patience else {}
        if paused_after is None:
            rec.end("completed", **_end_fields(rec, cfg.train.epochs, epoch_times, compile_s, t_start, len(recs)),
                    **early, **watch[r].summary())
        else:
            rec.end("paused", **_end_fields(rec, paused_after, epoch_times, compile_s, t_start, len(recs)),
                    paused_after_epoch=paused_after, time_limit=cfg.train.time_limit,
                    time_estimates=budget.estimates(), **watch[r].summary())
    failed = [rec.path.name for rec in recs if rec.summary["status"] == "failed"]
    if paused_after is not None:
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
    done = f"val ELBO {recs[0].val_record['elbo']:.2f} nats, " if len(recs) == 1 and recs[0].val_record else ""
    if steady:
        done += f"median epoch {statistics.median(steady):.3f} s; "
    bar.message(f"done: {done}" + (f"run folder {recs[0].path}" if len(recs) == 1
                                   else f"{len(recs) - len(failed)} of {len(recs)} replicas completed"))
    if failed:
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
