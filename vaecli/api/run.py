"""`vaecli.load`: a trained run in Python, at one checkpoint — its encoder, decoder and prior,
and the estimators of `vae eval-elbo`, on any images.

Nothing here computes anything of its own: the run is opened and its checkpoint restored as
every evaluation command does it (vaecli.rundir.evaluated), pictures come from
vaecli.compiled.encode_decode and `vae sample --mode prior`'s draw, and log p(x) and the ELBO from the chunked estimator
(vaecli.compiled.estimator) with the settings `vae eval-elbo` uses, so the numbers are the
CLI's. Programs are kept for the process (vaecli.compiled.cache): each method compiles once
per input shape, for every Run of the same model. No JAX at import (it comes with `load`).
"""
from __future__ import annotations

import contextlib
import inspect
import logging
from pathlib import Path

import numpy as np

from vaecli import progress, registry
from vaecli.api.images import check_images, check_labels, check_latents
from vaecli.errors import RunError, UsageError


def load(path: str | Path, step: str | int = "default", params: str = "ema") -> Run:
    """The run folder `path` written by `vae train` (or `vaecli.train`), at a checkpoint.

    `step`: "default" (best on a run that stopped early, else latest: what the commands use
    without --step), "best" (the highest validation ELBO), "latest" or a step number.
    `params`: "ema" (the moving average of the parameters where the run trained one with
    train.ema_decay > 0, else its only parameters, as the commands do) or "raw".
    Raises RunError for a folder that is no run or a step with no checkpoint, UsageError
    for a malformed argument: the lines `vae eval-elbo` prints for them.
    """
    if params not in ("ema", "raw"):
        raise UsageError(f"params={params!r}: choose 'ema' (the moving average, where the run has one) or 'raw'")
    from vaecli.rundir import evaluated

    ckpt = evaluated.open_checkpoint(path, None if step in ("default", None) else step, params == "raw")
    with _quiet_orbax():
        ckpt.restore()
    return Run(ckpt)


@contextlib.contextmanager
def _quiet_orbax():
    """Orbax logs routine notes of a read-only restore as warnings (through absl), which a
    notebook shows under every `load`; the CLI quiets them for the whole process, a library
    call only while it restores."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(max(level, logging.ERROR))
    try:
        yield
    finally:
        logger.setLevel(level)


def _positive(name: str, value, what: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise UsageError(f"{name}={value!r}: must be a whole number of at least 1{what}")
    return int(value)


def _seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise UsageError(f"seed={seed!r}: must be a whole number")
    return int(seed)


def _one(values: np.ndarray, single: bool) -> np.ndarray:
    return values[0] if single else values


class Run:
    """A trained model at one checkpoint of its run folder (made by `vaecli.load`).

    Attributes: `path` (the run folder), `config` (the run's resolved vaecli.config.Config),
    `step` (the checkpoint's step), `params` (the parameter pytree in use), `params_kind`
    ("ema" or "raw"), `latent_dim`, `image_shape` (H, W, C), `meta` (meta.json).

    Images are uint8 in 0..255 or floats in [0, 1], one image (H, W[, C]) or a batch
    (N, H, W, C), numpy or JAX; results come back as numpy arrays, per image for a batch and
    without the batch axis for one image. `images(split)` gives a split of the run's
    dataset as the model sees it.
    """

    def __init__(self, ckpt):
        """`ckpt`: the checkpoint, restored (vaecli.rundir.evaluated.open_checkpoint)."""
        from vaecli.compiled.encode_decode import CompiledModel

        self.path, self.config, self.meta = ckpt.path, ckpt.config, ckpt.run.meta
        self.step, self.params, self.params_kind = ckpt.step, ckpt.params, ckpt.params_kind
        self.image_shape = tuple(ckpt.image_shape)
        self._fn = ckpt.fn
        m = self.config.model
        self.num_classes = m.num_classes if m.conditional else None  # a conditional run's
        self._model = CompiledModel(self._fn, self.params, self.image_shape, self.num_classes)

    @property
    def latent_dim(self) -> int:
        """The dimension of the code that encode and decode use: z, z1 of the IWAE paper's two
        layers, z2 of the VampPrior paper's HVAE (`model.hierarchy: hvae`), a VQ-VAE's continuous
        pre-quantisation code (its codes times model.code_dim numbers; decode quantises it)."""
        if self.config.model.latent == "vq":
            return self._fn.bind(self.params).latent_dim
        return registry.code_dim(self.config.model)

    def __repr__(self) -> str:
        return f"<vaecli.Run {self.path} step {self.step} ({self.params_kind} params)>"

    def images(self, split: str = "test") -> np.ndarray:
        """The `split` (train, validation or test) of the run's dataset as float32 (N, H, W, C)
        in [0, 1], binarized as the run's data.binarize says: the images `vae eval-elbo` and
        `vae sample` read."""
        from vaecli import data

        data.check_split(split)
        s = data.load_split(self.config.data, split)
        return s.images.astype(np.float32) / s.scale

    def labels(self, split: str = "test") -> np.ndarray | None:
        """The class labels (N,) of `split`, in the order of `images(split)`; None without labels."""
        from vaecli import data

        data.check_split(split)
        return data.load_split(self.config.data, split).labels

    def encode(self, images, y=None) -> tuple[np.ndarray, np.ndarray]:
        """The posterior q(z|x) of each image: (mean, std), each (N, latent_dim) (or (latent_dim,)
        for one image). Batches of 1000 images are encoded at a time, so any number fits. A
        conditional run's q(z|x, y) takes the class labels `y` too (one, or one per image)."""
        px = check_images(images, self.image_shape)
        mean, logvar = self._model.encode(px.values, check_labels(y, self.num_classes, (len(px.values),)))
        return _one(mean, px.single), _one(np.exp(0.5 * logvar), px.single)

    def decode(self, z, y=None) -> np.ndarray:
        """The mean image E[x|z] of each latent: z (..., latent_dim) -> (..., H, W, C) floats in
        [0, 1]; a conditional run's E[x|z, y] takes the class labels `y` too."""
        z = check_latents(z, self.latent_dim)
        return self._model.decode(z, check_labels(y, self.num_classes, z.shape[:-1]))

    def generate(self, n: int, seed: int = 0, temperature: float = 1.0, label: int | None = None) -> np.ndarray:
        """`n` mean images E[x|z] of prior draws z, (n, H, W, C): the pictures of
        `vae sample --mode prior --n N --seed S --temperature T`. `temperature` scales a
        standard-normal prior, z ~ N(0, T²I); other priors take only 1. A conditional run
        draws images of class `label` (`--label`); without one, the classes in turn. A VQ-VAE
        draws codes from the prior `vae train-prior` fitted, each from softmax(logits / T)."""
        from vaecli.evaluation.modes import MODES

        n, seed = _positive("n", n), _seed(seed)
        if not temperature > 0:
            raise UsageError(f"temperature={temperature!r}: must be > 0")
        m = self.config.model
        ctx = {"seed": seed, "latent_dim": self.latent_dim, "normal_prior": registry.standard_normal_prior(m),
               "closed_form_kl": registry.closed_form_kl(m), "split": None,
               "num_classes": self.num_classes, "label": None if label is None else
               int(check_labels(label, self.num_classes if self.num_classes else None, (), "label"))}
        if m.latent == "vq":  # codes from the run's code prior (RunError without one), logits / temperature
            from vaecli.evaluation.vq import prior_draw
            from vaecli.rundir.layout import open_run

            with _quiet_orbax():
                ctx["code_prior"] = prior_draw(open_run(self.path), self._fn, self.params, self.image_shape)
        return MODES["prior"].draw(self._model, ctx, n, None, float(temperature))[0]

    def log_likelihood(self, images, k: int = 1000, seed: int = 0, batch_size: int | None = None,
                       progress: str | bool = "auto", y=None) -> np.ndarray:
        """log p(x) of each image, estimated by importance sampling with K draws of q(z|x)
        (the K-sample IWAE bound log p̂_K(x) ≤ log p(x), tighter as K grows): the estimator
        and the per-example array `log_likelihood_k{K}` of `vae eval-elbo --per-example`.

        The draws are keyed by (seed, index of the image in `images`, sample index), as
        eval-elbo keys them by the index in the split: the images of a split, in its order,
        give eval-elbo's numbers bit for bit (at the default `batch_size`, eval-elbo's 100),
        and the same image at another position gets other draws (another estimate of the
        same log p(x)). Memory is bounded whatever N and K: batches of `batch_size` images,
        the K draws in chunks, one compiled program. A call that lasts more than a few seconds
        (K=5000 on a whole split: minutes on a CPU) shows its progress and the time left on
        stderr; `progress=False` keeps it quiet (vaecli.progress). A conditional run gives
        log p(x|y) for the class labels `y`.
        """
        objective = registry.objective(self.config)
        if not objective.defines_density:
            raise RunError(f"log_likelihood: {objective.no_density_note}; run.elbo(images)['recon'] gives it")
        per, single = self._estimate(images, _positive("k", k), seed, batch_size, progress, y)
        return _one(per["log_likelihood"], single)

    def elbo(self, images, seed: int = 0, k: int = 1, batch_size: int | None = None,
             progress: str | bool = "auto", y=None) -> dict[str, np.ndarray]:
        """The ELBO of each image and its two terms: {"elbo", "recon", "kl"}, elbo = −(recon + kl),
        recon = −E_q[log p(x|z)] averaged over `k` draws of q(z|x), kl = KL(q(z|x) ‖ p(z))
        (analytic where it has a closed form, else the mean of log q − log p over the draws).
        The per-example arrays `elbo_k{K}`, `recon_k{K}`, `kl` of `vae eval-elbo --per-example`;
        the draws are keyed as in `log_likelihood`, and `progress` and `y` are as there."""
        per, single = self._estimate(images, _positive("k", k), seed, batch_size, progress, y)
        out = {"elbo": -(per["recon"] + per["kl"]), "recon": per["recon"], "kl": per["kl"]}
        return {name: _one(v, single) for name, v in out.items()}

    def _estimate(self, images, k: int, seed, batch_size, shown="auto", y=None) -> tuple[dict, bool]:
        """The estimator's per-example arrays over `images`: the program `vae eval-elbo` runs
        (its default batch size and Monte Carlo KL draws, which share the program with log p̂:
        another program could round differently), kept for the process under the same key."""
        from vaecli.compiled import devices, estimator

        defaults = _eval_elbo_defaults()
        seed = _seed(seed)
        batch_size = defaults["batch_size"] if batch_size is None else _positive("batch_size", batch_size)
        px = check_images(images, self.image_shape)
        rows = px.stored.reshape(len(px.stored), -1)
        labels = check_labels(y, self.num_classes, (len(rows),))
        if labels is not None:  # the one-hot label after the pixels, at their scale (data.Split.with_labels)
            rows = np.concatenate([rows, (np.eye(self.num_classes)[labels] * px.scale).astype(rows.dtype)], axis=1)
        draws = registry.objective(self.config).draws_samples  # no draws: one deterministic pass, as eval-elbo
        mesh = devices.make_mesh(0)  # every local device, as eval-elbo
        if mesh.size > 1 and min(batch_size, len(px.stored)) % mesh.size:
            mesh = None  # a batch the devices cannot share evenly runs on one
        estimate, _ = estimator.compile_estimator(self._fn, self.params, rows, px.scale, k if draws else 1,
                                                  batch_size, None, defaults["kl_mc_samples"] if draws else 0,
                                                  deterministic=not draws, mesh=mesh)
        with progress.reporting(shown), progress.Task(f"K={k} on {len(px.stored):,} images", len(px.stored),
                                                      " images") as task:
            return estimate(self.params, seed, task.update), px.single


def _eval_elbo_defaults() -> dict:
    """`vae eval-elbo`'s defaults, from the one function behind it (so they cannot drift apart)."""
    from vaecli.evaluation.elbo import evaluate

    return {name: p.default for name, p in inspect.signature(evaluate).parameters.items()}
