"""Datasets with known factors of variation (dSprites, shapes3d, toy_sprites): their splits,
their factor table, and the procedural ones vaecli makes itself.

Splits. dSprites and shapes3d come as one set holding every combination of their factors
once, with no train/test split. vaecli keeps every image in `train`, as
disentanglement_lib trains and scores on the whole set (an unsupervised model, and metrics
that sample factors from the whole grid); `validation` and `test` are fixed random subsets
of it (`subset_size` images each, disjoint from each other, drawn with SPLIT_SEED), so the
ELBO of a training curve or of `vae eval-elbo` is measured on images the model trained on.
A factor dataset that has a validation or test split of its own keeps it.

The factor table (index.json's `factors`): `names`, `sizes` (values per factor) and `values`
(what each index stands for, per factor, or null where not known); the split files hold the
indices.

Procedural datasets are made on first use and written to the cache, as TFDS would prepare
one: PROCEDURAL[name] builds the splits and the table, and draws images for given factor
rows. A cache made by another `version` of the drawing is made again.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from vaecli.data import toy_sprites

SPLIT_SEED = 0
EVAL_SUBSET = 10000  # images in each of validation and test (fewer for a small set: a quarter each)


def subset_size(n: int) -> int:
    return min(EVAL_SUBSET, n // 4)


def factor_splits(images: np.ndarray, factors: np.ndarray, labels: Optional[np.ndarray] = None) -> dict:
    """{train: every image, validation, test: fixed random subsets}, each with its factor rows."""
    k = subset_size(len(images))
    order = np.random.default_rng(SPLIT_SEED).permutation(len(images))
    # Each subset in the order of the whole set, so that an image's place says nothing new.
    picks = {"validation": np.sort(order[:k]), "test": np.sort(order[k:2 * k])}
    out = {"train": {"images": images, "labels": labels, "factors": factors}}
    for name, idx in picks.items():
        out[name] = {"images": images[idx], "labels": None if labels is None else labels[idx],
                     "factors": factors[idx]}
    return out


def factor_table(names, sizes, values=None) -> dict:
    """index.json's `factors` entry: names, sizes, and per factor the value of each index (or None)."""
    names, sizes = [str(n) for n in names], [int(s) for s in sizes]
    if values is not None:
        values = [None if v is None else list(v) for v in values]
    return {"names": names, "sizes": sizes, "values": values}


def values_of(indices: np.ndarray, values: np.ndarray, size: int) -> Optional[list]:
    """The value each factor index stands for, from the (index, value) pairs of the images;
    None unless every image with one index has the same value (mock data has random ones)."""
    table = np.zeros(size, np.float64)
    table[indices] = values
    seen = np.zeros(size, bool)
    seen[indices] = True
    if not seen.all() or not np.allclose(table[indices], values):
        return None
    return [float(v) for v in table]


@dataclass(frozen=True)
class Procedural:
    """A dataset vaecli draws itself: build() -> (splits for write_cache, factor table);
    draw(factor rows (n, F)) -> uint8 images (n, H, W, C)."""

    version: int
    build: Callable[[], tuple[dict, dict]]
    draw: Callable[[np.ndarray], np.ndarray]
    help: str


def _toy_sprites() -> tuple[dict, dict]:
    images, factors = toy_sprites.dataset()
    values = [toy_sprites.FACTOR_VALUES[name] for name in toy_sprites.FACTOR_NAMES]
    return factor_splits(images, factors), factor_table(toy_sprites.FACTOR_NAMES, toy_sprites.FACTOR_SIZES, values)


PROCEDURAL: dict[str, Procedural] = {
    "toy_sprites": Procedural(1, _toy_sprites, toy_sprites.draw,
                              f"{toy_sprites.NUM_IMAGES} binary 64x64 sprites, factors "
                              + " x ".join(f"{n} {s}" for n, s in zip(toy_sprites.FACTOR_NAMES,
                                                                     toy_sprites.FACTOR_SIZES))),
}
