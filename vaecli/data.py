"""TFDS name -> prepared, cached uint8 arrays; the binarization modes.

A dataset is prepared through TFDS once (its `data_dir` and `manual_dir` honoured), then
every split is written to vaecli's own cache as compact arrays: bit-packed when the
images are binary, uint8 otherwise. Later runs, and machines without TensorFlow/TFDS
(a GPU box), read the cache in a fraction of a second without importing either.

Logical splits: `train`, `validation`, `test`. When the dataset has no `validation`
split, the last `data.val_size` training images are held out as validation.
"""
from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from vaecli import files
from vaecli.config import DataConfig
from vaecli.errors import DataError

CACHE_FORMAT = 1
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
    """One logical split on the host. `images` is uint8 (N, H, W, C)."""

    name: str
    images: np.ndarray
    labels: Optional[np.ndarray]
    scale: int  # 1 if `images` are 0/1, 255 if grayscale: pixel probability = images / scale

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    @property
    def flat(self) -> np.ndarray:
        """(N, H·W·C): the layout models and the device-resident copy use."""
        return self.images.reshape(len(self.images), -1)

    def __len__(self) -> int:
        return len(self.images)


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "vaecli" / "data"


def cache_folder(cfg: DataConfig) -> Path:
    root = Path(cfg.cache_dir).expanduser() if cfg.cache_dir else default_cache_dir()
    return root / cfg.dataset.replace(":", "-").replace("/", "-")


# ------------------------------------------------------------------------------ cache


def write_cache(folder: Path, splits: dict[str, dict[str, np.ndarray]], dataset: Optional[str] = None) -> None:
    """Write {split: {"images": uint8 (N, H, W, C), "labels": ... or None}} as a dataset cache.

    Used after TFDS preparation, and by tests (or users) to bring arrays of their own.
    """
    folder.mkdir(parents=True, exist_ok=True)
    index = {"format": CACHE_FORMAT, "dataset": dataset or folder.name, "splits": {}}
    for name, arrays in splits.items():
        images = arrays["images"]
        binary = bool(images.max(initial=0) <= 1)
        payload = {"shape": np.asarray(images.shape, np.int64)}
        if binary:  # 8 pixels a byte: binarized MNIST's three splits fit in 7 MB
            payload["bits"] = np.packbits(images.reshape(len(images), -1), axis=1)
        else:
            payload["images"] = images
        if arrays.get("labels") is not None:
            payload["labels"] = arrays["labels"]
        files.write_with(folder / f"{name}.npz", lambda f: np.savez_compressed(f, **payload))
        index["splits"][name] = {"num_examples": int(len(images)), "shape": list(images.shape[1:]),
                                 "binary": binary, "labels": arrays.get("labels") is not None}
    # The index is written last: its presence means every split file is complete.
    files.write_text(folder / "index.json", json.dumps(index, indent=1))


def _read_index(folder: Path) -> Optional[dict]:
    try:
        index = json.loads((folder / "index.json").read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise DataError(f"data cache {folder} is unreadable ({e}); delete that folder to rebuild it") from None
    if index.get("format") != CACHE_FORMAT:
        raise DataError(f"data cache {folder} has format {index.get('format')}, expected {CACHE_FORMAT}; "
                        "delete that folder to rebuild it")
    return index


def _read_cached_split(folder: Path, name: str) -> tuple[np.ndarray, Optional[np.ndarray]]:
    try:
        with np.load(folder / f"{name}.npz") as z:
            shape = tuple(int(s) for s in z["shape"])
            if "bits" in z:
                d = int(np.prod(shape[1:]))
                images = np.unpackbits(z["bits"], axis=1, count=d).reshape(shape)
            else:
                images = z["images"]
            labels = z["labels"] if "labels" in z else None
    except (OSError, ValueError, KeyError) as e:
        raise DataError(f"data cache file {folder / (name + '.npz')} is damaged ({e}); "
                        f"delete {folder} to rebuild it") from None
    return images, labels


# ------------------------------------------------------------------------------- TFDS


def _network_available(host: str = "storage.googleapis.com", timeout: float = 3.0) -> bool:
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _offline_message(cfg: DataConfig, detail: str = "") -> str:
    return (f"cannot download dataset '{cfg.dataset}' (no network{detail}): put the files TFDS would "
            f"download in a folder and pass --set data.manual_dir=PATH "
            f"(e.g. --set data.manual_dir=../shared/data/binarized_mnist)")


def _prepare_with_tfds(cfg: DataConfig) -> dict[str, dict[str, np.ndarray]]:
    """Run TFDS's download_and_prepare once and return every split as numpy arrays."""
    try:
        import tensorflow as tf
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise DataError(f"dataset '{cfg.dataset}' is not in vaecli's cache ({cache_folder(cfg)}) and "
                        f"TensorFlow Datasets cannot be imported here ({e}); prepare it on a machine "
                        f"with `pip install -e .` and copy the cache folder, or set data.cache_dir") from None
    tf.config.set_visible_devices([], "GPU")  # TensorFlow only reads files: it never takes the GPU
    tfds.disable_progress_bar()

    if cfg.manual_dir is not None and not Path(cfg.manual_dir).expanduser().is_dir():
        raise DataError(f"data.manual_dir {cfg.manual_dir} is not a folder; pass the folder that holds "
                        f"the downloaded files of '{cfg.dataset}'")
    try:
        builder = tfds.builder(cfg.dataset, data_dir=cfg.data_dir)
    except Exception as e:  # TFDS raises DatasetNotFoundError and friends
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"unknown dataset '{cfg.dataset}': {first} (data.dataset takes a TFDS name, "
                        f"e.g. binarized_mnist, mnist, fashion_mnist)") from None

    image_keys = [k for k, f in builder.info.features.items() if isinstance(f, tfds.features.Image)]
    if not image_keys:
        raise DataError(f"dataset '{cfg.dataset}' has no image feature; vaecli trains on image datasets")
    image_key = image_keys[0]
    features = builder.info.features
    label_feature = features["label"] if "label" in features.keys() else None
    has_labels = isinstance(label_feature, tfds.features.ClassLabel)

    if not _is_prepared(builder):
        manual_has_files = cfg.manual_dir is not None and any(Path(cfg.manual_dir).expanduser().iterdir())
        # TFDS retries a failed download for minutes; without a network, say so at once.
        if not manual_has_files and not _network_available():
            raise DataError(_offline_message(cfg))
        download_config = tfds.download.DownloadConfig(manual_dir=cfg.manual_dir, try_download_gcs=False)
        try:
            builder.download_and_prepare(download_config=download_config)
        except Exception as e:
            if not _network_available():
                raise DataError(_offline_message(cfg, ", and data.manual_dir lacks some files")) from None
            raise DataError(f"TFDS could not prepare '{cfg.dataset}': {type(e).__name__}: "
                            f"{' '.join(str(e).split())[:300]}") from None

    out = {}
    # Builders without recorded split metadata (e.g. under tfds.testing.mock_data) are asked
    # for the usual split names.
    names = [str(n) for n in builder.info.splits.keys()] or list(SPLITS)
    for name in names:
        try:
            chunks = list(tfds.as_numpy(builder.as_dataset(split=name).batch(10_000)))
        except (ValueError, KeyError):
            if builder.info.splits:
                raise
            continue
        arrays = {k: np.concatenate([c[k] for c in chunks]) for k in ([image_key] + ["label"] * has_labels)}
        images = arrays[image_key]
        if images.dtype != np.uint8:
            raise DataError(f"dataset '{cfg.dataset}': images are {images.dtype}, expected uint8")
        if images.ndim == 3:
            images = images[..., None]
        out[str(name)] = {"images": images,
                          "labels": np.asarray(arrays["label"]) if has_labels else None}
    return out


def _is_prepared(builder) -> bool:
    try:
        return bool(builder.is_prepared())
    except Exception:
        return False


# ---------------------------------------------------------------------------- public


def prepare(cfg: DataConfig) -> dict:
    """Make sure the dataset is in vaecli's cache; return the cache index."""
    folder = cache_folder(cfg)
    index = _read_index(folder)
    if index is None:
        write_cache(folder, _prepare_with_tfds(cfg), dataset=cfg.dataset)
        index = _read_index(folder)
    return index


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
    folder = cache_folder(cfg)
    available = index["splits"]
    holdout = "validation" not in available
    source = "train" if split == "validation" and holdout else split
    if source not in available:
        raise DataError(f"dataset '{cfg.dataset}' has no '{source}' split (it has {', '.join(available)})")
    images, labels = _read_cached_split(folder, source)
    if holdout and source == "train":
        if cfg.val_size >= len(images):
            raise DataError(f"data.val_size={cfg.val_size} leaves no training images "
                            f"('{cfg.dataset}' train has {len(images)}); lower it")
        cut = len(images) - cfg.val_size
        sl = slice(cut, None) if split == "validation" else slice(None, cut)
        images, labels = images[sl], (labels[sl] if labels is not None else None)
    binary = bool(available[source]["binary"])
    if binary:
        return Split(split, images, labels, scale=1)
    if cfg.binarize == "static" or (cfg.binarize == "dynamic" and split != "train"):
        return Split(split, _binarize_static(images), labels, scale=1)
    return Split(split, images, labels, scale=255)


# Datasets whose training split is known without preparing them: (image shape, images in
# TFDS's train split, has a validation split, binary). `vae show` uses it for a config whose
# data is not in the cache yet; anything else must be prepared first.
KNOWN = {
    "binarized_mnist": ((28, 28, 1), 50000, True, True),
    "mnist": ((28, 28, 1), 60000, False, False),
    "fashion_mnist": ((28, 28, 1), 60000, False, False),
    "kmnist": ((28, 28, 1), 60000, False, False),
    "cifar10": ((32, 32, 3), 50000, False, False),
}


def describe_train(cfg: DataConfig) -> dict:
    """What the training split will be, without reading any images: image shape, number of
    images, pixel scale, and where that came from (the cache index, else `KNOWN`)."""
    folder = cache_folder(cfg)
    index = _read_index(folder)
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


def list_cache(root: Optional[str | Path] = None) -> list[dict]:
    """One entry per prepared dataset under the cache root: dataset, folder, bytes on disk,
    and per split its number of images, image shape and whether it is binary."""
    root = Path(root).expanduser() if root else default_cache_dir()
    if root.exists() and not root.is_dir():
        raise DataError(f"cache {root} is a file, not a folder; pass --cache-dir FOLDER")
    out = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        index = _read_index(folder)
        if index is None:
            continue  # not (or not yet completely) a dataset cache
        size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
        out.append({"dataset": index.get("dataset", folder.name), "folder": str(folder), "bytes": size,
                    "splits": index["splits"]})
    return out
