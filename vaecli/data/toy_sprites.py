"""Toy sprites: 64x64 binary images of a shape on a small grid of known factors, made here.

In the spirit of dSprites (shape, scale, orientation, x and y position, every combination
exactly once, the last factor varying fastest), small enough to draw in about a second and
needing no download, so disentanglement metrics can be tested on real images offline.

    images, factors = dataset()      # (3456, 64, 64, 1) uint8 in {0, 1}; (3456, 5) int64
    draw(factors[[0, 5]])            # the same images, drawn again for any factor rows
    index_of(factors) == arange(3456);  factors_of(i) is the row of image i

A factor value is an index: `FACTOR_VALUES[name][index]` is what it means (shape name, radius
in pixels, angle in degrees, centre in pixels).
"""
from __future__ import annotations

import functools

import numpy as np

from vaecli.errors import UsageError

SIZE = 64
FACTOR_VALUES = {
    "shape": ("square", "ellipse", "heart"),
    "scale": (6.0, 8.5, 11.0),  # radius of the shape's outline, pixels
    # A quarter turn in six steps: a square turned by 90 degrees is the same square, so over a
    # full turn some orientations would draw identical images.
    "orientation": tuple(15.0 * k for k in range(6)),
    # Centres 5 pixels apart, symmetric about the image centre; the largest shape stays inside.
    "pos_x": tuple(14 + 5 * k for k in range(8)),
    "pos_y": tuple(14 + 5 * k for k in range(8)),
}
FACTOR_NAMES = tuple(FACTOR_VALUES)
FACTOR_SIZES = tuple(len(v) for v in FACTOR_VALUES.values())
NUM_IMAGES = int(np.prod(FACTOR_SIZES))

_BOX = 28  # side of the square each sprite is drawn in, before it is placed at its position
_SUPER = 4  # drawn at 4x and averaged down, so edges are thresholded areas, not jagged lines


def _outline(shape: str) -> np.ndarray:
    """Polygon (m, 2) of the shape at radius 1 around the origin, y pointing down."""
    t = np.linspace(0.0, 2.0 * np.pi, 96, endpoint=False)
    if shape == "square":
        s = 1.0 / np.sqrt(2.0)  # corners on the unit circle
        return np.array([[-s, -s], [s, -s], [s, s], [-s, s]])
    if shape == "ellipse":
        return np.stack([np.cos(t), 0.5 * np.sin(t)], axis=1)
    # The classic heart curve, scaled to about radius 1 and centred on its bounding box.
    x = 16.0 * np.sin(t) ** 3
    y = -(13.0 * np.cos(t) - 5.0 * np.cos(2 * t) - 2.0 * np.cos(3 * t) - np.cos(4 * t))
    y = y - (y.max() + y.min()) / 2.0
    return np.stack([x, y], axis=1) / 17.0


@functools.lru_cache(maxsize=1)
def _sprites() -> np.ndarray:
    """Every (shape, scale, orientation) sprite once: (3, 3, 6, _BOX, _BOX) uint8. Positions
    are integer shifts of these, so moving a sprite changes nothing but where it is."""
    from PIL import Image, ImageDraw  # here, not at import: vaecli.data is imported by every command

    shapes, scales, angles = (FACTOR_VALUES[k] for k in ("shape", "scale", "orientation"))
    out = np.zeros((len(shapes), len(scales), len(angles), _BOX, _BOX), np.uint8)
    big = _BOX * _SUPER
    for i, shape in enumerate(shapes):
        base = _outline(shape)
        for j, radius in enumerate(scales):
            for k, degrees in enumerate(angles):
                a = np.deg2rad(degrees)
                rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
                pts = (base @ rot.T) * radius * _SUPER + big / 2.0
                canvas = Image.new("L", (big, big), 0)
                ImageDraw.Draw(canvas).polygon([tuple(p) for p in pts], fill=255)
                area = np.asarray(canvas, np.float32).reshape(_BOX, _SUPER, _BOX, _SUPER).mean((1, 3))
                out[i, j, k] = area >= 127.5
    return out


def _check(factors) -> np.ndarray:
    f = np.asarray(factors)
    if f.ndim != 2 or f.shape[1] != len(FACTOR_SIZES) or not np.issubdtype(f.dtype, np.integer):
        raise UsageError(f"factors must be an integer array of shape (n, {len(FACTOR_SIZES)}), got "
                         f"{f.dtype} {f.shape}")
    bad = (f < 0) | (f >= np.array(FACTOR_SIZES))
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise UsageError(f"factor {FACTOR_NAMES[col]} must lie in 0..{FACTOR_SIZES[col] - 1}, "
                         f"row {row} has {f[row, col]}")
    return f.astype(np.int64)


def draw(factors) -> np.ndarray:
    """Images (n, 64, 64, 1) uint8 in {0, 1} for factor rows (n, 5) of indices. Deterministic:
    the same row always gives the same image."""
    f = _check(factors)
    sprites = _sprites()[f[:, 0], f[:, 1], f[:, 2]]  # (n, _BOX, _BOX)
    x0 = np.array(FACTOR_VALUES["pos_x"])[f[:, 3]] - _BOX // 2
    y0 = np.array(FACTOR_VALUES["pos_y"])[f[:, 4]] - _BOX // 2
    box = np.arange(_BOX)
    images = np.zeros((len(f), SIZE, SIZE), np.uint8)
    # One scatter places every sprite: no Python loop over images.
    n = np.arange(len(f))[:, None, None]
    images[n, y0[:, None, None] + box[None, :, None], x0[:, None, None] + box[None, None, :]] = sprites
    return images[..., None]


def factors_of(index) -> np.ndarray:
    """Factor rows (n, 5) of image indices in the canonical order (last factor fastest)."""
    idx = np.asarray(index, np.int64)
    if ((idx < 0) | (idx >= NUM_IMAGES)).any():
        raise UsageError(f"image index must lie in 0..{NUM_IMAGES - 1}")
    return np.stack(np.unravel_index(idx, FACTOR_SIZES), axis=-1).astype(np.int64)


def index_of(factors) -> np.ndarray:
    """Indices of factor rows (n, 5) in the canonical order: the inverse of factors_of."""
    return np.ravel_multi_index(tuple(_check(factors).T), FACTOR_SIZES).astype(np.int64)


def dataset() -> tuple[np.ndarray, np.ndarray]:
    """The whole grid in canonical order: images (N, 64, 64, 1) uint8 and factors (N, 5)."""
    factors = factors_of(np.arange(NUM_IMAGES))
    return draw(factors), factors
