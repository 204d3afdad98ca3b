"""Images of one's own (`data.source: folder | arrays`) in vaecli's cache, and their splits.

The cache folder is named after the source path (vaecli.data.cache.cache_folder) and its
index records a fingerprint of the source (image_folder.fingerprint, array_file.fingerprint):
a source whose fingerprint differs is read again, so a changed folder or file is never served
stale. The source is fingerprinted before and after it is read; a difference (files added,
removed or rewritten meanwhile) is an error and the cache stays as it was. A new cache is put
in place whole (cache.write_atomic).

Splits: those the source has (split folders), the others drawn from `train` with
`data.split_seed`: `data.test_size` images as `test`, then `data.val_size` as `validation`,
each kept in the source's order. The config that names them is the run's config.yaml, so
`eval-elbo` and the Python API see the images training saw.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from vaecli import progress
from vaecli.config import DataConfig
from vaecli.data import array_file, cache, image_folder
from vaecli.errors import DataError


def _path(cfg: DataConfig) -> Path:
    return Path(cfg.path).expanduser()


def fingerprint(cfg: DataConfig) -> str:
    if cfg.source == "folder":
        if not _path(cfg).is_dir():
            image_folder.layout(_path(cfg))  # says what it is instead; an empty folder is named when read
        return image_folder.fingerprint(_path(cfg), cfg.image_size)
    return array_file.fingerprint(_path(cfg))


def check_path(cfg: DataConfig) -> None:
    """DataError at once when data.path is missing, or the wrong kind of thing."""
    p = _path(cfg)
    if not p.exists():
        raise DataError(f"data.path {p} does not exist; point it at "
                        f"{'a folder of images' if cfg.source == 'folder' else 'an .npz or .npy file'}")
    if cfg.source == "folder":
        image_folder.layout(p)


def prepare(cfg: DataConfig) -> dict:
    """The cache index of the source, read into the cache when it is not there or changed."""
    folder = cache.cache_folder(cfg)
    before = fingerprint(cfg)
    index = cache.read_index(folder)
    if index is not None and index.get("fingerprint") == before:
        return index
    # said once it is done (a bad file is then the only line), and while it lasts if that is long
    with progress.working(f"reading {_path(cfg)} into vaecli's cache"):
        if cfg.source == "folder":
            splits, classes = image_folder.read(_path(cfg), cfg.image_size)
        else:
            splits, classes = array_file.read(_path(cfg))
    if fingerprint(cfg) != before:
        raise DataError(f"{_path(cfg)} changed while it was read (files added, removed or rewritten); the cache "
                        "was left as it was: run again once it is still")
    cache.write_atomic(folder, splits, dataset=f"{_path(cfg).name} ({cfg.source})", source=str(_path(cfg)),
                       fingerprint=before, classes=classes)
    again = " (it changed since it was cached)" if index is not None else ""
    progress.say(f"cached {_path(cfg)}{again} in {folder}; later runs read it from there while it is unchanged")
    return cache.read_index(folder)


def drawn(cfg: DataConfig, available: dict) -> dict[str, int]:
    """{split: number of images} drawn from `train` (the splits the source lacks)."""
    return {s: n for s, n in (("test", cfg.test_size), ("validation", cfg.val_size)) if s not in available}


def pick(cfg: DataConfig, available: dict, split: str) -> tuple[str, np.ndarray | None]:
    """(the cached split that holds `split`, the rows of it that are `split`; None: all)."""
    draws = drawn(cfg, available)
    if split not in draws and split != "train":
        return split, None
    n = available["train"]["num_examples"]
    if sum(draws.values()) >= n:
        asked = " + ".join(f"data.{'val' if s == 'validation' else s}_size={k}" for s, k in draws.items())
        raise DataError(f"{asked} leave no training images ({_path(cfg)} has {n} in train); lower them")
    order = np.random.default_rng(cfg.split_seed).permutation(n)
    taken, at = {}, 0
    for s, k in draws.items():
        taken[s], at = np.sort(order[at:at + k]), at + k
    return "train", (np.sort(order[at:]) if split == "train" else taken[split])


def num_train(cfg: DataConfig, available: dict) -> int:
    return available["train"]["num_examples"] - sum(drawn(cfg, available).values())
