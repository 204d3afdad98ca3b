"""`vae train-prior RUN`: the second stage of a VQ-VAE, an autoregressive prior over its codes
(vaecli.models.pixelcnn), fitted to the codes of the training split at the run's latest
checkpoint, in RUN/prior/ (vaecli.rundir.code_prior) with checkpoints of its own.

Its settings are the run's `code_prior` section, which `--set code_prior.KEY=V` may change for
a new prior; prior.yaml records them with the code grid and the VQ-VAE step, and a second call
resumes from the latest prior checkpoint (only code_prior.epochs may then change), drawing the
numbers an uninterrupted training would (the shuffle is keyed by (seed, epoch)). A time limit
stops at the last epoch boundary that fits, with a checkpoint, and raises Paused (exit 3).
"""
from __future__ import annotations

import time
from pathlib import Path

import jax
import numpy as np

from vaecli import clock, config, data, files, progress
from vaecli.compiled import code_prior
from vaecli.compiled.devices import to_host
from vaecli.errors import ConfigError, Paused, RunError, UsageError
from vaecli.models.pixelcnn import receptive_field
from vaecli.rundir import evaluated, layout
from vaecli.rundir.checkpoints import Checkpoints
from vaecli.rundir.code_prior import PriorFolder, prior_config
from vaecli.training import launch
from vaecli.training.stops import TimeBudget

KEEP = 3  # prior checkpoints kept, besides the best by validation


def _settings(run: layout.Run, folder: PriorFolder, overrides: list[str]):
    """(config with the prior's section, prior.yaml's mapping or None): a new prior takes the
    run's code_prior section and `overrides` (code_prior.* keys: launch.prior_run checks them);
    a prior that has a checkpoint resumes with its own."""
    meta = folder.meta()
    if meta is not None and folder.checkpoint_dir.is_dir() and any(folder.checkpoint_dir.iterdir()):
        bad = [o for o in overrides if o.partition("=")[0].strip() != "code_prior.epochs"]
        if bad:
            raise UsageError(f"--set {bad[0]}: {folder.path} holds a prior trained with its own settings; resuming "
                             "may change only code_prior.epochs (move that folder away to fit a new prior)")
        base = prior_config(run.config, meta)
    else:
        meta, base = None, run.config
    return config.from_dict(config.apply_overrides(config.to_dict(base), list(overrides))), meta


def _check_grid(cfg, k: int, length: int, grid, vq_step: int, meta: dict | None) -> None:
    layers = cfg.code_prior.layers
    if receptive_field(layers) < length - 1:
        need = next(n for n in range(1, 64) if receptive_field(n) >= length - 1)
        raise ConfigError(f"code_prior.layers: {layers} layers see {receptive_field(layers)} codes back, but the "
                          f"code grid {'x'.join(map(str, grid))} has {length} codes; set code_prior.layers={need} "
                          "or more")
    if meta is not None and (meta["codebook_size"], meta["codes"], meta["vq_step"]) != (k, length, vq_step):
        raise RunError(f"the prior in {Path(meta['folder'])} was fitted to {meta['codes']} codes of "
                       f"{meta['codebook_size']} at step {meta['vq_step']}; the run's latest checkpoint is step "
                       f"{vq_step} with {length} codes of {k}: move that folder away to fit a new prior")


def _split_codes(run, ckpt, split: str) -> np.ndarray:
    images = data.load_split(run.config.data, split)
    return code_prior.codes(ckpt.fn, ckpt.params, images.images, images.scale)


def _start(cfg, folder: PriorFolder, k: int, length: int, resuming: bool):
    """(Functional, optimizer, state, epochs done) from the latest prior checkpoint or step 0."""
    seed = cfg.seed
    if not resuming:
        fn, tx, state = code_prior.init_state(cfg.code_prior, k, length, seed)
        return fn, tx, state, 0
    fn, tx, like = code_prior.template_state(cfg.code_prior, k, length, seed)
    with Checkpoints(folder.checkpoint_dir, read_only=True) as ckpts:
        step = ckpts.steps()[-1]
        state, record = ckpts.restore(step, like)
    return fn, tx, jax.tree.map(jax.numpy.asarray, state), int(record["epoch"])


def train_prior(run_path: str | Path, overrides: list[str] = (), time_limit: str | None = None,
                shown: str | bool | None = "auto") -> dict:
    """Fit (or resume) the code prior of the VQ-VAE run `run_path`; return its summary."""
    started = clock.now()
    run = launch.prior_run(run_path, list(overrides), time_limit)
    limit = clock.parse_duration(time_limit) if time_limit is not None else None
    folder = PriorFolder(run.path)
    cfg, meta = _settings(run, folder, list(overrides))
    ckpt = evaluated.open_checkpoint(run, "latest").restore()
    model = ckpt.fn.bind(ckpt.params)
    k, length, grid = cfg.model.codebook_size, model.num_codes, model.grid
    _check_grid(cfg, k, length, grid, ckpt.step, meta)
    with progress.reporting(shown), progress.working("encoding the training and validation splits"):
        train_codes, val_codes = _split_codes(run, ckpt, "train"), _split_codes(run, ckpt, "validation")
    fn, tx, state, done = _start(cfg, folder, k, length, meta is not None)
    folder.write_meta({"code_prior": config.to_dict(cfg)["code_prior"], "codebook_size": k, "codes": length,
                       "grid": list(grid), "vq_step": ckpt.step, "folder": str(folder.path)})
    p = cfg.code_prior
    if len(train_codes) < p.batch_size:
        raise ConfigError(f"code_prior.batch_size: {p.batch_size} is more than the {len(train_codes)} training "
                          "images; set it lower")
    epoch_fn = code_prior.make_epoch_fn(fn, tx, p.batch_size, len(train_codes))
    records = [r for r in folder.records() if r["epoch"] <= done]
    budget = TimeBudget(limit, started) if limit is not None else None
    device_codes = jax.device_put(train_codes)
    status = "completed"
    with Checkpoints(folder.checkpoint_dir, keep=KEEP) as ckpts, progress.reporting(shown):
        for epoch in range(done + 1, p.epochs + 1):
            if budget is not None and not budget.fits_next():
                status = "paused"
                break
            t0 = time.perf_counter()
            state, train_nll = epoch_fn(state, device_codes)
            val_nll = float(-code_prior.log_prob(fn, state["params"], val_codes).mean())
            record = {"epoch": epoch, "step": int(state["step"]), "train_nll": float(train_nll),
                      "val_nll": val_nll, "val_nll_per_code": val_nll / length}
            ckpts.save(int(state["step"]), to_host(state), record, validation_elbo=-val_nll)
            ckpts.wait()
            records.append(record)
            folder.write_records(records)
            if budget is not None:
                budget.iteration(time.perf_counter() - t0)
            progress.say(f"prior epoch {epoch}/{p.epochs}  train −log p(codes) {float(train_nll):.2f}  "
                         f"validation {val_nll:.2f} nats")
    last = records[-1] if records else {}
    summary = {"status": status, "epochs": last.get("epoch", 0), "val_nll": last.get("val_nll"),
               "val_nll_per_code": last.get("val_nll_per_code"), "codes": length, "grid": list(grid),
               "codebook_size": k, "vq_step": ckpt.step, "prior": str(folder.path)}
    files.write_json(folder.summary_file, summary)
    if status == "paused":
        raise Paused(f"the time limit left no room for another prior epoch after epoch {summary['epochs']}; "
                     f"continue with vae train-prior {run.path}", [run.path])
    return summary
