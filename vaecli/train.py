"""`vae train`: the compiled epoch of steps and the loop around it.

Speed is designed in here:
- the training split lives on the device as uint8; batches are gathered on the device;
- one compiled call runs a whole epoch (`lax.scan` over its steps): shuffling,
  binarization and sampling happen inside it, with no host round-trip per step;
- the state is donated, so parameters and optimizer state are updated in place;
- the host reads metrics once per epoch (the log point), never inside the epoch;
- randomness comes from (seed, step) and (seed, epoch), so the same run restarted from
  a checkpoint draws exactly the numbers an uninterrupted run would.
"""
from __future__ import annotations

import math
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

from vaecli import bounds, data, objectives, pictures, runs, state as state_lib
from vaecli.checkpoints import Checkpoints
from vaecli.config import Config
from vaecli.errors import Interrupted, RunError, UsageError
from vaecli.metrics import MetricsLog
from vaecli.progress import Progress

TRACES = {"epoch": 0}  # incremented at trace time: a test shows one trace per run

# Independent random streams derived from the run's base key.
_SHUFFLE, _STEP, _PICTURES = 1, 2, 3


def to_inputs(x_u8, key, scale: int, dynamic: bool):
    """uint8 pixels -> float inputs: intensities in [0, 1], or with dynamic binarization a
    fresh Bernoulli draw of them (each image is binarized anew every time it is seen)."""
    x = x_u8.astype(jnp.float32) / scale
    return jax.random.bernoulli(key, x).astype(jnp.float32) if dynamic else x


def make_epoch_fn(fn, tx: optax.GradientTransformation, cfg: Config, n_train: int, scale: int):
    """Compiled f(state, images) -> (state, epoch metrics): one epoch of steps in one call.

    Every step checks that recon, KL and the update are finite. With
    `train.skip_nonfinite: N` a bad update is dropped inside the step (parameters and
    optimizer state stay as they were) while fewer than N have been dropped in the run;
    otherwise it is applied, and the host stops the run at the log point, naming the first
    bad step and term.
    """
    batch = cfg.train.batch_size
    steps_per_epoch = n_train // batch
    dynamic = cfg.data.binarize == "dynamic"
    skip_limit = cfg.train.skip_nonfinite

    def loss_fn(params, x, key):
        vae = fn.bind(params)
        recon, kl = objectives.elbo_terms(vae.encoder, vae.log_likelihood, x, key,
                                          cfg.objective.samples, cfg.objective.kl)
        recon, kl = jnp.mean(recon), jnp.mean(kl)
        return recon + kl, (recon, kl)

    def train_step(state, order, images):
        base = jax.random.wrap_key_data(state["rng"])
        key = jax.random.fold_in(jax.random.fold_in(base, _STEP), state["step"])
        k_binarize, k_z = jax.random.split(key)
        x = to_inputs(images[order], k_binarize, scale, dynamic)
        (loss, (recon, kl)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"], x, k_z)
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        finite = jnp.stack([jnp.isfinite(recon), jnp.isfinite(kl), _all_finite(updates)])
        skipped = state["skipped"]
        skip = jnp.zeros((), bool)
        if skip_limit > 0:
            skip = ~jnp.all(finite) & (skipped < skip_limit)
            keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(skip, b, a), new, old)
            params, opt_state = keep(params, state["params"]), keep(opt_state, state["opt_state"])
            skipped = skipped + skip.astype(jnp.int32)
        new = {"params": params, "opt_state": opt_state, "step": state["step"] + 1, "rng": state["rng"],
               "skipped": skipped}
        return new, (jnp.stack([loss, recon, kl]), finite, skip)

    def epoch(state, images):
        TRACES["epoch"] += 1
        base = jax.random.wrap_key_data(state["rng"])
        first_step = state["step"]
        epoch_index = first_step // steps_per_epoch
        perm = jax.random.permutation(jax.random.fold_in(jax.random.fold_in(base, _SHUFFLE), epoch_index),
                                      n_train)
        order = perm[: steps_per_epoch * batch].reshape(steps_per_epoch, batch)
        state, (per_step, finite, skip) = jax.lax.scan(lambda s, o: train_step(s, o, images), state, order)
        good = jnp.all(finite, axis=1)
        bad = ~good & ~skip  # applied although not finite: the run must stop
        first_bad = jnp.argmax(bad)
        sums = jnp.sum(jnp.where(good[:, None], per_step, 0.0), axis=0)
        means = sums / jnp.maximum(jnp.sum(good), 1)
        return state, {"loss": means[0], "recon": means[1], "kl": means[2],
                       "bad_step": jnp.where(jnp.any(bad), first_step + first_bad + 1, -1),
                       "bad_finite": finite[first_bad], "skipped_steps": jnp.sum(skip),
                       "skipped_total": state["skipped"],
                       "step": state["step"], "lr": learning_rate(state["opt_state"])}

    return jax.jit(epoch, donate_argnums=0)


def _all_finite(tree) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(a)) for a in jax.tree.leaves(tree)]))


def make_pictures_fn(fn):
    """Compiled f(params, z, x) -> (decoded prior samples, reconstructions), Bernoulli means."""

    def pictures_fn(params, z, x):
        vae = fn.bind(params)
        mean, _ = vae.encoder(x)
        return vae.mean_image(z), vae.mean_image(mean)

    return jax.jit(pictures_fn)


def learning_rate(opt_state) -> jax.Array:
    return optax.tree_utils.tree_get(opt_state, "learning_rate")  # held by inject_hyperparams


def _host_copy(tree):
    # An owned host copy: the device buffers are donated to the next epoch while Orbax
    # is still writing asynchronously.
    return jax.tree.map(lambda a: np.array(a, copy=True), tree)


def train(cfg: Config, runs_dir: str | Path, name: str, argv: list[str], progress: str = "auto") -> Path:
    """Train a model as `cfg` says in a new run folder; return the folder."""
    t_start = time.perf_counter()
    runs.check_target(runs_dir, name)  # a bad --name or --runs-dir is reported before any data work
    # Data first: a dataset that cannot be loaded leaves no run folder behind.
    train_split, val_split = _load_data(cfg)
    path = runs.create(runs_dir, name)
    with runs.Lock(path):
        meta = runs.environment_meta(argv)
        meta["data"] = {"dataset": cfg.data.dataset, "image_shape": list(train_split.image_shape),
                        "num_train": len(train_split), "num_validation": len(val_split),
                        "binarize": cfg.data.binarize, "train_scale": train_split.scale}
        run = runs.write_start(path, cfg, meta)
        fn, tx, state = state_lib.init_state(cfg, train_split.image_shape)
        start = _Start(fn, tx, state, epoch=0, record=None, summary={})
        return _session(cfg, run, train_split, val_split, start, t_start)


def resume(run_path: str | Path, overrides: list[str], argv: list[str]) -> Path:
    """Continue a run from its latest complete checkpoint (or from step 0 if it saved none)
    with its own config.yaml; `overrides` may change only `config.RESUMABLE` keys.

    Everything is checked (lock, config, data, checkpoint) before anything in the run
    folder is touched."""
    from vaecli import config as config_lib

    t_start = time.perf_counter()
    run = runs.open_run(run_path)
    cfg = config_lib.apply_resume_overrides(run.config, overrides)
    with runs.Lock(run.path):
        old_summary = runs.read_json(run.path / "summary.json") or {}
        train_split, val_split = _load_data(cfg)
        if list(train_split.image_shape) != list(run.image_shape) or len(train_split) != run.meta["data"].get("num_train"):
            raise RunError(f"the training data of {cfg.data.dataset} is not what {run.path} was trained on "
                           f"({len(train_split)} images of {train_split.image_shape}, the run saw "
                           f"{run.meta['data'].get('num_train')} of {tuple(run.image_shape)}); point data.* at the same data")
        fn, tx, state = state_lib.init_state(cfg, train_split.image_shape)
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
        runs.truncate_metrics(run.path, step)
        if cfg != run.config:
            runs.write_text(run.path / "config.yaml", config_lib.dump_yaml(cfg))
        meta = dict(run.meta)
        meta.setdefault("resumes", []).append({
            "from_step": step, "from_epoch": epoch, "overrides": list(overrides), "argv": list(argv),
            "time": runs.utc_now().isoformat(timespec="seconds"), "vaecli_version": runs.environment_meta(argv)["vaecli_version"]})
        runs.write_json(run.path / "meta.json", meta)
        run = runs.Run(run.path, cfg, meta)
        before = {"resumed_from_step": step, "wall_s_before": float(old_summary.get("wall_s") or 0.0)}
        start = _Start(fn, tx, jax.device_put(state), epoch=epoch, record=record, summary=before)
        return _session(cfg, run, train_split, val_split, start, t_start)


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


def _session(cfg: Config, run: runs.Run, train_split, val_split, start: _Start, t_start: float) -> Path:
    """Run the epochs from `start` to `cfg.train.epochs`, keeping summary.json's status true
    on every exit path."""
    path = run.path
    summary = {"status": "running", "run": str(path), "epochs": cfg.train.epochs, "epochs_done": start.epoch,
               "step": int(start.state["step"]), "last_checkpoint_step": int(start.state["step"]) if start.record else None,
               **start.summary}
    runs.write_json(path / "summary.json", summary)
    bar = Progress(cfg.train.epochs, cfg.log.progress, first_epoch=start.epoch)
    bar.message(f"run folder: {path}" + (f" (resuming after epoch {start.epoch}, step {summary['step']})"
                                          if start.record or start.epoch else ""))
    try:
        with _StopOnSignal() as stop:
            _loop(cfg, run, train_split, val_split, start, bar, summary, t_start, stop)
    except BaseException as e:
        summary["status"] = "interrupted" if isinstance(e, (KeyboardInterrupt, Interrupted)) else "failed"
        summary["error"] = str(e) or type(e).__name__
        runs.write_json(path / "summary.json", summary)
        raise
    finally:
        bar.close()
    return path


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


def _loop(cfg: Config, run: runs.Run, train_split, val_split, start: _Start, bar: Progress, summary: dict,
          t_start: float, stop: _StopOnSignal) -> None:
    path = run.path
    fn, tx, state = start.fn, start.tx, start.state
    images = jax.device_put(train_split.flat)  # the whole training split, on the device, uint8
    steps_per_epoch = len(train_split) // cfg.train.batch_size
    examples_per_epoch = steps_per_epoch * cfg.train.batch_size

    t0 = time.perf_counter()
    epoch_fn = make_epoch_fn(fn, tx, cfg, len(train_split), train_split.scale).lower(state, images).compile()
    val_estimate, _ = bounds.compile_estimator(fn, state["params"], val_split.images, val_split.scale, 1,
                                               cfg.eval.batch_size)
    compile_s = time.perf_counter() - t0

    n_pic = min(cfg.eval.grid, len(val_split))
    pic_key = jax.random.fold_in(jax.random.key(cfg.seed), _PICTURES)
    prior_z = jax.random.normal(pic_key, (n_pic, cfg.model.latent_dim))
    pic_host = val_split.flat[:n_pic].astype(np.float32) / val_split.scale  # kept for the grids
    pic_x = jnp.asarray(pic_host)
    as_images = lambda a: np.asarray(a).reshape(-1, *val_split.image_shape)
    pictures_fn = make_pictures_fn(fn)

    def validate(step, epoch):
        s = bounds.summarize(val_estimate(state["params"], cfg.seed), int(np.prod(val_split.image_shape)))
        return {"step": step, "epoch": epoch, "split": "validation", "loss": -s["elbo"], "recon": s["recon"],
                "kl": s["kl"], "elbo": s["elbo"], "elapsed_s": time.perf_counter() - t_start}

    def draw(step):
        prior, recon = jax.device_get(pictures_fn(state["params"], prior_z, pic_x))
        title = f"{path.name} step {step}"
        pictures.save_grid(as_images(prior), path / "samples" / f"prior-step{step}.png", f"{title} prior samples")
        half = max(1, n_pic // 2)
        both = as_images(np.concatenate([pic_host[:half], recon[:half]]))
        pictures.save_grid(both, path / "samples" / f"recon-step{step}.png",
                           f"{title} data (top) / reconstructions (bottom)")

    record = start.record or {}
    train_record, val_record = record.get("train"), record.get("validation")
    epoch_times, pending = [], None
    with MetricsLog(path, tensorboard=cfg.log.tensorboard, purge_after=summary["step"] if start.epoch else None) as mlog, \
            Checkpoints(run.checkpoint_dir, keep=cfg.checkpoint.keep, keep_best=cfg.checkpoint.keep_best) as ckpts:
        try:
            for epoch in range(start.epoch + 1, cfg.train.epochs + 1):
                t = time.perf_counter()
                state, m = epoch_fn(state, images)
                m = jax.device_get(m)  # the log point: the only host sync of the epoch
                dt = time.perf_counter() - t
                epoch_times.append(dt)
                step = int(m["step"])
                train_record = {"step": step, "epoch": epoch, "split": "train",
                                "loss": float(m["loss"]), "recon": float(m["recon"]), "kl": float(m["kl"]),
                                "lr": float(m["lr"]), "skipped_steps": int(m["skipped_steps"]),
                                "examples_per_s": examples_per_epoch / dt, "epoch_s": dt,
                                "elapsed_s": time.perf_counter() - t_start}
                mlog.write(train_record)
                if pending is not None and not ckpts.saving():
                    summary["last_checkpoint_step"], pending = pending, None
                if m["bad_step"] >= 0:
                    ckpts.wait()  # the message names the last complete checkpoint
                    raise RunError(_nonfinite_message(cfg, m, epoch, ckpts.steps()))

                info = f"loss {train_record['loss']:.2f}  {train_record['examples_per_s']:,.0f} ex/s"
                if m["skipped_steps"]:
                    info += f"  skipped {int(m['skipped_steps'])} non-finite updates ({int(m['skipped_total'])} in the run)"
                last_epoch = epoch == cfg.train.epochs
                stopping = stop.signum is not None
                saving = epoch % cfg.checkpoint.every_epochs == 0 or last_epoch or stopping
                if epoch % cfg.eval.every_epochs == 0 or last_epoch:
                    val_record = validate(step, epoch)
                    mlog.write(val_record)
                    info += f"  val ELBO {val_record['elbo']:.2f}"
                    draw(step)
                if saving:
                    # ranked for keep_best only when validated at this very step (no extra pass)
                    fresh_val = val_record is not None and val_record["step"] == step
                    ckpts.save(step, _host_copy(state), {"epoch": epoch, "train": train_record, "validation": val_record},
                               validation_elbo=val_record["elbo"] if fresh_val else None, force=last_epoch or stopping)
                    pending = step
                summary.update({"epochs_done": epoch, "step": step, "skipped_updates": int(m["skipped_total"]),
                                "wall_s": summary.get("wall_s_before", 0.0) + time.perf_counter() - t_start})
                runs.write_json(path / "summary.json", summary)
                bar.epoch(epoch, info)
                if stopping:
                    name = signal.Signals(stop.signum).name
                    raise Interrupted(f"{name}: stopped after epoch {epoch}, checkpoint saved at step {step} "
                                      f"in {run.checkpoint_dir}", 128 + stop.signum)
        finally:  # every exit path: the save in flight completes, the summary names it
            ckpts.wait()
            if pending is not None:
                summary["last_checkpoint_step"] = pending

    steady = epoch_times[1:] if len(epoch_times) > 1 else epoch_times
    summary.update({
        "status": "completed", "epochs_done": cfg.train.epochs, "steps": train_record["step"] if train_record else 0,
        "final_train": train_record, "final_validation": val_record,
        "wall_s": summary.get("wall_s_before", 0.0) + time.perf_counter() - t_start, "compile_s": compile_s,
        "epoch_s_median": statistics.median(steady) if steady else None,
        "epoch_s_first": epoch_times[0] if epoch_times else None,
    })
    runs.write_json(path / "summary.json", summary)
    done = f"val ELBO {val_record['elbo']:.2f} nats, " if val_record else ""
    if steady:
        done += f"median epoch {summary['epoch_s_median']:.3f} s; "
    bar.message(f"done: {done}run folder {path}")


def _nonfinite_message(cfg: Config, m: dict, epoch: int, saved: list[int]) -> str:
    terms = [t for t, ok in zip(("reconstruction", "KL", "update"), m["bad_finite"]) if not ok]
    where = f"non-finite {' and '.join(terms) or 'loss'} at step {int(m['bad_step'])} (epoch {epoch})"
    last = f"last good checkpoint: step {saved[-1]}" if saved else "no checkpoint was saved before it"
    if cfg.train.skip_nonfinite:
        fix = f"after skipping {cfg.train.skip_nonfinite} (train.skip_nonfinite)"
    else:
        fix = "set train.skip_nonfinite: N to drop up to N bad updates, or lower optim.lr"
    return f"{where}; {last}; {fix}"
