"""`vae train-features`: a feature classifier (vaecli.evaluation.feature_net) trained on a
labelled split and kept as two files: `NAME.npz`, its weights, and `NAME.json`, its record
(dataset, image shape, label, classes, test accuracy, the weights' SHA-256). `load` checks
the weights against the record's hash before `vae eval-samples` uses them.

The two are replaced as a pair (`write_pair`): both are written in full beside their targets
first, as NAME.npz.pending and NAME.json.pending, then renamed, the weights first. A failure
before the renames leaves the old pair (or none) as it was; a process killed between the two
renames leaves the new weights beside NAME.json.pending, which names their hash, and
`read_record` takes that record. So no reader ever pairs weights with another file's record.

The label is `label` (the split's own labels, vaecli.data.Split.labels: MNIST's digits, a
labelled folder) or the name of a factor of a dataset with factors (toy_sprites' `shape`).
The classifier trains on the training split without the images that also appear in the
test split (toy_sprites' and dSprites' test images are a subset of train), and its
accuracy is measured on the test split.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

import numpy as np

import vaecli
from vaecli import files
from vaecli.errors import DataError, UsageError, storage_error

FORMAT = "vaecli-feature-classifier/1"
KIND = ("classifier features: the penultimate layer of a small classifier vaecli trained on this dataset's "
        "labels; not Inception features, so a FID from them is comparable only with FIDs from the same file")


def default_path(dataset: str, label: str) -> Path:
    """Where `vae train-features` keeps a classifier by default: vaecli's cache."""
    return files.cache_home() / "features" / f"{dataset}-{label}.npz"


def paths(path: str | Path) -> tuple[Path, Path]:
    """(weights .npz, record .json) of a feature file named by either, or by its stem."""
    p = Path(path)
    stem = p.with_suffix("") if p.suffix in (".npz", ".json") else p
    return stem.with_name(stem.name + ".npz"), stem.with_name(stem.name + ".json")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def labels_of(split, label: str, factor_names) -> np.ndarray:
    """The split's integer labels named `label` ('label' or a factor's name)."""
    choices = (["label"] if split.labels is not None else []) + list(factor_names or [])
    if label == "label" and split.labels is not None:
        return np.asarray(split.labels).astype(np.int64)
    if label in (factor_names or []) and split.factors is not None:
        return np.asarray(split.factors[:, list(factor_names).index(label)]).astype(np.int64)
    have = f"choose one of {', '.join(choices)}" if choices else "this dataset has neither labels nor factors"
    raise UsageError(f"--label {label}: not a label of the '{split.name}' split; {have}")


def _without(train_x, train_y, test_x):
    """The training images that are not byte for byte a test image (and their labels)."""
    seen = {img.tobytes() for img in test_x}
    keep = np.array([img.tobytes() not in seen for img in train_x], bool)
    return train_x[keep], train_y[keep]


def check_target(out: str | Path | None, dataset: str, label: str) -> tuple[Path, Path]:
    """The files a training will write, their folder made: UsageError if it cannot be."""
    npz, record = paths(out if out is not None else default_path(dataset, label))
    try:
        npz.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise storage_error(e, npz.parent, "choose another --out") from e
    return npz, record


def train_features(data_cfg, label: str = "label", epochs: int = 5, seed: int = 0,
                   out: str | Path | None = None) -> dict:
    """Train the feature classifier on `data_cfg`'s dataset and `label`; write NAME.npz and
    NAME.json (default: vaecli's cache, features/<dataset>-<label>); return the record."""
    if epochs < 1:
        raise UsageError(f"--epochs {epochs}: must be at least 1")
    from vaecli import data
    from vaecli.evaluation import feature_net

    npz, record_path = check_target(out, data_cfg.dataset, label)
    index = data.prepare(data_cfg)
    names = (index.get("factors") or {}).get("names")
    train, test = data.load_split(data_cfg, "train"), data.load_split(data_cfg, "test")
    ytr, yte = labels_of(train, label, names), labels_of(test, label, names)
    xtr, ytr = _without(train.images, ytr, test.images)
    if not len(xtr):
        raise DataError(f"'{data_cfg.dataset}': every training image is also a test image, so the classifier has "
                        f"nothing to train on that its test accuracy does not measure; give it a dataset whose "
                        f"training split holds other images")
    classes = np.unique(np.concatenate([ytr, yte]))
    if len(classes) < 2:
        raise DataError(f"--label {label}: the '{data_cfg.dataset}' splits have one class only; nothing to classify")
    ytr, yte = np.searchsorted(classes, ytr), np.searchsorted(classes, yte)
    as_float = lambda x, s: x.astype(np.float32) / s  # noqa: E731
    params = feature_net.train(as_float(xtr, train.scale), ytr, len(classes), epochs, seed)
    test_acc = feature_net.accuracy(params, as_float(test.images, test.scale), yte)
    train_acc = feature_net.accuracy(params, as_float(xtr, train.scale), ytr)
    try:
        record = {"format": FORMAT, "kind": KIND, "weights": npz.name,
                  "dataset": data_cfg.dataset, "binarize": data_cfg.binarize, "image_shape": list(train.image_shape),
                  "label": label, "classes": [int(c) for c in classes], "test_accuracy": test_acc,
                  "train_accuracy": train_acc, "num_train": len(xtr), "num_test": len(test),
                  "chance_accuracy": float(np.bincount(yte).max() / len(yte)),
                  "epochs": epochs, "seed": seed, "batch_size": feature_net.BATCH, "lr": feature_net.LR,
                  "architecture": feature_net.ARCHITECTURE, "feature_dim": feature_net.FEATURE_DIM,
                  "vaecli_version": vaecli.__version__}
        record = write_pair(npz, record_path, params, record)
    except OSError as e:
        raise storage_error(e, then="choose another --out") from e
    return {**record, "written_to": str(npz), "record": str(record_path)}


def pending(path: Path) -> Path:
    """Where `write_pair` writes `path` in full before renaming it into place."""
    return path.with_name(path.name + ".pending")


def write_pair(npz: Path, record_path: Path, params: dict, record: dict) -> dict:
    """Replace the weights `npz` and their record as a pair (see the module); return the
    record with the weights' SHA-256. OSError as it comes, the old pair then unchanged."""
    weights_tmp, record_tmp = pending(npz), pending(record_path)

    def drop_pending():
        for tmp in (weights_tmp, record_tmp):
            tmp.unlink(missing_ok=True)

    try:
        files.write_with(weights_tmp, lambda f: np.savez(f, **params))
        record = {**record, "sha256": sha256(weights_tmp)}
        files.write_json(record_tmp, record)
    except BaseException:  # nothing renamed: the old pair stays, the pending files go
        drop_pending()
        raise
    try:
        os.replace(weights_tmp, npz)
    except OSError:  # not renamed either; an interruption is left alone: it may come after the rename
        drop_pending()
        raise
    os.replace(record_tmp, record_path)  # until this rename, read_record takes record_tmp
    return record


def _parse(record_path: Path, path) -> dict:
    try:
        record = json.loads(record_path.read_text())
    except FileNotFoundError:
        raise UsageError(f"--features {path}: no record {record_path}; train one with `vae train-features`") from None
    except (OSError, ValueError) as e:
        raise UsageError(f"--features {path}: cannot read its record {record_path} ({e})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise UsageError(f"--features {path}: {record_path} is not a vaecli feature record ({FORMAT})")
    return record


def read_record(path: str | Path) -> tuple[dict, Path]:
    """The record of a feature file and its weights' path: UsageError when either is missing
    or the record is not one; DataError when the weights do not match the record's hash.
    The pending record of a pair whose writing stopped between its renames is theirs when
    it names their hash."""
    npz, record_path = paths(path)
    half_written = pending(record_path).is_file()
    record = _parse(record_path, path) if record_path.is_file() or not half_written else None
    if not npz.is_file():
        raise UsageError(f"--features {path}: its weights {npz} are missing")
    actual = sha256(npz)
    if half_written and (record is None or actual != record.get("sha256")):
        with contextlib.suppress(UsageError):  # an unreadable pending record is no record
            if (candidate := _parse(pending(record_path), path)).get("sha256") == actual:
                record = candidate
    if record is None or actual != record.get("sha256"):
        theirs = f"the record's {str(record.get('sha256'))[:12]}…" if record else f"no record {record_path}"
        raise DataError(f"--features {path}: the weights' SHA-256 {actual[:12]}… does not match {theirs}; the "
                        f"file was changed or replaced: train it again with `vae train-features`")
    return record, npz


def check_shape(record: dict, path, image_shape, whose: str = "this run's") -> None:
    """UsageError unless the feature file was trained on images of `image_shape` (`whose`)."""
    if tuple(record.get("image_shape", ())) != tuple(image_shape):
        raise UsageError(f"--features {path}: trained on images of shape {tuple(record.get('image_shape', ()))} "
                         f"({record.get('dataset')}), but {whose} are {tuple(image_shape)}; train one on this "
                         f"dataset with `vae train-features`")


def load(path: str | Path, image_shape) -> tuple[dict, dict]:
    """(record, weights) of a checked feature file for images of `image_shape`."""
    record, npz = read_record(path)
    check_shape(record, path, image_shape)
    with np.load(npz) as f:
        params = {k: f[k] for k in f.files}
    return record, params


def find_default(dataset: str) -> Path:
    """The one feature file in vaecli's cache trained on `dataset`; UsageError when there is
    none or more than one (then --features chooses)."""
    folder = files.cache_home() / "features"
    found = sorted(folder.glob(f"{dataset}-*.json")) if folder.is_dir() else []
    if len(found) == 1:
        return found[0]
    if not found:
        raise UsageError(f"no feature classifier for '{dataset}' in {folder}: train one with `vae train-features "
                         f"--dataset {dataset} --label LABEL`, or pass --features FILE")
    raise UsageError(f"several feature classifiers for '{dataset}' in {folder} ({', '.join(p.stem for p in found)}): "
                     f"choose one with --features FILE")
