"""Image grids as PNG files (Pillow), with a title strip naming what the grid shows."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np


def grid(images: np.ndarray, cols: int | None = None, pad: int = 2) -> np.ndarray:
    """(N, H, W, C) in [0, 1] -> one (rows·H, cols·W, C) uint8 mosaic with white gutters."""
    images = np.asarray(images, np.float32)
    n, h, w, c = images.shape
    cols = cols or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / cols)
    out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), 255, np.uint8)
    tiles = (np.clip(images, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
    for i in range(n):
        r, q = divmod(i, cols)
        y, x = pad + r * (h + pad), pad + q * (w + pad)
        out[y:y + h, x:x + w] = tiles[i]
    return out


def save_grid(images: np.ndarray, path: Path, title: str = "", cols: int | None = None,
              scale: int = 2) -> Path:
    from PIL import Image, ImageDraw

    mosaic = grid(images, cols)
    img = Image.fromarray(mosaic[..., 0] if mosaic.shape[-1] == 1 else mosaic)
    img = img.resize((img.width * scale, img.height * scale), Image.NEAREST).convert("RGB")
    if title:
        strip = 16
        canvas = Image.new("RGB", (img.width, img.height + strip), "white")
        canvas.paste(img, (0, strip))
        ImageDraw.Draw(canvas).text((4, 2), title, fill="black")
        img = canvas
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path
