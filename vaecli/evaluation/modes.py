"""`vae sample`'s modes, one registry entry each: its draw function, its default --n and
--steps and its help (the CLI's help is built from it). Adding a mode is one entry here
(and its test).

A draw function takes (model, ctx, n, steps, temperature): `model` the run's compiled
encoder/decoder (vaecli.compiled.encode_decode.CompiledModel), `ctx` what it may need of the
run (seed, latent_dim, normal_prior, closed_form_kl, and `split()` loading the images),
and returns (array, drawing, what): the array saved as .npy, the drawing (grid tiles and
layout, or a scatter), and the words for the title. Pictures show mean images E[x|z].
Importable without JAX (the CLI reads `MODES` for its help); drawing imports it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from vaecli import pictures
from vaecli.errors import UsageError

TRAVERSE_RANGE = 3.0  # prior standard deviations either side of zero
MANIFOLD_QUANTILES = (0.05, 0.95)


def _rows(split, count: int, seed: int) -> np.ndarray:
    """Which `count` distinct images of the split `_pick` takes with `seed`."""
    if count > len(split):
        raise UsageError(f"--n {count}: the {split.name} split has only {len(split)} images")
    return np.sort(np.random.default_rng(seed).choice(len(split), count, replace=False))


def _pick(split, count: int, seed: int) -> np.ndarray:
    """`count` distinct images of the split, drawn with `seed`, as floats in [0, 1]."""
    return split.images[_rows(split, count, seed)].astype(np.float32) / split.scale


def _prior(model, ctx, n, steps, temperature):
    import jax

    if ctx.get("num_classes"):
        return _prior_by_class(model, ctx, n, temperature)
    if ctx.get("code_prior") is not None:  # a VQ-VAE: codes from its autoregressive prior
        means = ctx["code_prior"](n, temperature, ctx["seed"])
        return means, {"tiles": means}, f"codes from the code prior, temperature {temperature:g}"
    if not ctx["normal_prior"]:  # VampPrior or two stochastic layers: the model's own sampler
        if temperature != 1.0:
            raise UsageError("--temperature scales a standard-normal prior; this run's prior is not one "
                             "(VampPrior or two stochastic layers): leave it at 1")
        means = model.generate(jax.random.key(ctx["seed"]), n)
        return means, {"tiles": means}, "prior samples"
    z = temperature * jax.random.normal(jax.random.key(ctx["seed"]), (n, ctx["latent_dim"]))
    means = model.decode(z)
    return means, {"tiles": means}, f"prior samples, temperature {temperature:g}"


def _prior_by_class(model, ctx, n, temperature):
    """A conditional run: n draws of class ctx["label"]; without one, a row per class, the same
    n // classes draws of z in every row (so a column is one z under each label)."""
    import jax

    key, c = jax.random.key(ctx["seed"]), ctx["num_classes"]
    if ctx.get("label") is not None:
        means = model.decode(temperature * np.asarray(jax.random.normal(key, (n, ctx["latent_dim"]))), ctx["label"])
        return means, {"tiles": means}, f"prior samples of class {ctx['label']}, temperature {temperature:g}"
    cols = max(1, n // c)
    z = temperature * np.asarray(jax.random.normal(key, (cols, ctx["latent_dim"])))
    rows = model.decode(np.broadcast_to(z, (c, cols, z.shape[-1])), np.arange(c)[:, None])  # (c, cols, H, W, C)
    names = ctx.get("class_names") or [str(i) for i in range(c)]
    return rows, {"tiles": rows.reshape(-1, *rows.shape[2:]), "cols": cols, "row_labels": list(names)}, \
        f"prior samples, a row per class, temperature {temperature:g}"


def _recon(model, ctx, n, steps, temperature):
    split = ctx["split"]()
    x = _pick(split, n, ctx["seed"])
    y = split.labels[_rows(split, n, ctx["seed"])] if ctx.get("num_classes") else None  # a conditional run's
    recon = model.decode(model.encode(x, y)[0], y)
    return np.stack([x, recon]), pictures.pairs_layout(x, recon), "test images over their reconstructions"


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
    (vaecli.registry.closed_form_kl: then it is the run's own KL); otherwise (VampPrior, two
    layers, where the KL to N(0, I) is not the run's KL) the variance over the split of the
    encoder mean, Var_x E[z_d|x], the active-unit statistic, valid for any prior."""
    if closed_form_kl:
        from vaecli.models.densities import kl_per_dim

        return "kl", "KL", np.asarray(kl_per_dim(mean, logvar)).mean(0)
    return "encoder_mean_variance", "Var", mean.astype(np.float64).var(axis=0)


def _traverse(model, ctx, n, steps, temperature):
    from vaecli.compiled.summaries import ACTIVE_UNIT_THRESHOLD

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
    # The animation: frame t shows every dimension at the t-th value, one tile each.
    extra["frames"] = np.swapaxes(rows, 0, 1)
    tiles = " ".join(f"z{d}" for d in order)
    extra["frame_labels"] = [f"z = {v:+.2f} in each tile ({tiles})" for v in values]
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
    animates: bool = False  # --gif: the drawing also has `frames` and `frame_labels`, written as a GIF


MODES: dict[str, Mode] = {
    "prior": Mode(_prior, "decoded prior draws (--temperature T: z ~ N(0, T²I); a VQ-VAE: codes from its "
                  "trained code prior, logits / T)", 64, "samples"),
    "recon": Mode(_recon, "test images over their reconstructions", 32, "images"),
    "interpolate": Mode(_interpolate, "decodings along the line between two test images' encodings",
                        8, "pairs", 10, "points per row"),
    "traverse": Mode(_traverse, f"each latent dimension swept over ±{TRAVERSE_RANGE:g} from one test image's "
                     "encoding, rows ordered by KL (closed-form KL) or by the variance of the encoder mean; "
                     "with --gif also an animated GIF beside the PNG, one frame per point of the sweep, "
                     "one tile per dimension in each",
                     None, "dimensions shown (all)", 11, "points per row", animates=True),
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
