"""Every picture vaecli writes, drawn here: image grids as PNG files (Pillow) with a title
strip naming what they show, the layouts of those grids, and matplotlib figures (the object
API on the Agg backend: no pyplot state, no display) for scatters and curves. Files are
written atomically (vaecli.files): a full disk leaves no half PNG. No JAX here.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from vaecli import files

PAD = 2  # gutter between tiles, pixels before scaling
TITLE_STRIP = 16  # pixels of title above the grid (after scaling)
LABEL_WIDTH = 64  # pixels of row labels left of the grid (after scaling), when there are labels


def grid(images: np.ndarray, cols: int | None = None, pad: int = PAD) -> np.ndarray:
    """(N, H, W, C) in [0, 1] -> one (rows·H, cols·W, C) uint8 mosaic with white gutters.

    A tile that is all NaN is left blank (white): it pads a row of a layout."""
    images = np.asarray(images, np.float32)
    n, h, w, c = images.shape
    cols = cols or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / cols)
    out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), 255, np.uint8)
    tiles = (np.clip(np.nan_to_num(images, nan=1.0), 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
    for i in range(n):
        r, q = divmod(i, cols)
        y, x = pad + r * (h + pad), pad + q * (w + pad)
        out[y:y + h, x:x + w] = tiles[i]
    return out


def save_grid(images: np.ndarray, path: Path, title: str = "", cols: int | None = None,
              scale: int = 2, row_labels: list[str] | None = None) -> Path:
    """Write the grid of `images` as an RGB PNG, `scale`× enlarged, with `title` on a strip
    above it and, when given, one label per row on a strip to its left."""
    from PIL import Image, ImageDraw

    mosaic = grid(images, cols)
    img = Image.fromarray(mosaic[..., 0] if mosaic.shape[-1] == 1 else mosaic)
    img = img.resize((img.width * scale, img.height * scale), Image.NEAREST).convert("RGB")
    left = LABEL_WIDTH if row_labels else 0
    top = TITLE_STRIP if title else 0
    if left or top:
        # A narrow grid gets a wider canvas rather than a cut-off title.
        title_w = math.ceil(ImageDraw.Draw(img).textlength(title)) + 8 if title else 0
        canvas = Image.new("RGB", (max(img.width + left, title_w), img.height + top), "white")
        canvas.paste(img, (left, top))
        draw = ImageDraw.Draw(canvas)
        if title:
            draw.text((4, 2), title, fill="black")
        if row_labels:
            tile_h = (images.shape[1] + PAD) * scale
            for r, label in enumerate(row_labels):
                draw.text((4, top + PAD * scale + r * tile_h + tile_h // 2 - 6), label, fill="black")
        img = canvas
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    files.write_with(path, lambda f: img.save(f, format="PNG"))  # a full disk leaves no half PNG
    return path


def save_gif(frames: np.ndarray, path: Path, labels: list[str], cols: int | None = None, scale: int = 2,
             frame_ms: int = 150) -> Path:
    """Write an animated GIF (looping) of `frames` (T, N, H, W, C) in [0, 1]: frame t is the
    grid of its N tiles, `labels[t]` on a strip above it. The frames play forward, then back,
    so the loop has no jump."""
    from PIL import Image, ImageDraw

    pictures = []
    for tiles, label in zip(frames, labels):
        mosaic = grid(tiles, cols)
        img = Image.fromarray(mosaic[..., 0] if mosaic.shape[-1] == 1 else mosaic)
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST).convert("RGB")
        canvas = Image.new("RGB", (img.width, img.height + TITLE_STRIP), "white")
        canvas.paste(img, (0, TITLE_STRIP))
        ImageDraw.Draw(canvas).text((4, 2), label, fill="black")
        pictures.append(canvas)
    loop = pictures + pictures[-2:0:-1]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    files.write_with(path, lambda f: loop[0].save(f, format="GIF", save_all=True, append_images=loop[1:],
                                                  duration=frame_ms, loop=0))
    return path


def blank_pad(images: np.ndarray, cols: int) -> np.ndarray:
    """Pad (N, ...) with all-NaN tiles (drawn blank) to whole rows of `cols`."""
    missing = -len(images) % cols
    return np.concatenate([images, np.full((missing, *images.shape[1:]), np.nan, np.float32)])


def pairs_layout(x: np.ndarray, recon: np.ndarray) -> dict:
    """Tiles of blocks of (up to) 8 columns: a row of data over the row of their reconstructions."""
    cols = min(len(x), 8)
    top, bottom = blank_pad(x, cols), blank_pad(recon, cols)
    rows = len(top) // cols
    tiles = np.stack([top.reshape(rows, cols, *x.shape[1:]), bottom.reshape(rows, cols, *x.shape[1:])], 1)
    return {"tiles": tiles.reshape(-1, *x.shape[1:]), "cols": cols}


def figure(**kwargs):
    """A matplotlib Figure of the object API: no pyplot state, no display needed."""
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def save_figure(fig, path: Path, dpi: int | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    files.write_with(path, lambda f: fig.savefig(f, format="png", dpi=dpi or "figure"))
    return path


def save_scatter(points, labels, axes, path: Path, title: str) -> Path:
    """Points (N, 2), coloured by integer `labels` when given, with axis names `axes`."""
    fig = figure(figsize=(6, 6), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    if labels is None:
        ax.scatter(points[:, 0], points[:, 1], s=2, alpha=0.5, color="tab:blue", linewidths=0)
    else:
        sc = ax.scatter(points[:, 0], points[:, 1], s=2, alpha=0.6, c=labels, cmap="tab10", linewidths=0)
        fig.colorbar(sc, ax=ax, label="label")
    ax.set_xlabel(axes[0])
    ax.set_ylabel(axes[1])
    ax.set_title(title.replace(": ", "\n", 1), fontsize=9)
    return save_figure(fig, path)
