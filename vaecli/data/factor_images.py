"""Images for given factor values: what the disentanglement metrics draw their observations
from. A procedural dataset draws them (vaecli.data.factors.PROCEDURAL: toy_sprites); any other
dataset with factors looks them up in its prepared train split, which must hold every
combination of the factors exactly once (dSprites and shapes3d do).

    images = load_factor_images(cfg.data)     # FactorImages: names, sizes, draw, scale
    images.draw(np.array([[0, 2, 5, 3, 3]]))  # uint8 (1, 64, 64, 1)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from vaecli.config import DataConfig
from vaecli.data import cache
from vaecli.data.factors import PROCEDURAL
from vaecli.data.splits import prepare
from vaecli.errors import DataError, UsageError

WITH_FACTORS = ("toy_sprites", "dsprites", "shapes3d")  # named in the error of a dataset without factors


@dataclass(frozen=True)
class FactorImages:
    """A dataset's factors and a way to its images: draw(rows (n, F) of indices) -> uint8
    (n, H, W, C); pixel probability = image / scale (1: binary, 255: intensities)."""

    dataset: str
    names: tuple[str, ...]
    sizes: tuple[int, ...]
    values: Optional[list]
    draw: Callable[[np.ndarray], np.ndarray]
    scale: int
    source: str  # how draw() gets its images, for the protocol


def check_rows(factors, sizes) -> np.ndarray:
    """Factor rows as int64 (n, F) within `sizes`, or a UsageError naming the first bad one."""
    f = np.asarray(factors)
    if f.ndim != 2 or f.shape[1] != len(sizes) or not np.issubdtype(f.dtype, np.integer):
        raise UsageError(f"factors must be an integer array of shape (n, {len(sizes)}), got {f.dtype} {f.shape}")
    bad = (f < 0) | (f >= np.asarray(sizes))
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise UsageError(f"factor {col} must lie in 0..{sizes[col] - 1}, row {row} has {f[row, col]}")
    return f.astype(np.int64)


def grid_positions(factors: np.ndarray, sizes, dataset: str) -> np.ndarray:
    """(prod(sizes),) row of each factor combination (in ravel order), or a DataError unless
    the rows hold every combination exactly once."""
    total = int(np.prod(sizes))
    flat = np.ravel_multi_index(tuple(check_rows(factors, sizes).T), sizes)
    distinct = len(np.unique(flat))
    if len(flat) != total or distinct != total:
        raise DataError(f"dataset '{dataset}': its train split does not hold every combination of its factors "
                        f"exactly once ({len(flat)} images, {distinct} distinct combinations of the "
                        f"{' x '.join(map(str, sizes))} = {total}), so images cannot be looked up by factor values")
    positions = np.empty(total, np.int64)
    positions[flat] = np.arange(total)
    return positions


def load_factor_images(cfg: DataConfig) -> FactorImages:
    """The dataset's factors and its images by factor values (preparing it first if needed);
    DataError for a dataset without factors."""
    index = prepare(cfg)
    table = index.get("factors")
    if table is None:
        raise DataError(f"dataset '{cfg.dataset}' has no factors of variation in vaecli's cache; disentanglement "
                        f"metrics need a dataset with known factors ({', '.join(WITH_FACTORS)})")
    names, sizes = tuple(table["names"]), tuple(int(s) for s in table["sizes"])
    train = index["splits"].get("train", {})
    scale = 1 if train.get("binary", True) else 255
    procedural = PROCEDURAL.get(cfg.dataset)
    if procedural is not None:
        return FactorImages(cfg.dataset, names, sizes, table.get("values"), procedural.draw, scale,
                            f"drawn by vaecli ({cfg.dataset}, version {procedural.version})")
    folder = cache.cache_folder(cfg)
    factors = cache.read_factors(folder, "train")
    if factors is None:
        raise DataError(f"data cache {folder}: the train split has no factor values; delete that folder to "
                        "prepare it again")
    positions = grid_positions(factors, sizes, cfg.dataset)
    rows = cache.read_rows(folder, "train")

    def draw(f):
        return rows(positions[np.ravel_multi_index(tuple(check_rows(f, sizes).T), sizes)])
    return FactorImages(cfg.dataset, names, sizes, table.get("values"), draw, scale,
                        "looked up in the train split (every combination once)")
