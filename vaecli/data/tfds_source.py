"""Preparing a dataset through TensorFlow Datasets, once: its `data_dir` and `manual_dir`
honoured, TensorFlow kept off the GPU, a missing network reported at once (before TensorFlow
is imported), what is happening said on stderr (vaecli.progress). Imported only when a
dataset is not in vaecli's cache yet.

A dataset whose features include `label_<factor>` class labels (dSprites, shapes3d) is a
dataset with factors: their indices are kept beside the images, the `value_<factor>`
numbers as the factor table's values, and its splits made as vaecli.data.factors says.
"""
from __future__ import annotations

import os
import socket
from contextlib import nullcontext
from pathlib import Path

import numpy as np

from vaecli import progress
from vaecli.config import DataConfig
from vaecli.data.cache import cache_folder
from vaecli.data.factors import factor_splits, factor_table, values_of
from vaecli.errors import DataError

SPLITS = ("train", "validation", "test")  # asked for when a builder records none
# The factors' order where the dataset's own documentation gives one (the order of its
# latents, the last varying fastest); other datasets take their features' order.
FACTOR_ORDER = {
    "dsprites": ("shape", "scale", "orientation", "x_position", "y_position"),
    "shapes3d": ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation"),
}


def network_available(host: str = "storage.googleapis.com", timeout: float = 3.0) -> bool:
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _offline_message(cfg: DataConfig, detail: str = "") -> str:
    return (f"cannot download dataset '{cfg.dataset}' (no network{detail}): put the files TFDS would "
            f"download in a folder and pass --set data.manual_dir=PATH "
            f"(e.g. --set data.manual_dir=../shared/data/binarized_mnist)")


def tfds_data_dir(cfg: DataConfig) -> Path:
    """Where TFDS keeps its prepared files: data.data_dir, else $TFDS_DATA_DIR, else
    ~/tensorflow_datasets (TFDS's own default)."""
    return Path(cfg.data_dir or os.environ.get("TFDS_DATA_DIR") or Path.home() / "tensorflow_datasets").expanduser()


def _manual_files(cfg: DataConfig) -> bool:
    """Whether data.manual_dir names a folder with files in it (DataError if not a folder)."""
    if cfg.manual_dir is None:
        return False
    folder = Path(cfg.manual_dir).expanduser()
    if not folder.is_dir():
        raise DataError(f"data.manual_dir {cfg.manual_dir} is not a folder; pass the folder that holds "
                        f"the downloaded files of '{cfg.dataset}'")
    return any(folder.iterdir())


def check_obtainable(cfg: DataConfig, known: bool) -> None:
    """DataError at once (TensorFlow takes 10-20 s to import) when TFDS could not get a
    `known` dataset: no files in data.manual_dir, none prepared in its data_dir, and no
    network. Other names go on to TFDS, which knows whether they exist."""
    if _manual_files(cfg) or not known:
        return
    if (tfds_data_dir(cfg) / cfg.dataset.split("/")[0].split(":")[0]).is_dir():
        return  # TFDS may have prepared it already: it reads it without a network
    if not network_available():
        raise DataError(_offline_message(cfg))


def prepare(cfg: DataConfig) -> tuple[dict[str, dict[str, np.ndarray]], dict | None, list[str] | None]:
    """Run TFDS's download_and_prepare once and return every split as numpy arrays, the
    factor table of a dataset with factors (else None), and the class names of a `label`
    that is a ClassLabel (else None), label i named by the i-th."""
    _manual_files(cfg)  # a manual_dir that is no folder, before TensorFlow is imported
    progress.say(f"dataset '{cfg.dataset}' is not in vaecli's cache yet: preparing it through TFDS from "
                 f"{cfg.manual_dir or 'its download'} (TFDS keeps its files in {tfds_data_dir(cfg)}), then "
                 f"caching the images in {cache_folder(cfg)}; this happens once")
    # lines while it lasts; on a terminal TFDS draws its own bars instead (_import_tfds)
    beat = progress.working(f"preparing '{cfg.dataset}'") if progress.resolve() == "lines" else nullcontext()
    with beat:
        return _prepare(_import_tfds(cfg), cfg)


def _import_tfds(cfg: DataConfig):
    try:
        import tensorflow as tf
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise DataError(f"dataset '{cfg.dataset}' is not in vaecli's cache ({cache_folder(cfg)}) and "
                        f"TensorFlow Datasets cannot be imported here ({e}); prepare it on a machine "
                        f"with `pip install -e .` and copy the cache folder, or set data.cache_dir") from None
    tf.config.set_visible_devices([], "GPU")  # TensorFlow only reads files: it never takes the GPU
    # TFDS's own bars (per split, with the time left) where vaecli would draw a bar; else lines
    tfds.display_progress_bar(progress.resolve() == "bar")
    return tfds


def _prepare(tfds, cfg: DataConfig) -> tuple[dict[str, dict[str, np.ndarray]], dict | None, list[str] | None]:
    try:
        builder = tfds.builder(cfg.dataset, data_dir=cfg.data_dir)
    except Exception as e:  # TFDS raises DatasetNotFoundError and friends
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"unknown dataset '{cfg.dataset}': {first} (data.dataset takes a TFDS name, "
                        f"e.g. binarized_mnist, mnist, fashion_mnist)") from None

    image_keys = [k for k, f in builder.info.features.items() if isinstance(f, tfds.features.Image)]
    if not image_keys:
        raise DataError(f"dataset '{cfg.dataset}' has no image feature; vaecli trains on image datasets")
    factors = _factor_features(tfds, cfg.dataset, builder.info.features)
    if not _is_prepared(builder):
        _download_and_prepare(tfds, builder, cfg)
    # read once prepared: a builder may name its classes while it prepares (cifar10 does)
    features = builder.info.features
    label_feature = features["label"] if "label" in features.keys() else None
    classes = list(label_feature.names) if isinstance(label_feature, tfds.features.ClassLabel) else None
    splits = _read_splits(tfds, builder, cfg, image_keys[0], classes is not None, factors)
    if not factors:
        return splits, None, classes
    return (*with_factors(splits, factors), classes)


def _factor_features(tfds, dataset: str, features) -> dict[str, int]:
    """{factor name: number of values} of the `label_<name>` class labels, in factor order."""
    found = {k[len("label_"):]: f.num_classes for k, f in features.items()
             if k.startswith("label_") and isinstance(f, tfds.features.ClassLabel)}
    order = [n for n in FACTOR_ORDER.get(dataset, ()) if n in found]
    return {n: found[n] for n in order + [n for n in found if n not in order]}


def with_factors(splits: dict, factors: dict[str, int]) -> tuple[dict, dict]:
    """The factor indices as one array per split, the table (values from the train split),
    and the splits of vaecli.data.factors when the dataset brings only a train split."""
    names, sizes = list(factors), list(factors.values())
    columns = {split: arrays.pop("factor_columns") for split, arrays in splits.items()}
    for split, arrays in splits.items():
        arrays["factors"] = np.stack([columns[split][f"label_{n}"] for n in names], axis=1).astype(np.int32)
    first = "train" if "train" in splits else next(iter(splits))
    col = columns[first]
    values = [values_of(col[f"label_{n}"], col[f"value_{n}"], size) if f"value_{n}" in col else None
              for n, size in zip(names, sizes)]
    if set(splits) == {"train"}:
        train = splits["train"]
        splits = factor_splits(train["images"], train["factors"], train["labels"])
    return splits, factor_table(names, sizes, values)


def _download_and_prepare(tfds, builder, cfg: DataConfig) -> None:
    # TFDS retries a failed download for minutes; without a network, say so at once.
    if not _manual_files(cfg) and not network_available():
        raise DataError(_offline_message(cfg))
    download_config = tfds.download.DownloadConfig(manual_dir=cfg.manual_dir, try_download_gcs=False)
    try:
        builder.download_and_prepare(download_config=download_config)
    except Exception as e:
        if not network_available():
            raise DataError(_offline_message(cfg, ", and data.manual_dir lacks some files")) from None
        raise DataError(f"TFDS could not prepare '{cfg.dataset}': {type(e).__name__}: "
                        f"{' '.join(str(e).split())[:300]}") from None


def _read_splits(tfds, builder, cfg: DataConfig, image_key: str, has_labels: bool, factors=()) -> dict:
    out = {}
    factor_keys = [f"{p}_{n}" for n in factors for p in ("label", "value") if f"{p}_{n}" in builder.info.features]
    # Builders without recorded split metadata (e.g. under tfds.testing.mock_data) are asked
    # for the usual split names; a dataset with factors for `train` only, as dSprites and
    # shapes3d define no other.
    names = [str(n) for n in builder.info.splits.keys()] or (["train"] if factors else list(SPLITS))
    for name in names:
        try:
            chunks = list(tfds.as_numpy(builder.as_dataset(split=name).batch(10_000)))
        except (ValueError, KeyError):
            if builder.info.splits:
                raise
            continue
        keys = [image_key] + ["label"] * has_labels + factor_keys
        arrays = {k: np.concatenate([c[k] for c in chunks]) for k in keys}
        images = arrays[image_key]
        if images.dtype != np.uint8:
            raise DataError(f"dataset '{cfg.dataset}': images are {images.dtype}, expected uint8")
        if images.ndim == 3:
            images = images[..., None]
        out[str(name)] = {"images": images,
                          "labels": np.asarray(arrays["label"]) if has_labels else None}
        if factors:
            out[str(name)]["factor_columns"] = {k: arrays[k] for k in factor_keys}
    return out


def _is_prepared(builder) -> bool:
    try:
        return bool(builder.is_prepared())
    except Exception:
        return False

