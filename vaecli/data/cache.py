"""vaecli's dataset cache: every split of a prepared dataset as compact arrays, bit-packed
when the images are binary, uint8 otherwise. Later runs, and machines without
TensorFlow/TFDS (a GPU box), read it in a fraction of a second without importing either.

    <cache_dir>/<dataset>/index.json      format, splits (size, shape, binary, labels, factors),
                                          and for a dataset with factors their table (names, sizes, values)
    <cache_dir>/<dataset>/<split>.npz     written before the index: its presence means complete

A dataset with known factors of variation (vaecli.data.factors) keeps each image's factor
indices as one more array, `factors` (N, F), in its split files. Caches written before that
array existed read as they did: an absent `factors` (array or index entry) means none.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from vaecli import files
from vaecli.config import DataConfig
from vaecli.errors import DataError

CACHE_FORMAT = 1


def default_cache_dir() -> Path:
    """$XDG_CACHE_HOME/vaecli/data, else ~/.cache/vaecli/data (data.cache_dir overrides it)."""
    return files.cache_home() / "data"


def cache_folder(cfg: DataConfig) -> Path:
    root = Path(cfg.cache_dir).expanduser() if cfg.cache_dir else default_cache_dir()
    if cfg.source != "tfds":  # one folder per source path and resize: the name says which, the hash makes it unique
        where = Path(cfg.path).expanduser().resolve()
        tag = hashlib.sha256(f"{where}|{cfg.image_size}".encode()).hexdigest()[:10]
        return root / f"{cfg.source}-{where.stem or 'root'}-{tag}"
    return root / cfg.dataset.replace(":", "-").replace("/", "-")


def write_atomic(folder: Path, splits: dict, **kw) -> None:
    """write_cache into a sibling temporary folder, then put it in place with renames: a
    reader sees the old cache or the new one, never a mix, and a failure leaves the old one."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    old = tmp.with_name(tmp.name + ".old")
    try:
        write_cache(tmp, splits, **kw)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)



def write_cache(folder: Path, splits: dict[str, dict[str, np.ndarray]], dataset: Optional[str] = None,
                factors: Optional[dict] = None, **index_extra) -> None:
    """Write {split: {"images": uint8 (N, H, W, C), "labels": ... or None, "factors": int
    (N, F) (optional)}} as a dataset cache; `factors` is the factor table (vaecli.data.factors:
    names, sizes, values), `index_extra` more entries of index.json.

    Used after TFDS preparation, for the procedural datasets, and by tests (or users) to
    bring arrays of their own.
    """
    folder.mkdir(parents=True, exist_ok=True)
    index = {"format": CACHE_FORMAT, "dataset": dataset or folder.name, "splits": {}, **index_extra}
    if factors is not None:
        index["factors"] = factors
    for name, arrays in splits.items():
        images = arrays["images"]
        binary = bool(images.max(initial=0) <= 1)
        payload = {"shape": np.asarray(images.shape, np.int64)}
        if binary:  # 8 pixels a byte: binarized MNIST's three splits take 2.2 MiB
            payload["bits"] = np.packbits(images.reshape(len(images), -1), axis=1)
        else:
            payload["images"] = images
        if arrays.get("labels") is not None:
            payload["labels"] = arrays["labels"]
        has_factors = arrays.get("factors") is not None
        if has_factors:
            payload["factors"] = np.asarray(arrays["factors"], np.int32)
        files.write_with(folder / f"{name}.npz", lambda f: np.savez_compressed(f, **payload))
        index["splits"][name] = {"num_examples": int(len(images)), "shape": list(images.shape[1:]),
                                 "binary": binary, "labels": arrays.get("labels") is not None}
        if has_factors:
            index["splits"][name]["factors"] = True
    # The index is written last: its presence means every split file is complete.
    files.write_text(folder / "index.json", json.dumps(index, indent=1))


def read_index(folder: Path) -> Optional[dict]:
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


def _damaged(folder: Path, name: str, e: Exception) -> DataError:
    return DataError(f"data cache file {folder / (name + '.npz')} is damaged ({e}); delete {folder} to rebuild it")


def read_split(folder: Path, name: str) -> tuple[np.ndarray, Optional[np.ndarray]]:
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
        raise _damaged(folder, name, e) from None
    return images, labels


def read_factors(folder: Path, name: str) -> Optional[np.ndarray]:
    """A split's factor indices (N, F) int32, or None when its file holds none (a dataset
    without factors, or a cache written before they were kept)."""
    try:
        with np.load(folder / f"{name}.npz") as z:
            return z["factors"] if "factors" in z else None
    except (OSError, ValueError, KeyError) as e:
        raise _damaged(folder, name, e) from None


def read_rows(folder: Path, name: str) -> Callable[[np.ndarray], np.ndarray]:
    """A function from row indices to that split's images there (uint8 (n, H, W, C)). It keeps
    the split as stored, so a binary one stays bit-packed (dSprites: 377 MB instead of 3 GB)
    and only the rows asked for are unpacked."""
    try:
        with np.load(folder / f"{name}.npz") as z:
            shape = tuple(int(s) for s in z["shape"])
            stored, packed = (z["bits"], True) if "bits" in z else (z["images"], False)
    except (OSError, ValueError, KeyError) as e:
        raise _damaged(folder, name, e) from None
    d = int(np.prod(shape[1:]))

    def rows(idx: np.ndarray) -> np.ndarray:
        picked = stored[np.asarray(idx)]
        if not packed:
            return picked
        return np.unpackbits(picked, axis=1, count=d).reshape((len(picked),) + shape[1:])
    return rows


def list_cache(root: Optional[str | Path] = None) -> list[dict]:
    """One entry per prepared dataset under the cache root: dataset, folder, bytes on disk,
    and per split its number of images, image shape and whether it is binary."""
    root = Path(root).expanduser() if root else default_cache_dir()
    if root.exists() and not root.is_dir():
        raise DataError(f"cache {root} is a file, not a folder; pass --cache-dir FOLDER")
    out = []
    # a name starting with a dot is a cache being written (write_atomic)
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) if root.is_dir() else []:
        index = read_index(folder)
        if index is None:
            continue  # not (or not yet completely) a dataset cache
        size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
        out.append({"dataset": index.get("dataset", folder.name), "folder": str(folder), "bytes": size,
                    "splits": index["splits"], **({"source": index["source"]} if "source" in index else {})})
    return out
