"""The pictures training writes at each evaluation, in `vae sample`'s prior and recon layouts."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from vaecli import pictures, streams
from vaecli.compiled.encode_decode import CompiledModel
from vaecli.rundir.names import Folder, Output


def training_pictures(fn, params, images: np.ndarray, seed: int, step: int, run_dir: str | Path,
                      title: str, labels: np.ndarray | None = None, num_classes: int | None = None) -> tuple[Path, Path]:
    """`samples/prior-step{step}.png` (len(images) prior draws, from the key stream
    fold_in(key(seed), streams.PICTURES)) and `samples/recon-step{step}.png` (the first half
    of `images`, (N, H, W, C) floats in [0, 1], over their reconstructions). Compiles once
    per model `fn`, whatever the number of calls. A conditional model's: `labels` of the
    images and its `num_classes` (the prior draws then take the classes in turn)."""
    import jax

    images = np.asarray(images, np.float32)
    model = CompiledModel(fn, params, images.shape[1:], num_classes)
    folder = Folder(run_dir)
    prior = model.generate(jax.random.fold_in(jax.random.key(seed), streams.PICTURES), len(images))
    prior_png = pictures.save_grid(prior, folder.output(Output("picture", step, mode="prior")),
                                   f"{title} prior samples")
    x = images[: max(1, len(images) // 2)]
    y = None if labels is None else labels[: len(x)]
    pairs = pictures.pairs_layout(x, model.decode(model.encode(x, y)[0], y))
    recon_png = pictures.save_grid(pairs["tiles"], folder.output(Output("picture", step, mode="recon")),
                                   f"{title} validation images over their reconstructions", cols=pairs["cols"])
    return prior_png, recon_png
