"""`vae plot`: training and validation curves of one or more runs from their metrics.jsonl.

One PNG with four panels (loss = −ELBO, reconstruction, KL, training examples/s) against
the step; one colour per run, solid lines for training, dashed with dots for validation.
Beside it, the plotted numbers as .npy: a float64 array with one row per log point and
the columns of `COLUMNS` (`run` is the index of the run in the command line, `split` is
0 for train and 1 for validation, NaN where a log point lacks a value).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from vaecli import pictures
from vaecli.errors import RunError, UsageError, storage_error
from vaecli.rundir import layout, metrics

PANELS = (("loss", "loss (−ELBO), nats"), ("recon", "reconstruction −E[log p(x|z)], nats"),
          ("kl", "KL(q‖p), nats"), ("examples_per_s", "training examples / s"))
SPLITS = ("train", "validation")
COLUMNS = ("run", "split", "step", *(key for key, _ in PANELS))


def _records(run: layout.Run) -> list[dict]:
    path = run.metrics_file
    if not path.is_file():
        raise RunError(f"{run.path} has no metrics.jsonl (no epoch of it has finished)")
    records = metrics.read(run.path)
    if not any(r.get("split") in SPLITS and "step" in r for r in records):
        raise RunError(f"{path} has no log points yet (no epoch of the run has finished)")
    return records


def _value(record: dict, key: str) -> float:
    v = record.get(key)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan


def plot_curves(run_paths: list[str | Path], out: str | Path | None = None) -> dict:
    """Draw the curves of `run_paths` into `out` (a .png; with one run it defaults to
    RUN/plots/curves-step<S>.png); write the numbers beside it as .npy; return both paths."""
    if not run_paths:
        raise UsageError("vae plot: name at least one run folder")
    if out is None and len(run_paths) > 1:
        raise UsageError("--out: several runs share one figure; name the PNG to write, e.g. --out compare.png")
    if out is not None and Path(out).suffix.lower() != ".png":
        raise UsageError(f"--out {out}: the figure is a PNG; give a path ending in .png")
    if out is not None and not Path(out).parent.is_dir():
        raise UsageError(f"--out {out}: folder {Path(out).parent} does not exist; create it first")
    opened = [layout.open_run(p) for p in run_paths]
    records = [_records(run) for run in opened]

    fig = pictures.figure(figsize=(12, 8), dpi=100, layout="constrained")
    axes = list(fig.subplots(2, 2).flat)
    rows, names = [], []
    for i, (run, recs) in enumerate(zip(opened, records)):
        last = max(r["step"] for r in recs if "step" in r)
        names.append(f"{run.path.name} step {last}")
        for s, split in enumerate(SPLITS):
            points = sorted((r for r in recs if r.get("split") == split and "step" in r), key=lambda r: r["step"])
            table = np.array([[i, s, r["step"], *(_value(r, key) for key, _ in PANELS)] for r in points],
                             np.float64).reshape(-1, len(COLUMNS))
            rows.append(table)
            for ax, (j, (key, label)) in zip(axes, enumerate(PANELS)):
                y = table[:, 3 + j]
                if np.isfinite(y).any():
                    ax.plot(table[:, 2], y, "-" if split == "train" else "--", marker="" if split == "train" else ".",
                            color=f"C{i % 10}", label=f"{run.path.name} {split}")
    for ax, (_, label) in zip(axes, PANELS):
        ax.set_xlabel("step")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    title = "training curves: " + "; ".join(names)
    fig.suptitle(title, fontsize=10)

    png = Path(out) if out is not None else opened[0].output(layout.Output("curves", last))
    npy = png.with_suffix(".npy")
    try:
        pictures.save_figure(fig, png)
        np.save(npy, np.concatenate(rows))
    except OSError as e:  # a read-only run folder, a full disk
        raise storage_error(e, then="write the figure elsewhere with --out FILE.png") from e
    return {"png": str(png), "npy": str(npy), "runs": [str(r.path) for r in opened], "title": title}
