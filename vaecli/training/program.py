"""What one training program compiles, once for all its replicas: the epoch, the validation
estimator, and the picture grids drawn at each evaluation; and the training split it runs
over, on its devices."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import jax
import numpy as np
from jax.sharding import Mesh

from vaecli import registry
from vaecli.compiled import cache, devices, estimator, state as state_lib, summaries
from vaecli.compiled.epoch import make_epoch_fn
from vaecli.compiled.spread import SpreadEpoch
from vaecli.config import Config
from vaecli.data import Split
from vaecli.rundir.recorder import Recorder
from vaecli.training.pictures import training_pictures
from vaecli.training.records import Model
from vaecli.training.replica_axis import ReplicaAxis


@dataclass(frozen=True)
class Program:
    epoch: Callable[[dict, jax.Array], tuple[dict, dict[str, jax.Array]]]  # (state, images) -> (state, metrics)
    validate: Callable[[Recorder, dict, int, int, float], dict]  # (recorder, params, step, epoch, t_start) -> record
    pictures: Callable[[int, dict, int, Path], list[Path]]  # (seed, params, step, run_dir) -> the PNGs written
    images: jax.Array  # the whole training split, uint8, on every device: the epoch's second argument
    steps_per_epoch: int
    examples_per_epoch: int
    compile_s: float


def build(model: Model, cfg: Config, train_split: Split, val_split: Split, state, axis: ReplicaAxis,
          mesh: Mesh) -> Program:
    fn, tx = model.fn, model.tx
    images = devices.replicate(train_split.flat, mesh)
    t0 = time.perf_counter()
    spread = devices.is_replica_mesh(mesh)
    batch_sharding = None if spread else devices.batch_sharding(mesh)
    # kept for the process: a later run of the same program in it (the library called in a
    # loop, the tests) reuses it instead of tracing, lowering and loading it again
    key = cache.key("epoch", fn, cache.training_fields(cfg), len(train_split), train_split.scale, axis.n,
                    batch_sharding, mesh if spread else None, cache.signature(state), cache.signature(images))
    if spread:  # each device the program of its share of the replicas (one: the single-run program)
        epoch_fn = cache.get(key, lambda: SpreadEpoch(make_epoch_fn(fn, tx, cfg, len(train_split), train_split.scale,
                                                                    replicas=axis.n // mesh.size),
                                                      state, images, mesh, axis.n))
    else:
        epoch_fn = cache.get(key, lambda: make_epoch_fn(fn, tx, cfg, len(train_split), train_split.scale,
                                                        replicas=axis.n, batch_sharding=batch_sharding)
                             .lower(state, images).compile())
    val_estimate, _ = estimator.compile_estimator(fn, devices.local(axis.take(state["params"], 0)), val_split.flat,
                                                  val_split.scale, 1, cfg.eval.batch_size,
                                                  deterministic=not registry.objective(cfg).draws_samples)
    compile_s = time.perf_counter() - t0
    num_pixels = int(np.prod(val_split.image_shape))
    ema = state_lib.params_kind(cfg) == "ema"  # validation and pictures use the EMA parameters

    def validate(rec: Recorder, params, step, epoch, t_start):
        s = summaries.summarize(val_estimate(params, rec.cfg.seed), num_pixels)
        return {"step": step, "epoch": epoch, "split": "validation", "loss": -s["elbo"], "recon": s["recon"],
                "kl": s["kl"], "elbo": s["elbo"], "elapsed_s": time.perf_counter() - t_start,
                **({"params": "ema"} if ema else {})}

    n_pic = min(cfg.eval.grid, len(val_split))
    pic_images = val_split.images[:n_pic].astype(np.float32) / val_split.scale
    labelled = dict(labels=val_split.labels[:n_pic], num_classes=val_split.num_classes) if val_split.conditioned else {}

    def draw(seed, params, step, run_dir: Path):
        title = f"{run_dir.name} step {step}" + (" (EMA params)" if ema else "")
        return list(training_pictures(fn, params, pic_images, seed, step, run_dir, title, **labelled))

    steps_per_epoch = len(train_split) // cfg.train.batch_size
    return Program(epoch_fn, validate, draw, images, steps_per_epoch, steps_per_epoch * cfg.train.batch_size,
                   compile_s)
