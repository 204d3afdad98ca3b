"""`vae sample`: pictures of a trained model, each a PNG (title: run, step, mode) with its
array beside it as .npy.

Modes:
  prior        decoded draws z ~ N(0, T²I) (`temperature` T)
  recon        test images (upper row of each pair) over their reconstructions
  interpolate  pairs of test images, and decodings of the straight line between their
               encoder means
  traverse     one test image's encoding, each latent dimension swept over [-3, 3] (±3 prior
               standard deviations), one row per dimension, ordered by KL over the split
  manifold     2-D latents only: the decoder over a grid of the latent plane (Gaussian
               quantiles 0.05..0.95 on each axis, so the grid covers the prior's mass evenly)
  latents      encoder means of test images: a scatter if 2-D, else their first two principal
               components; coloured by label when the dataset has labels

Pictures show mean images E[x|z] of the run's likelihood. Which test images appear is drawn from `seed`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from vaecli import data, pictures, runs, state as state_lib
from vaecli.objectives import kl_per_dim
from vaecli.errors import UsageError

MODES = ("prior", "recon", "interpolate", "traverse", "manifold", "latents")
DEFAULT_N = {"prior": 64, "recon": 32, "interpolate": 8, "traverse": None, "manifold": None, "latents": None}
DEFAULT_STEPS = {"interpolate": 10, "traverse": 11, "manifold": 20}
TRAVERSE_RANGE = 3.0  # prior standard deviations either side of zero
MANIFOLD_QUANTILES = (0.05, 0.95)
ENCODE_BATCH = 1000


class _Model:
    """Compiled encode/decode of a restored run, on host arrays."""

    def __init__(self, fn, params, image_shape):
        import jax

        self.params, self.image_shape = params, tuple(image_shape)
        self._decode = jax.jit(lambda p, z: fn.bind(p).mean_image(z))
        self._generate = jax.jit(lambda p, key, n: fn.bind(p).generate(key, n), static_argnums=2)
        # Batches of ENCODE_BATCH through the encoder: a whole split never sits in one activation.
        self._encode = jax.jit(lambda p, x: jax.lax.map(lambda xb: fn.bind(p).encoder(xb), x))

    def decode(self, z) -> np.ndarray:
        z = np.asarray(z, np.float32)
        flat = np.asarray(self._decode(self.params, z.reshape(-1, z.shape[-1])))
        return flat.reshape(*z.shape[:-1], *self.image_shape)

    def generate(self, seed: int, n: int) -> np.ndarray:
        import jax

        flat = np.asarray(self._generate(self.params, jax.random.key(seed), n))
        return flat.reshape(n, *self.image_shape)

    def encode(self, x) -> tuple[np.ndarray, np.ndarray]:
        """(N, H, W, C) floats -> encoder (mean, logvar), each (N, latent)."""
        from vaecli.bounds import batch_split

        batches, n = batch_split(np.asarray(x, np.float32), ENCODE_BATCH)
        mean, logvar = self._encode(self.params, batches)
        return tuple(np.asarray(a).reshape(-1, a.shape[-1])[:n] for a in (mean, logvar))


def _pick(split: data.Split, count: int, seed: int) -> np.ndarray:
    """`count` distinct images of the split, drawn with `seed`, as floats in [0, 1]."""
    if count > len(split):
        raise UsageError(f"--n {count}: the {split.name} split has only {len(split)} images")
    idx = np.sort(np.random.default_rng(seed).choice(len(split), count, replace=False))
    return split.images[idx].astype(np.float32) / split.scale


def _blank_pad(images: np.ndarray, cols: int) -> np.ndarray:
    """Pad (N, ...) with all-NaN tiles (drawn blank) to whole rows of `cols`."""
    missing = -len(images) % cols
    return np.concatenate([images, np.full((missing, *images.shape[1:]), np.nan, np.float32)])


def _prior(model, ctx, n, steps, temperature):
    import jax

    if not ctx["normal_prior"]:  # VampPrior or two stochastic layers: the model's own sampler
        if temperature != 1.0:
            raise UsageError("--temperature scales a standard-normal prior; this run's prior is not one "
                             "(VampPrior or two stochastic layers): leave it at 1")
        means = model.generate(ctx["seed"], n)
        return means, {"tiles": means}, "prior samples"
    z = temperature * jax.random.normal(jax.random.key(ctx["seed"]), (n, ctx["latent_dim"]))
    means = model.decode(z)
    return means, {"tiles": means}, f"prior samples, temperature {temperature:g}"


def _recon(model, ctx, n, steps, temperature):
    x = _pick(ctx["split"](), n, ctx["seed"])
    recon = model.decode(model.encode(x)[0])
    cols = min(n, 8)
    top, bottom = _blank_pad(x, cols), _blank_pad(recon, cols)
    rows = len(top) // cols  # each block: a row of data over the row of their reconstructions
    tiles = np.stack([top.reshape(rows, cols, *x.shape[1:]), bottom.reshape(rows, cols, *x.shape[1:])], 1)
    return np.stack([x, recon]), {"tiles": tiles.reshape(-1, *x.shape[1:]), "cols": cols}, \
        "test images over their reconstructions"


def _interpolate(model, ctx, n, steps, temperature):
    x = _pick(ctx["split"](), 2 * n, ctx["seed"])
    mean = model.encode(x)[0]
    a, b = mean[:n], mean[n:]
    t = np.linspace(0.0, 1.0, steps, dtype=np.float32)[None, :, None]
    path = model.decode((1 - t) * a[:, None] + t * b[:, None])  # (n, steps, H, W, C)
    rows = np.concatenate([x[:n, None], path, x[n:, None]], axis=1)  # data at both ends
    return rows, {"tiles": rows.reshape(-1, *x.shape[1:]), "cols": steps + 2}, \
        f"latent interpolation between test images, {steps} steps"


def _traverse(model, ctx, n, steps, temperature):
    split = ctx["split"]()
    mean, logvar = model.encode(split.images.astype(np.float32) / split.scale)
    kl = np.asarray(kl_per_dim(mean, logvar)).mean(0)  # KL(q‖p) per dimension, mean over the split
    order = np.argsort(-kl, kind="stable")[: n or ctx["latent_dim"]]
    base = mean[np.random.default_rng(ctx["seed"]).integers(len(mean))]
    values = np.linspace(-TRAVERSE_RANGE, TRAVERSE_RANGE, steps, dtype=np.float32)
    z = np.repeat(np.repeat(base[None, None], len(order), 0), steps, 1)
    z[np.arange(len(order)), :, order] = values
    rows = model.decode(z)  # (dims, steps, H, W, C)
    labels = [f"z{d} KL {kl[d]:.2f}" for d in order]
    return rows, {"tiles": rows.reshape(-1, *rows.shape[2:]), "cols": steps, "row_labels": labels,
                  "dims": [int(d) for d in order], "dim_kl": [float(kl[d]) for d in order]}, \
        f"each dimension from {values[0]:g} to {values[-1]:g} prior sd, rows by KL (nats)"


def _manifold(model, ctx, n, steps, temperature):
    from jax.scipy.stats import norm

    q = np.asarray(norm.ppf(np.linspace(*MANIFOLD_QUANTILES, steps)), np.float32)
    z1, z2 = np.meshgrid(q, q[::-1])  # z2 grows upwards, z1 to the right
    rows = model.decode(np.stack([z1, z2], -1))  # (steps, steps, H, W, C)
    return rows, {"tiles": rows.reshape(-1, *rows.shape[2:]), "cols": steps}, \
        f"latent manifold, {steps}x{steps} Gaussian quantiles"


def _latents(model, ctx, n, steps, temperature):
    split = ctx["split"]()
    count = min(n or len(split), len(split))
    idx = np.sort(np.random.default_rng(ctx["seed"]).choice(len(split), count, replace=False))
    mean = model.encode(split.images[idx].astype(np.float32) / split.scale)[0].astype(np.float64)
    if mean.shape[1] == 2:
        points, axes = mean, ("z0", "z1")
    else:  # the plane of largest spread of the encodings
        centred = mean - mean.mean(0)
        _, s, vt = np.linalg.svd(centred, full_matrices=False)
        share = s**2 / np.sum(s**2)
        points, axes = centred @ vt[:2].T, (f"PC1 ({share[0]:.0%} of variance)", f"PC2 ({share[1]:.0%})")
    labels = split.labels[idx] if split.labels is not None else None
    return points.astype(np.float32), {"scatter": points, "labels": labels, "axes": axes}, \
        f"encoder means of {count} {split.name} images" + (", PCA" if mean.shape[1] != 2 else "")


_DRAW = {"prior": _prior, "recon": _recon, "interpolate": _interpolate, "traverse": _traverse,
         "manifold": _manifold, "latents": _latents}


def _scatter_png(points, labels, axes, path: Path, title: str) -> Path:
    from matplotlib.figure import Figure  # the object API: no pyplot state, no display needed

    fig = Figure(figsize=(6, 6), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    if labels is None:
        ax.scatter(points[:, 0], points[:, 1], s=2, alpha=0.5, color="tab:blue", linewidths=0)
    else:
        sc = ax.scatter(points[:, 0], points[:, 1], s=2, alpha=0.6, c=labels, cmap="tab10", linewidths=0)
        fig.colorbar(sc, ax=ax, label="label")
    ax.set_xlabel(axes[0])
    ax.set_ylabel(axes[1])
    ax.set_title(title.replace(": ", "\n", 1), fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def sample(run_path: str | Path, mode: str = "prior", n: int | None = None, seed: int = 0, step=None,
           out: str | Path | None = None, temperature: float = 1.0, split: str = "test",
           steps: int | None = None, raw_params: bool = False) -> dict:
    """Draw the picture of `mode`; write `<mode>-step<S>-seed<s>[...].png` and `.npy` into
    `out` (default RUN/samples); return their paths."""
    if mode not in MODES:
        raise UsageError(f"--mode {mode!r}: choose one of {', '.join(MODES)}")
    n = DEFAULT_N[mode] if n is None else n
    if n is not None and n < 1:
        raise UsageError(f"--n {n}: must be at least 1")
    steps = DEFAULT_STEPS.get(mode) if steps is None else steps
    if steps is not None and steps < 2:
        raise UsageError(f"--steps {steps}: must be at least 2")
    if not temperature > 0:
        raise UsageError(f"--temperature {temperature}: must be > 0")
    if split not in data.SPLITS:
        raise UsageError(f"--split {split!r}: choose one of {', '.join(data.SPLITS)}")
    run = runs.open_run(run_path)
    if mode == "manifold" and run.config.model.latent_dim != 2:
        raise UsageError(f"--mode manifold draws a 2-D latent plane; this run has model.latent_dim="
                         f"{run.config.model.latent_dim} (use --mode traverse or --mode latents)")
    fn, state, chosen, _ = state_lib.load_state(run.config, run.image_shape, run.checkpoint_dir, step, raw_params)
    which = state_lib.params_kind(run.config, raw_params)  # "ema": the run's moving average of the parameters
    model = _Model(fn, state["params"], run.image_shape)
    ctx = {"seed": seed, "latent_dim": run.config.model.latent_dim,
           "normal_prior": run.config.model.prior == "normal" and run.config.model.latent_dim2 is None,
           "split": lambda: data.load_split(run.config.data, split)}
    array, draw, what = _DRAW[mode](model, ctx, n, steps, temperature)

    out_dir = Path(out) if out is not None else run.path / "samples"
    stem = f"{mode}-step{chosen}-seed{seed}" + (f"-n{n}" if n else "") + (f"-steps{steps}" if steps else "") \
        + (f"-t{temperature:g}" if mode == "prior" and temperature != 1 else "") \
        + ("-raw" if which == "raw" and run.config.train.ema_decay > 0 else "")
    title = f"{run.path.name} step {chosen}{' EMA' if which == 'ema' else ''} {mode}: {what}"
    png = out_dir / f"{stem}.png"
    if "scatter" in draw:
        _scatter_png(draw["scatter"], draw["labels"], draw["axes"], png, title)
    else:
        pictures.save_grid(draw["tiles"], png, title, cols=draw.get("cols"), row_labels=draw.get("row_labels"))
    npy = out_dir / f"{stem}.npy"
    np.save(npy, array)
    result = {"png": str(png), "npy": str(npy), "mode": mode, "step": chosen, "n": n, "seed": seed,
              "shape": list(array.shape), "title": title, "params": which}
    if "dims" in draw:  # traverse: which dimension each row sweeps, and its mean KL
        result.update(dims=draw["dims"], dim_kl=draw["dim_kl"])
    if draw.get("labels") is not None:
        labels_npy = out_dir / f"{stem}-labels.npy"
        np.save(labels_npy, draw["labels"])
        result["labels_npy"] = str(labels_npy)
    return result
