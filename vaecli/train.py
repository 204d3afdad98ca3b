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
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from vaecli import bounds, data, objectives, pictures, runs, state as state_lib
from vaecli.checkpoints import Checkpoints
from vaecli.config import Config
from vaecli.errors import Interrupted, RunError
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
    """Compiled f(state, images) -> (state, epoch means): one epoch of steps in one call."""
    batch = cfg.train.batch_size
    steps_per_epoch = n_train // batch
    dynamic = cfg.data.binarize == "dynamic"

    obj = cfg.objective
    warmup_steps = obj.warmup_epochs * steps_per_epoch

    def kl_weight(step):
        """β, ramped up linearly from 0 over the warm-up: a function of the step counter
        inside the compiled epoch, so the schedule costs no recompilation."""
        if warmup_steps <= 0:
            return obj.beta
        return obj.beta * jnp.minimum(1.0, step.astype(jnp.float32) / warmup_steps)

    def loss_fn(params, x, key, step):
        loss, recon, kl = objectives.training_loss(fn.bind(params), x, key, name=obj.name, samples=obj.samples,
                                                   kl=obj.kl, kl_weight=kl_weight(step), free_bits=obj.free_bits)
        return loss, (recon, kl)

    def train_step(state, order, images):
        base = jax.random.wrap_key_data(state["rng"])
        key = jax.random.fold_in(jax.random.fold_in(base, _STEP), state["step"])
        k_binarize, k_z = jax.random.split(key)
        x = to_inputs(images[order], k_binarize, scale, dynamic)
        (loss, (recon, kl)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"], x, k_z,
                                                                               state["step"])
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        new = {"params": optax.apply_updates(state["params"], updates), "opt_state": opt_state,
               "step": state["step"] + 1, "rng": state["rng"]}
        return new, jnp.stack([loss, recon, kl])

    def epoch(state, images):
        TRACES["epoch"] += 1
        base = jax.random.wrap_key_data(state["rng"])
        epoch_index = state["step"] // steps_per_epoch
        perm = jax.random.permutation(jax.random.fold_in(jax.random.fold_in(base, _SHUFFLE), epoch_index),
                                      n_train)
        order = perm[: steps_per_epoch * batch].reshape(steps_per_epoch, batch)
        state, per_step = jax.lax.scan(lambda s, o: train_step(s, o, images), state, order)
        means = jnp.mean(per_step, axis=0)
        return state, {"loss": means[0], "recon": means[1], "kl": means[2],
                       "nonfinite_steps": jnp.sum(~jnp.isfinite(per_step[:, 0])),
                       "step": state["step"], "lr": learning_rate(state["opt_state"])}

    return jax.jit(epoch, donate_argnums=0)


def make_pictures_fn(fn, n: int):
    """Compiled f(params, key, x) -> (n mean images of prior samples, reconstructions of x)."""

    def pictures_fn(params, key, x):
        vae = fn.bind(params)
        return vae.generate(key, n), vae.reconstruct(x)

    return jax.jit(pictures_fn)


def learning_rate(opt_state) -> jax.Array:
    return opt_state[-1].hyperparams["learning_rate"]  # inject_hyperparams is last in the chain


def _host_copy(tree):
    # An owned host copy: the device buffers are donated to the next epoch while Orbax
    # is still writing asynchronously.
    return jax.tree.map(lambda a: np.array(a, copy=True), tree)


def train(cfg: Config, runs_dir: str | Path, name: str, argv: list[str], progress: str = "auto") -> Path:
    """Train a model as `cfg` says; return the run folder."""
    t_start = time.perf_counter()
    runs.check_target(runs_dir, name)  # a bad --name or --runs-dir is reported before any data work
    # Data first: a dataset that cannot be loaded leaves no run folder behind.
    train_split = data.load_split(cfg.data, "train")
    val_split = data.load_split(cfg.data, "validation")
    if len(train_split) < cfg.train.batch_size:
        raise RunError(f"train.batch_size={cfg.train.batch_size} is larger than the training split "
                       f"({len(train_split)} images); lower it")

    path = runs.create(runs_dir, name)
    meta = runs.environment_meta(argv)
    meta["data"] = {"dataset": cfg.data.dataset, "image_shape": list(train_split.image_shape),
                    "num_train": len(train_split), "num_validation": len(val_split),
                    "binarize": cfg.data.binarize, "train_scale": train_split.scale}
    run = runs.write_start(path, cfg, meta)
    summary = {"status": "running", "run": str(path), "last_checkpoint_step": None}
    runs.write_json(path / "summary.json", summary)

    bar = Progress(cfg.train.epochs, cfg.log.progress)
    bar.message(f"run folder: {path}")
    try:
        with _StopOnSignal() as stop:
            summary = _loop(cfg, run, train_split, val_split, bar, summary, t_start, stop)
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


def _loop(cfg: Config, run: runs.Run, train_split, val_split, bar: Progress, summary: dict, t_start: float,
          stop: _StopOnSignal):
    path = run.path
    fn, tx, state = state_lib.init_state(cfg, train_split.image_shape, train=train_split)
    images = jax.device_put(train_split.flat)  # the whole training split, on the device, uint8
    steps_per_epoch = len(train_split) // cfg.train.batch_size
    examples_per_epoch = steps_per_epoch * cfg.train.batch_size

    t0 = time.perf_counter()
    epoch_fn = make_epoch_fn(fn, tx, cfg, len(train_split), train_split.scale).lower(state, images).compile()
    val_estimate, _ = bounds.compile_estimator(fn, state["params"], val_split.images, val_split.scale, 1,
                                               cfg.eval.batch_size, deterministic=cfg.objective.name == "ae")
    compile_s = time.perf_counter() - t0

    n_pic = min(cfg.eval.grid, len(val_split))
    pic_key = jax.random.fold_in(jax.random.key(cfg.seed), _PICTURES)
    pic_host = val_split.flat[:n_pic].astype(np.float32) / val_split.scale  # kept for the grids
    pic_x = jnp.asarray(pic_host)
    as_images = lambda a: np.asarray(a).reshape(-1, *val_split.image_shape)
    pictures_fn = make_pictures_fn(fn, n_pic)

    epoch_times, val_record, train_record = [], None, None
    with MetricsLog(path, tensorboard=cfg.log.tensorboard) as mlog, \
            Checkpoints(run.checkpoint_dir, keep=cfg.checkpoint.keep) as ckpts:
        for epoch in range(1, cfg.train.epochs + 1):
            t = time.perf_counter()
            state, m = epoch_fn(state, images)
            m = jax.device_get(m)  # the log point: the only host sync of the epoch
            dt = time.perf_counter() - t
            epoch_times.append(dt)
            step = int(m["step"])
            train_record = {"step": step, "epoch": epoch, "split": "train",
                            "loss": float(m["loss"]), "recon": float(m["recon"]), "kl": float(m["kl"]),
                            "lr": float(m["lr"]),
                            "examples_per_s": examples_per_epoch / dt, "epoch_s": dt,
                            "elapsed_s": time.perf_counter() - t_start}
            mlog.write(train_record)
            if m["nonfinite_steps"] > 0 or not math.isfinite(train_record["loss"]):
                bad = [t for t in ("recon", "kl") if not math.isfinite(train_record[t])] or ["loss"]
                saved = ckpts.steps()
                raise RunError(f"non-finite {' and '.join(bad)} in epoch {epoch} (steps {step - steps_per_epoch + 1}"
                               f"..{step}); last good checkpoint: {saved[-1] if saved else 'none'}")
            info = f"loss {train_record['loss']:.2f}  {train_record['examples_per_s']:,.0f} ex/s"

            last_epoch = epoch == cfg.train.epochs
            if epoch % cfg.eval.every_epochs == 0 or last_epoch:
                per = val_estimate(state["params"], cfg.seed)
                s = bounds.summarize(per, int(np.prod(val_split.image_shape)))
                val_record = {"step": step, "epoch": epoch, "split": "validation", "loss": -s["elbo"],
                              "recon": s["recon"], "kl": s["kl"], "elbo": s["elbo"],
                              "elapsed_s": time.perf_counter() - t_start}
                mlog.write(val_record)
                prior, recon = jax.device_get(pictures_fn(state["params"], pic_key, pic_x))
                title = f"{path.name} step {step}"
                pictures.save_grid(as_images(prior), path / "samples" / f"prior-step{step}.png", f"{title} prior samples")
                half = max(1, n_pic // 2)
                both = as_images(np.concatenate([pic_host[:half], recon[:half]]))
                pictures.save_grid(both, path / "samples" / f"recon-step{step}.png",
                                   f"{title} data (top) / reconstructions (bottom)")
                info += f"  val ELBO {s['elbo']:.2f}"

            stopping = stop.signum is not None
            if epoch % cfg.checkpoint.every_epochs == 0 or last_epoch or stopping:
                ckpts.save(step, _host_copy(state), {"epoch": epoch, "train": train_record,
                                                     "validation": val_record}, force=last_epoch or stopping)
                summary["last_checkpoint_step"] = step
            bar.epoch(epoch, info)
            if stopping:
                ckpts.wait()
                name = signal.Signals(stop.signum).name
                raise Interrupted(f"{name}: stopped after epoch {epoch}, checkpoint saved at step {step} "
                                  f"in {run.checkpoint_dir}", 128 + stop.signum)
        ckpts.wait()

    steady = epoch_times[1:] if len(epoch_times) > 1 else epoch_times
    summary.update({
        "status": "completed", "epochs": cfg.train.epochs, "steps": train_record["step"],
        "final_train": train_record, "final_validation": val_record,
        "wall_s": time.perf_counter() - t_start, "compile_s": compile_s,
        "epoch_s_median": statistics.median(steady), "epoch_s_first": epoch_times[0],
    })
    runs.write_json(path / "summary.json", summary)
    bar.message(f"done: val ELBO {val_record['elbo']:.2f} nats, median epoch {summary['epoch_s_median']:.3f} s; "
                f"run folder {path}")
    return summary
