"""`vae sample`: pictures of a trained model, each a PNG (title: run, step, mode) with its
array beside it as .npy. The modes are the registry `MODES` below: each entry holds its
draw function, its default --n and --steps and its help (the CLI's help is built from it).
Adding a mode is one entry (and its test).

Pictures show mean images E[x|z] of the run's likelihood. Which test images appear is
drawn from `seed`. The prior and reconstruction pictures written during training
(`training_pictures`) share these modes' layouts.

Importable without JAX (the CLI reads `MODES` for its help); the drawing imports it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from dataclasses import dataclass
from typing import Callable

from vaecli.errors import UsageError, storage_error

TRAVERSE_RANGE = 3.0  # prior standard deviations either side of zero
MANIFOLD_QUANTILES = (0.05, 0.95)
ENCODE_BATCH = 1000
ACTIVE_UNIT_THRESHOLD = 0.01  # as vaecli.bounds (Burda et al.): a unit is active above it


def _compiled(fn):
    """The jitted decode/generate/encode of a Functional model: built once per model (per
    `fn.key`, vaecli.programs), so pictures drawn at every evaluation compile once."""
    from vaecli import programs

    # a Functional without a key is its own (the entry holds it, so its id is not reused)
    return programs.get(programs.key("pictures", fn) or ("pictures", fn), lambda: _jitted(fn))


def _jitted(fn):
    import jax

    decode = jax.jit(lambda p, z: fn.bind(p).mean_image(z))
    generate = jax.jit(lambda p, key, n: fn.bind(p).generate(key, n), static_argnums=2)
    # Batches of ENCODE_BATCH through the encoder: a whole split never sits in one activation.
    encode = jax.jit(lambda p, x: jax.lax.map(lambda xb: fn.bind(p).encoder(xb), x))
    return decode, generate, encode


class _Model:
    """Compiled encode/decode of a restored run, on host arrays."""

    def __init__(self, fn, params, image_shape):
        self.params, self.image_shape = params, tuple(image_shape)
        self._decode, self._generate, self._encode = _compiled(fn)

    def decode(self, z) -> np.ndarray:
        z = np.asarray(z, np.float32)
        flat = np.asarray(self._decode(self.params, z.reshape(-1, z.shape[-1])))
        return flat.reshape(*z.shape[:-1], *self.image_shape)

    def generate(self, key, n: int) -> np.ndarray:
        """n mean images of prior draws from the JAX key `key`."""
        flat = np.asarray(self._generate(self.params, key, n))
        return flat.reshape(n, *self.image_shape)

    def encode(self, x) -> tuple[np.ndarray, np.ndarray]:
        """(N, H, W, C) floats -> encoder (mean, logvar), each (N, latent)."""
        from vaecli.bounds import batch_split

        batches, n = batch_split(np.asarray(x, np.float32), ENCODE_BATCH)
        mean, logvar = self._encode(self.params, batches)
        return tuple(np.asarray(a).reshape(-1, a.shape[-1])[:n] for a in (mean, logvar))


def _pick(split, count: int, seed: int) -> np.ndarray:
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
        means = model.generate(jax.random.key(ctx["seed"]), n)
        return means, {"tiles": means}, "prior samples"
    z = temperature * jax.random.normal(jax.random.key(ctx["seed"]), (n, ctx["latent_dim"]))
    means = model.decode(z)
    return means, {"tiles": means}, f"prior samples, temperature {temperature:g}"


def _pairs_layout(x: np.ndarray, recon: np.ndarray) -> dict:
    """Tiles of blocks of (up to) 8 columns: a row of data over the row of their reconstructions."""
    cols = min(len(x), 8)
    top, bottom = _blank_pad(x, cols), _blank_pad(recon, cols)
    rows = len(top) // cols
    tiles = np.stack([top.reshape(rows, cols, *x.shape[1:]), bottom.reshape(rows, cols, *x.shape[1:])], 1)
    return {"tiles": tiles.reshape(-1, *x.shape[1:]), "cols": cols}


def _recon(model, ctx, n, steps, temperature):
    x = _pick(ctx["split"](), n, ctx["seed"])
    recon = model.decode(model.encode(x)[0])
    return np.stack([x, recon]), _pairs_layout(x, recon), "test images over their reconstructions"


def _interpolate(model, ctx, n, steps, temperature):
    x = _pick(ctx["split"](), 2 * n, ctx["seed"])
    mean = model.encode(x)[0]
    a, b = mean[:n], mean[n:]
    t = np.linspace(0.0, 1.0, steps, dtype=np.float32)[None, :, None]
    path = model.decode((1 - t) * a[:, None] + t * b[:, None])  # (n, steps, H, W, C)
    rows = np.concatenate([x[:n, None], path, x[n:, None]], axis=1)  # data at both ends
    return rows, {"tiles": rows.reshape(-1, *x.shape[1:]), "cols": steps + 2}, \
        f"latent interpolation between test images, {steps} steps"


def traverse_measure(mean: np.ndarray, logvar: np.ndarray, closed_form_kl: bool) -> tuple[str, str, np.ndarray]:
    """What orders the traversal's rows, per latent dimension, over a split's encodings:
    (key, label, values). The mean KL(q‖p) per dimension where the run's KL has a closed form
    (vaecli.choices.closed_form_kl: then it is the run's own KL); otherwise (VampPrior, two
    layers, where the KL to N(0, I) is not the run's KL) the variance over the split of the
    encoder mean, Var_x E[z_d|x], the active-unit statistic, valid for any prior."""
    if closed_form_kl:
        from vaecli.densities import kl_per_dim

        return "kl", "KL", np.asarray(kl_per_dim(mean, logvar)).mean(0)
    return "encoder_mean_variance", "Var", mean.astype(np.float64).var(axis=0)


def _traverse(model, ctx, n, steps, temperature):
    split = ctx["split"]()
    mean, logvar = model.encode(split.images.astype(np.float32) / split.scale)
    measure, short, score = traverse_measure(mean, logvar, ctx["closed_form_kl"])
    order = np.argsort(-score, kind="stable")[: n or ctx["latent_dim"]]
    base = mean[np.random.default_rng(ctx["seed"]).integers(len(mean))]
    values = np.linspace(-TRAVERSE_RANGE, TRAVERSE_RANGE, steps, dtype=np.float32)
    z = np.repeat(np.repeat(base[None, None], len(order), 0), steps, 1)
    z[np.arange(len(order)), :, order] = values
    rows = model.decode(z)  # (dims, steps, H, W, C)
    labels = [f"z{d} {short} {score[d]:.2f}" for d in order]
    extra = {"dims": [int(d) for d in order], "order_by": measure, "dim_measure": [float(score[d]) for d in order]}
    if measure == "kl":
        extra["dim_kl"] = extra["dim_measure"]
    what = ("rows by KL (nats)" if measure == "kl" else
            f"rows by {short} = Var_x E[z_d|x] (active if > {ACTIVE_UNIT_THRESHOLD})")
    sd = " prior sd" if ctx["normal_prior"] else ""
    return rows, {"tiles": rows.reshape(-1, *rows.shape[2:]), "cols": steps, "row_labels": labels, **extra}, \
        f"each dimension from {values[0]:g} to {values[-1]:g}{sd}, {what}"


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


@dataclass(frozen=True)
class Mode:
    """One `vae sample --mode`: draw(model, ctx, n, steps, temperature) -> (array, drawing, what)."""

    draw: Callable
    help: str
    n: int | None = None  # default --n (None: not used, or "all" as `n_help` says)
    n_help: str | None = None  # what --n counts in this mode (None: --n is not used)
    steps: int | None = None  # default --steps (None: not used)
    steps_help: str | None = None


MODES: dict[str, Mode] = {
    "prior": Mode(_prior, "decoded prior draws (--temperature T: z ~ N(0, T²I))", 64, "samples"),
    "recon": Mode(_recon, "test images over their reconstructions", 32, "images"),
    "interpolate": Mode(_interpolate, "decodings along the line between two test images' encodings",
                        8, "pairs", 10, "points per row"),
    "traverse": Mode(_traverse, f"each latent dimension swept over ±{TRAVERSE_RANGE:g} from one test image's "
                     "encoding, rows ordered by KL (closed-form KL) or by the variance of the encoder mean",
                     None, "dimensions shown (all)", 11, "points per row"),
    "manifold": Mode(_manifold, "2-D latents: the decoder over a grid of the latent plane",
                     steps=20, steps_help="grid side"),
    "latents": Mode(_latents, "a scatter of test images' encoder means (2-D, or their first two principal "
                    "components), coloured by label", None, "images encoded (the whole split)"),
}


def help_mode() -> str:
    return "; ".join(f"{name}: {m.help}" for name, m in MODES.items()) + "."


def help_n() -> str:
    return "; ".join(f"{name}: {m.n_help}" + (f" ({m.n})" if m.n is not None else "")
                     for name, m in MODES.items() if m.n_help) + "."


def help_steps() -> str:
    return "; ".join(f"{name}: {m.steps_help} ({m.steps})" for name, m in MODES.items() if m.steps_help) + "."


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
    entry = MODES[mode]
    n = entry.n if n is None else n
    if n is not None and n < 1:
        raise UsageError(f"--n {n}: must be at least 1")
    steps = entry.steps if steps is None else steps
    if steps is not None and steps < 2:
        raise UsageError(f"--steps {steps}: must be at least 2")
    if not temperature > 0:
        raise UsageError(f"--temperature {temperature}: must be > 0")
    from vaecli import choices, data, pictures, runs  # here, not at import: the CLI's help stays quick

    data.check_split(split, "--split")
    run = runs.open_run(run_path)
    if mode == "manifold" and run.config.model.latent_dim != 2:
        raise UsageError(f"--mode manifold draws a 2-D latent plane; this run has model.latent_dim="
                         f"{run.config.model.latent_dim} (use --mode traverse or --mode latents)")
    from vaecli import state as state_lib

    fn, state, chosen, _ = state_lib.load_state(run.config, run.image_shape, run.checkpoint_dir, step, raw_params)
    which = state_lib.params_kind(run.config, raw_params)  # "ema": the run's moving average of the parameters
    model = _Model(fn, state["params"], run.image_shape)
    ctx = {"seed": seed, "latent_dim": run.config.model.latent_dim,
           "normal_prior": choices.standard_normal_prior(run.config.model),
           "closed_form_kl": choices.closed_form_kl(run.config.model),
           "split": lambda: data.load_split(run.config.data, split)}
    array, draw, what = entry.draw(model, ctx, n, steps, temperature)

    out_dir = Path(out) if out is not None else run.path / "samples"
    stem = f"{mode}-step{chosen}-seed{seed}" + (f"-n{n}" if n else "") + (f"-steps{steps}" if steps else "") \
        + (f"-t{temperature:g}" if mode == "prior" and temperature != 1 else "") \
        + ("-raw" if which == "raw" and run.config.train.ema_decay > 0 else "")
    title = f"{run.path.name} step {chosen}{' EMA' if which == 'ema' else ''} {mode}: {what}"
    png = out_dir / f"{stem}.png"
    npy = out_dir / f"{stem}.npy"
    try:
        if "scatter" in draw:
            _scatter_png(draw["scatter"], draw["labels"], draw["axes"], png, title)
        else:
            pictures.save_grid(draw["tiles"], png, title, cols=draw.get("cols"), row_labels=draw.get("row_labels"))
        np.save(npy, array)
        if draw.get("labels") is not None:
            np.save(out_dir / f"{stem}-labels.npy", draw["labels"])
    except OSError as e:  # a read-only run folder, a full disk
        raise storage_error(e, then="write the pictures elsewhere with --out DIR") from e
    result = {"png": str(png), "npy": str(npy), "mode": mode, "step": chosen, "n": n, "seed": seed,
              "shape": list(array.shape), "title": title, "params": which}
    if "dims" in draw:  # traverse: which dimension each row sweeps, and the measure that ordered it
        result.update({k: draw[k] for k in ("dims", "order_by", "dim_measure", "dim_kl") if k in draw})
    if draw.get("labels") is not None:
        result["labels_npy"] = str(out_dir / f"{stem}-labels.npy")
    return result


def training_pictures(fn, params, images: np.ndarray, seed: int, step: int, run_dir: str | Path,
                      title: str) -> tuple[Path, Path]:
    """The pictures training writes at each evaluation, in `vae sample`'s layouts:
    `samples/prior-step{step}.png` (len(images) prior draws, from the key stream
    fold_in(key(seed), epoch._PICTURES)) and `samples/recon-step{step}.png` (the first half
    of `images`, (N, H, W, C) floats in [0, 1], over their reconstructions). Compiles once
    per model `fn`, whatever the number of calls."""
    import jax

    from vaecli import pictures
    from vaecli.epoch import _PICTURES

    images = np.asarray(images, np.float32)
    model = _Model(fn, params, images.shape[1:])
    folder = Path(run_dir) / "samples"
    prior = model.generate(jax.random.fold_in(jax.random.key(seed), _PICTURES), len(images))
    prior_png = pictures.save_grid(prior, folder / f"prior-step{step}.png", f"{title} prior samples")
    x = images[: max(1, len(images) // 2)]
    pairs = _pairs_layout(x, model.decode(model.encode(x)[0]))
    recon_png = pictures.save_grid(pairs["tiles"], folder / f"recon-step{step}.png",
                                   f"{title} validation images over their reconstructions", cols=pairs["cols"])
    return prior_png, recon_png
