"""TFDS name -> the logical splits as uint8 arrays on the host, binarized as the config asks.

A dataset is prepared through TFDS once (vaecli.data.tfds_source), or drawn by vaecli
(vaecli.data.factors.PROCEDURAL: toy_sprites), then read from vaecli's own cache
(vaecli.data.cache). Logical splits: `train`, `validation`, `test`. When the dataset has no
`validation` split, the last `data.val_size` training images are held out as validation
(datasets with factors have one: vaecli.data.factors).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from vaecli import progress
from vaecli.config import DataConfig
from vaecli.data import cache, own_source
from vaecli.data.factors import PROCEDURAL
from vaecli.errors import DataError

SPLITS = ("train", "validation", "test")
STATIC_BINARIZATION_SEED = 0  # fixed: a statically binarized grayscale set is the same everywhere


def check_split(split: str, flag: str | None = None) -> None:
    """The one check of a split name: UsageError naming the command-line `flag` when given
    (`--split`), else DataError."""
    if split in SPLITS:
        return
    if flag is not None:
        from vaecli.errors import UsageError

        raise UsageError(f"{flag} {split!r}: choose one of {', '.join(SPLITS)}")
    raise DataError(f"unknown split '{split}' (choose one of {', '.join(SPLITS)})")


@dataclass(frozen=True)
class Split:
    """One logical split on the host. `images` is uint8 (N, H, W, C); `labels` int (N,) class
    numbers or None; `factors` the factor indices (N, F) of a dataset with factors
    (vaecli.data.factors), else None. `num_classes` and `class_names` (class folder names,
    a TFDS ClassLabel's names, "0", "1", ... of an array file; else None) are the whole
    dataset's, not only this split's."""

    name: str
    images: np.ndarray
    labels: Optional[np.ndarray]
    scale: int  # 1 if `images` are 0/1, 255 if grayscale: pixel probability = images / scale
    factors: Optional[np.ndarray] = None
    num_classes: Optional[int] = None
    class_names: Optional[tuple[str, ...]] = None
    conditioned: bool = False  # `flat` rows end with the one-hot label (with_labels)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    @property
    def flat(self) -> np.ndarray:
        """(N, H·W·C): the layout models and the device-resident copy use; conditioned, (N,
        H·W·C + num_classes), the one-hot label at the pixel scale (0 and `scale`)."""
        x = self.images.reshape(len(self.images), -1)
        if not self.conditioned:
            return x
        onehot = (self.labels[:, None] == np.arange(self.num_classes)[None, :]).astype(x.dtype) * self.scale
        return np.concatenate([x, onehot], axis=1)

    def with_labels(self, num_classes: int) -> "Split":
        """This split as a conditional model (vaecli.models.conditional) reads it."""
        from vaecli.errors import ConfigError

        if self.labels is None:
            raise ConfigError("model.conditional: the conditional VAE needs class labels and these images have none "
                              "(use class folders, y in the .npz, or a TFDS dataset with labels), or set "
                              "model.conditional=false")
        if len(self.labels) and int(self.labels.max()) >= num_classes:
            raise DataError(f"the {self.name} split has label {int(self.labels.max())}, but model.num_classes="
                            f"{num_classes}; raise model.num_classes or leave it null (from the data)")
        return dataclasses.replace(self, num_classes=num_classes, conditioned=True)

    def __len__(self) -> int:
        return len(self.images)



def prepare(cfg: DataConfig) -> dict:
    """Make sure the dataset is in vaecli's cache; return the cache index."""
    if cfg.source != "tfds":
        return own_source.prepare(cfg)
    folder = cache.cache_folder(cfg)
    index = cache.read_index(folder)
    procedural = PROCEDURAL.get(cfg.dataset)
    if procedural is not None and (index is None or index.get("procedural_version") != procedural.version):
        progress.say(f"drawing '{cfg.dataset}' into vaecli's cache at {folder} (once, about a second)")
        splits, table = procedural.build()  # drawn here, then read like any cache
        cache.write_cache(folder, splits, dataset=cfg.dataset, factors=table, procedural_version=procedural.version)
        index = cache.read_index(folder)
    elif index is None:
        from vaecli.data import tfds_source  # TensorFlow only when the cache lacks the dataset

        tfds_source.check_obtainable(cfg, known=cfg.dataset in KNOWN)
        splits, table, classes = tfds_source.prepare(cfg)
        cache.write_cache(folder, splits, dataset=cfg.dataset, factors=table, classes=classes)
        index = cache.read_index(folder)
        progress.say(f"cached '{cfg.dataset}' in {folder} ({sum(f.stat().st_size for f in folder.iterdir()) / 2**20:.1f} "
                     f"MiB); later runs read it from there")
    return index


def check_obtainable(cfg: DataConfig) -> None:
    """DataError at once, before anything heavy is imported, when the dataset is neither in
    vaecli's cache nor obtainable (no files in data.manual_dir, none prepared by TFDS, no
    network); nothing when it may be (TFDS then says more)."""
    if cfg.source != "tfds":
        return own_source.check_path(cfg)
    if cfg.dataset in PROCEDURAL or cache.read_index(cache.cache_folder(cfg)) is not None:
        return
    from vaecli.data import tfds_source

    tfds_source.check_obtainable(cfg, known=cfg.dataset in KNOWN)


def _binarize_static(images: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(STATIC_BINARIZATION_SEED)
    return (rng.random(images.shape, dtype=np.float32) * 255 < images).astype(np.uint8)


def load_split(cfg: DataConfig, split: str) -> Split:
    """One logical split as uint8 arrays, binarized as `data.binarize` asks.

    `static`: binary datasets as they are; grayscale ones sampled once with a fixed seed.
    `dynamic`: the training split stays grayscale (resampled on the device every step);
    validation/test are binarized statically so evaluation numbers are reproducible.
    `none`: pixel intensities in [0, 1] as Bernoulli means (the "continuous" convention).
    """
    check_split(split)
    index = prepare(cfg)
    folder = cache.cache_folder(cfg)
    available = index["splits"]
    source, rows = own_source.pick(cfg, available, split) if cfg.source != "tfds" else _holdout(cfg, available, split)
    if source not in available:
        raise DataError(f"dataset '{cfg.dataset}' has no '{source}' split (it has {', '.join(available)})")
    images, labels = cache.read_split(folder, source)
    factors = cache.read_factors(folder, source) if available[source].get("factors") else None
    if rows is not None:
        images, labels = images[rows], (labels[rows] if labels is not None else None)
        factors = factors[rows] if factors is not None else None
    names = tuple(index["classes"]) if index.get("classes") else None
    classes = dict(num_classes=len(names) if names else _num_classes(folder, available, labels), class_names=names)
    binary = bool(available[source]["binary"])
    if binary:
        return Split(split, images, labels, scale=1, factors=factors, **classes)
    if cfg.binarize == "static" or (cfg.binarize == "dynamic" and split != "train"):
        return Split(split, _binarize_static(images), labels, scale=1, factors=factors, **classes)
    return Split(split, images, labels, scale=255, factors=factors, **classes)


def _holdout(cfg: DataConfig, available: dict, split: str) -> tuple[str, slice | None]:
    """A TFDS dataset without a validation split: its last `data.val_size` training images."""
    if "validation" in available or split == "test":
        return split, None
    n = available["train"]["num_examples"] if "train" in available else 0
    if "train" in available and cfg.val_size >= n:
        raise DataError(f"data.val_size={cfg.val_size} leaves no training images "
                        f"('{cfg.dataset}' train has {n}); lower it")
    return "train", slice(n - cfg.val_size, None) if split == "validation" else slice(None, n - cfg.val_size)


def _num_classes(folder, available: dict, labels) -> Optional[int]:
    """Classes of a labelled dataset whose cache names none: 1 + the largest label of any split."""
    if labels is None:
        return None
    return 1 + max(int(cache.read_split(folder, s)[1].max(initial=-1)) for s in available if available[s]["labels"])


def dataset_name(cfg: DataConfig) -> str:
    """What records and tables call the data: the TFDS name, else the source's file or folder name."""
    return cfg.dataset if cfg.source == "tfds" else f"{Path(cfg.path).name} ({cfg.source})"


def load_model_split(cfg, split: str) -> Split:
    """load_split of a Config's data, as its model reads it: a conditional model's rows hold
    the one-hot label too (Split.with_labels)."""
    s = load_split(cfg.data, split)
    return s.with_labels(cfg.model.num_classes) if cfg.model.conditional else s


# Datasets whose training split is known without preparing them: (image shape, images in
# TFDS's train split, has a validation split, binary). `vae show` uses it for a config whose
# data is not in the cache yet; anything else must be prepared first.
KNOWN = {
    "binarized_mnist": ((28, 28, 1), 50000, True, True),
    "mnist": ((28, 28, 1), 60000, False, False),
    "fashion_mnist": ((28, 28, 1), 60000, False, False),
    "kmnist": ((28, 28, 1), 60000, False, False),
    "cifar10": ((32, 32, 3), 50000, False, False),
    # Datasets with factors: every image in train, validation a subset of it (vaecli.data.factors).
    "toy_sprites": ((64, 64, 1), 3456, True, True),
    "dsprites": ((64, 64, 1), 737280, True, True),
    "shapes3d": ((64, 64, 3), 480000, True, False),
}


def describe_train(cfg: DataConfig) -> dict:
    """What the training split will be, without reading any images: image shape, number of
    images, pixel scale, and where that came from (the cache index, else `KNOWN`). Images of
    one's own are read into the cache first (there is no table of them)."""
    folder = cache.cache_folder(cfg)
    if cfg.source != "tfds":
        available = prepare(cfg)["splits"]
        own_source.pick(cfg, available, "train")  # the held-out sizes checked
        info = available["train"]
        scale = 1 if info["binary"] or cfg.binarize == "static" else 255
        return {"image_shape": tuple(info["shape"]), "num_train": own_source.num_train(cfg, available),
                "scale": scale, "source": f"data cache {folder}"}
    index = cache.read_index(folder)
    if index is not None and "train" in index["splits"]:
        info = index["splits"]["train"]
        shape, n, binary = tuple(info["shape"]), info["num_examples"], info["binary"]
        has_val = "validation" in index["splits"]
        source = f"data cache {folder}"
    elif cfg.dataset in KNOWN:
        shape, n, has_val, binary = KNOWN[cfg.dataset]
        source = f"vaecli's table of known datasets ({cfg.dataset} is not in the cache {folder} yet)"
    else:
        raise DataError(f"dataset '{cfg.dataset}' is not in the cache {folder} and its image shape is not known "
                        f"here: run `vae data prepare {cfg.dataset}` first (or set data.cache_dir)")
    if not has_val:
        if cfg.val_size >= n:
            raise DataError(f"data.val_size={cfg.val_size} leaves no training images "
                            f"('{cfg.dataset}' train has {n}); lower it")
        n -= cfg.val_size
    scale = 1 if binary or cfg.binarize == "static" else 255
    return {"image_shape": shape, "num_train": n, "scale": scale, "source": source}
