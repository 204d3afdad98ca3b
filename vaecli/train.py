"""`vae train`: the loop around the compiled epoch (vaecli.epoch).

The host reads metrics once per epoch (the log point), never inside the epoch; there it
logs, validates, draws pictures, saves checkpoints and keeps summary.json true.
"""
from __future__ import annotations

import contextlib
import signal
import statistics
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

import vaecli
from vaecli import bounds, data, devices, pictures, runs, state as state_lib
from vaecli.epoch import _PICTURES, make_epoch_fn, make_pictures_fn  # noqa: F401 (re-exported)
from vaecli.checkpoints import Checkpoints
from vaecli.config import Config
from vaecli.errors import Interrupted, RunError, UsageError
from vaecli.metrics import MetricsLog
from vaecli.progress import Progress

def train(cfg: Config, runs_dir: str | Path, name: str, argv: list[str], progress: str = "auto") -> Path:
    """Train a model as `cfg` says in a new run folder; return the folder."""
    return train_replicas([cfg], runs_dir, [name], argv)[0]


def train_replicas(cfgs: list[Config], runs_dir: str | Path, names: list[str], argv: list[str]) -> list[Path]:
    """Train several configs that differ only in `sweep.REPLICA_KEYS` (seed, learning rate,
    weight decay) as ONE compiled program with a leading replica axis; each replica writes an
    ordinary run folder. One config is an ordinary run (no replica axis)."""
    t_start = time.perf_counter()
    primary = devices.is_primary()  # in a multi-process job only process 0 writes files
    if primary:
        for name in names:
            runs.check_target(runs_dir, name)  # a bad --name or --runs-dir is reported before any data work
    # Data first: a dataset that cannot be loaded leaves no run folder behind.
    train_split, val_split = _load_data(cfgs[0])
    paths = devices.share_paths([runs.create(runs_dir, name) for name in names] if primary else None)
    with contextlib.ExitStack() as locks:
        starts, run_list = [], []
        for i, (cfg, path) in enumerate(zip(cfgs, paths)):
            meta = runs.environment_meta(argv)
            meta["data"] = {"dataset": cfg.data.dataset, "image_shape": list(train_split.image_shape),
                            "num_train": len(train_split), "num_validation": len(val_split),
                            "binarize": cfg.data.binarize, "train_scale": train_split.scale}
            if len(cfgs) > 1:
                meta["replica"] = {"index": i, "count": len(cfgs), "program": [p.name for p in paths]}
            if primary:
                locks.enter_context(runs.Lock(path))
                run_list.append(runs.write_start(path, cfg, meta))
            else:
                run_list.append(runs.Run(path, cfg, meta))
            fn, tx, state = state_lib.init_state(cfg, train_split.image_shape, train=train_split)
            starts.append(_Start(fn, tx, state, epoch=0, record=None, summary={}))
        _session(run_list, train_split, val_split, starts, t_start)
    return paths


def resume(run_path: str | Path, overrides: list[str], argv: list[str]) -> Path:
    """Continue a run from its latest complete checkpoint (or from step 0 if it saved none)
    with its own config.yaml; `overrides` may change only `config.RESUMABLE` keys.

    Everything is checked (lock, config, data, checkpoint) before anything in the run
    folder is touched."""
    from vaecli import config as config_lib

    t_start = time.perf_counter()
    run = runs.open_run(run_path)
    cfg = config_lib.apply_resume_overrides(run.config, overrides)
    primary = devices.is_primary()
    with runs.Lock(run.path) if primary else contextlib.nullcontext():
        old_summary = runs.read_json(run.path / "summary.json") or {}
        train_split, val_split = _load_data(cfg)
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
        if epoch == cfg.train.epochs and old_summary.get("status") == "completed":
            raise AlreadyDone(f"{run.path} already completed {epoch} epochs; extend it with --resume "
                              f"{run.path} --set train.epochs=N")
        # From here on the run folder changes: metrics after the checkpoint are dropped (they
        # will be recomputed, bit for bit), config.yaml takes the allowed overrides.
        step = int(state["step"])
        meta = dict(run.meta)
        meta.setdefault("resumes", []).append({
            "from_step": step, "from_epoch": epoch, "overrides": list(overrides), "argv": list(argv),
            "time": runs.utc_now().isoformat(timespec="seconds"), "vaecli_version": vaecli.__version__})
        if primary:
            runs.truncate_metrics(run.path, step)
            if cfg != run.config:
                runs.write_text(run.path / "config.yaml", config_lib.dump_yaml(cfg))
            runs.write_json(run.path / "meta.json", meta)
        run = runs.Run(run.path, cfg, meta)
        before = {"resumed_from_step": step, "wall_s_before": float(old_summary.get("wall_s") or 0.0)}
        start = _Start(fn, tx, state, epoch=epoch, record=record, summary=before)
        _session([run], train_split, val_split, [start], t_start)
        return run.path


class AlreadyDone(Exception):
    """`--resume` of a run that has nothing left to train (not an error: exit 0)."""


@dataclass
class _Start:
    fn: object
    tx: optax.GradientTransformation
    state: dict
    epoch: int  # epochs already trained
    record: dict | None  # the checkpoint's record, when resuming
    summary: dict


def _load_data(cfg: Config):
    train_split = data.load_split(cfg.data, "train")
    val_split = data.load_split(cfg.data, "validation")
    if len(train_split) < cfg.train.batch_size:
        raise RunError(f"train.batch_size={cfg.train.batch_size} is larger than the training split "
                       f"({len(train_split)} images); lower it")
    return train_split, val_split


class _NoLog:
    """What processes other than 0 log: nothing."""

    def write(self, record: dict) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


class _Slot:
    """One run folder of the program: its config, summary, metrics log and checkpoints."""

    def __init__(self, run: runs.Run, start: _Start, stack: contextlib.ExitStack):
        self.run, self.cfg, self.path = run, run.config, run.path
        self.primary = devices.is_primary()
        step = int(start.state["step"])
        self.summary = {"status": "running", "run": str(run.path), "epochs": self.cfg.train.epochs,
                        "epochs_done": start.epoch, "step": step,
                        "last_checkpoint_step": step if start.record else None, **start.summary}
        record = start.record or {}
        self.train_record, self.val_record = record.get("train"), record.get("validation")
        self.pending = None  # step of the save in flight
        self.active = True  # False once failed: the others go on
        self.write_summary()
        self.mlog = stack.enter_context(MetricsLog(
            run.path, tensorboard=self.cfg.log.tensorboard, purge_after=step if start.epoch else None)
            if self.primary else _NoLog())
        self.ckpts = stack.enter_context(Checkpoints(run.checkpoint_dir, keep=self.cfg.checkpoint.keep,
                                                     keep_best=self.cfg.checkpoint.keep_best))

    def write_summary(self) -> None:
        if self.primary:
            runs.write_json(self.path / "summary.json", self.summary)

    def saved(self) -> None:
        """The save in flight is complete: the summary names it, its file checksums are sealed."""
        if self.primary:
            self.ckpts.seal(self.pending)
        self.summary["last_checkpoint_step"], self.pending = self.pending, None

    def finish_saves(self) -> None:
        self.ckpts.wait()
        if self.pending is not None:
            self.saved()

    def end(self, status: str, error: str | None = None) -> None:
        self.summary["status"] = status
        if error is not None:
            self.summary["error"] = error
        self.write_summary()
        self.active = False


def _session(run_list: list[runs.Run], train_split, val_split, starts: list[_Start], t_start: float) -> None:
    """Run the epochs of every replica from its start to its `train.epochs`, keeping each
    summary.json's status true on every exit path."""
    cfg = run_list[0].config
    first = starts[0]
    bar = Progress(cfg.train.epochs, cfg.log.progress if devices.is_primary() else "none", first_epoch=first.epoch)
    for run, start in zip(run_list, starts):
        bar.message(f"run folder: {run.path}" + (f" (resuming after epoch {start.epoch}, step {int(start.state['step'])})"
                                                 if start.record or start.epoch else ""))
    slots = []
    try:
        with contextlib.ExitStack() as stack, _StopOnSignal() as stop:
            slots = [_Slot(run, start, stack) for run, start in zip(run_list, starts)]
            _loop(slots, train_split, val_split, starts, bar, t_start, stop)
    except BaseException as e:
        status = "interrupted" if isinstance(e, (KeyboardInterrupt, Interrupted)) else "failed"
        for slot in slots:
            if slot.active:
                slot.end(status, str(e) or type(e).__name__)
        raise
    finally:
        bar.close()


class _StopOnSignal:
    """SIGINT/SIGTERM ask the loop to stop after the epoch in flight (which then saves a
    checkpoint); a second signal interrupts at once. Only the main thread can install it."""

    def __init__(self):
        self.signum = None
        self._old = {}

    def _handle(self, signum, frame):
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _loop(slots: list[_Slot], train_split, val_split, starts: list[_Start], bar: Progress, t_start: float,
          stop: _StopOnSignal) -> None:
    cfg = slots[0].cfg  # the replicas differ only in values their states carry
    n_rep = len(slots)
    fn, tx = starts[0].fn, starts[0].tx
    mesh = devices.make_mesh(cfg.train.devices)
    devices.check_batch(cfg.train.batch_size, mesh)
    state = starts[0].state if n_rep == 1 else jax.tree.map(lambda *a: np.stack(a), *[s.state for s in starts])
    state = devices.replicate(state, mesh)
    replica = (lambda tree, r: tree) if n_rep == 1 else (lambda tree, r: jax.tree.map(lambda a: a[r], tree))
    # the whole training split, on every device, uint8
    images = devices.replicate(train_split.flat, mesh)
    steps_per_epoch = len(train_split) // cfg.train.batch_size
    examples_per_epoch = steps_per_epoch * cfg.train.batch_size

    t0 = time.perf_counter()
    epoch_fn = make_epoch_fn(fn, tx, cfg, len(train_split), train_split.scale, replicas=n_rep,
                             batch_sharding=devices.batch_sharding(mesh))
    epoch_fn = epoch_fn.lower(state, images).compile()
    val_estimate, _ = bounds.compile_estimator(fn, devices.local(replica(state["params"], 0)), val_split.images,
                                               val_split.scale, 1, cfg.eval.batch_size,
                                               deterministic=cfg.objective.name == "ae")
    compile_s = time.perf_counter() - t0

    n_pic = min(cfg.eval.grid, len(val_split))
    pic_host = val_split.flat[:n_pic].astype(np.float32) / val_split.scale  # kept for the grids
    pic_x = jnp.asarray(pic_host)
    as_images = lambda a: np.asarray(a).reshape(-1, *val_split.image_shape)
    pictures_fn = make_pictures_fn(fn, n_pic)

    def validate(slot, params, step, epoch):
        s = bounds.summarize(val_estimate(params, slot.cfg.seed), int(np.prod(val_split.image_shape)))
        return {"step": step, "epoch": epoch, "split": "validation", "loss": -s["elbo"], "recon": s["recon"],
                "kl": s["kl"], "elbo": s["elbo"], "elapsed_s": time.perf_counter() - t_start}

    def draw(slot, params, step):
        pic_key = jax.random.fold_in(jax.random.key(slot.cfg.seed), _PICTURES)
        prior, recon = jax.device_get(pictures_fn(params, pic_key, pic_x))
        title = f"{slot.path.name} step {step}"
        pictures.save_grid(as_images(prior), slot.path / "samples" / f"prior-step{step}.png", f"{title} prior samples")
        half = max(1, n_pic // 2)
        both = as_images(np.concatenate([pic_host[:half], recon[:half]]))
        pictures.save_grid(both, slot.path / "samples" / f"recon-step{step}.png",
                           f"{title} data (top) / reconstructions (bottom)")

    epoch_times = []
    try:
        for epoch in range(starts[0].epoch + 1, cfg.train.epochs + 1):
            t = time.perf_counter()
            state, m = epoch_fn(state, images)
            m = devices.to_host(m)  # the log point: the only host sync of the epoch
            dt = time.perf_counter() - t
            epoch_times.append(dt)
            if n_rep == 1:
                m = {k: np.asarray(v)[None] for k, v in m.items()}
            last_epoch = epoch == cfg.train.epochs
            stopping = stop.signum is not None
            evaluating = epoch % cfg.eval.every_epochs == 0 or last_epoch
            saving = epoch % cfg.checkpoint.every_epochs == 0 or last_epoch or stopping
            host = devices.to_host(state) if saving else None
            for r, slot in enumerate(slots):
                if not slot.active:
                    continue
                mr = {k: v[r] for k, v in m.items()}
                step = int(mr["step"])
                slot.train_record = {"step": step, "epoch": epoch, "split": "train",
                                     "loss": float(mr["loss"]), "recon": float(mr["recon"]), "kl": float(mr["kl"]),
                                     "lr": float(mr["lr"]), "skipped_steps": int(mr["skipped_steps"]),
                                     "examples_per_s": examples_per_epoch / dt, "epoch_s": dt,
                                     "elapsed_s": time.perf_counter() - t_start}
                slot.mlog.write(slot.train_record)
                if slot.pending is not None and not slot.ckpts.saving():
                    slot.saved()
                if mr["bad_step"] >= 0:
                    slot.finish_saves()  # the message names the last complete checkpoint
                    message = _nonfinite_message(slot.cfg, mr, epoch, slot.ckpts.steps())
                    if n_rep == 1:
                        raise RunError(message)
                    slot.end("failed", message)
                    bar.message(f"replica {slot.path.name} failed: {message}")
                    continue
                if evaluating:
                    params = devices.local(replica(state["params"], r))
                    slot.val_record = validate(slot, params, step, epoch)
                    slot.mlog.write(slot.val_record)
                    if slot.primary:
                        draw(slot, params, step)
                if saving:
                    # ranked for keep_best only when validated at this very step (no extra pass)
                    fresh_val = slot.val_record is not None and slot.val_record["step"] == step
                    slot.ckpts.save(step, replica(host, r),
                                    {"epoch": epoch, "train": slot.train_record, "validation": slot.val_record},
                                    validation_elbo=slot.val_record["elbo"] if fresh_val else None,
                                    force=last_epoch or stopping)
                    slot.pending = step
                slot.summary.update({"epochs_done": epoch, "step": step, "skipped_updates": int(mr["skipped_total"]),
                                     "wall_s": slot.summary.get("wall_s_before", 0.0) + time.perf_counter() - t_start})
                slot.write_summary()
            bar.epoch(epoch, _progress_info(slots, m, examples_per_epoch / dt))
            if not any(slot.active for slot in slots):
                raise RunError(f"all {n_rep} replicas failed; see each run's summary.json")
            if stopping:
                name = signal.Signals(stop.signum).name
                where = slots[0].run.checkpoint_dir if n_rep == 1 else f"each of the {n_rep} run folders"
                raise Interrupted(f"{name}: stopped after epoch {epoch}, checkpoint saved at step "
                                  f"{int(m['step'][0])} in {where}", 128 + stop.signum)
    finally:  # every exit path: the saves in flight complete, the summaries name them
        for slot in slots:
            slot.finish_saves()

    steady = epoch_times[1:] if len(epoch_times) > 1 else epoch_times
    for slot in slots:
        if not slot.active:
            continue
        slot.summary.update({
            "status": "completed", "epochs_done": cfg.train.epochs,
            "steps": slot.train_record["step"] if slot.train_record else 0,
            "final_train": slot.train_record, "final_validation": slot.val_record,
            "wall_s": slot.summary.get("wall_s_before", 0.0) + time.perf_counter() - t_start, "compile_s": compile_s,
            "epoch_s_median": statistics.median(steady) if steady else None,
            "epoch_s_first": epoch_times[0] if epoch_times else None, "replicas_in_program": n_rep,
        })
        slot.end("completed")
    failed = [slot.path.name for slot in slots if slot.summary["status"] == "failed"]
    done = ""
    if n_rep == 1 and slots[0].val_record:
        done = f"val ELBO {slots[0].val_record['elbo']:.2f} nats, "
    if steady:
        done += f"median epoch {statistics.median(steady):.3f} s; "
    bar.message(f"done: {done}" + (f"run folder {slots[0].path}" if n_rep == 1 else f"{n_rep - len(failed)} of {n_rep} replicas completed"))
    if failed:
        raise RunError(f"{len(failed)} of {n_rep} replicas failed (non-finite loss): {', '.join(failed)}; "
                       f"the others completed")


def _progress_info(slots: list[_Slot], m: dict, examples_per_s: float) -> str:
    losses = [float(m["loss"][r]) for r, slot in enumerate(slots) if slot.active]
    rate = f"{examples_per_s * len(slots):,.0f} ex/s"
    if not losses:
        return rate
    if len(slots) == 1:
        info = f"loss {losses[0]:.2f}  {rate}"
        if slots[0].val_record and slots[0].val_record["epoch"] == slots[0].train_record["epoch"]:
            info += f"  val ELBO {slots[0].val_record['elbo']:.2f}"
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
