"""An array file -> uint8 images and integer labels, checked.

    .npz with `x` (N, H, W) or (N, H, W, C), C 1 or 3: uint8 (or integers) in 0..255, or
         floats in [0, 1]; and optionally `y` (N,) integer class labels >= 0
    .npy the images alone, as `x` above

Floats are kept as the 8-bit pixels the cache holds: 0/1 images exactly (as binary data),
other values rounded to the nearest multiple of 1/255.
"""
from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path
from typing import Optional

import numpy as np

from vaecli.errors import DataError


def fingerprint(path: Path) -> str:
    """A digest of the file's size and modification time: a rewritten file changes it."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise DataError(f"data.path {path} does not exist; point it at an .npz (x, and y) or .npy file") from None
    return hashlib.sha256(f"{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()


def _load(path: Path) -> tuple[np.ndarray, Optional[np.ndarray]]:
    if path.is_dir():
        raise DataError(f"data.path {path} is a folder; data.source=arrays reads an .npz or .npy file "
                        "(a folder of images is data.source=folder)")
    try:
        loaded = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"data.path {path} does not exist; point it at an .npz (x, and y) or .npy file") from None
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise DataError(f"{path} is not a numpy .npz or .npy file numpy can read ({e})") from None
    if isinstance(loaded, np.ndarray):
        return loaded, None
    with loaded as z:
        if "x" not in z.files:
            raise DataError(f"{path} has no array 'x' (it has {', '.join(z.files) or 'none'}); save the images as x "
                            "(and the labels as y): np.savez(path, x=images, y=labels)")
        return z["x"], (z["y"] if "y" in z.files else None)


def _images(path: Path, x: np.ndarray) -> np.ndarray:
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3) or not len(x):
        raise DataError(f"{path}: x has shape {x.shape}; expected (N, H, W) or (N, H, W, C) with C 1 or 3, N > 0")
    if x.dtype == np.uint8:
        return x
    if x.dtype == np.bool_:
        return x.astype(np.uint8)
    if np.issubdtype(x.dtype, np.integer):
        lo, hi = int(x.min()), int(x.max())
        if lo < 0 or hi > 255:
            raise DataError(f"{path}: x holds integers in [{lo}, {hi}]; expected pixel values in 0..255 "
                            "(or floats in [0, 1])")
        return x.astype(np.uint8)
    if not np.issubdtype(x.dtype, np.floating):
        raise DataError(f"{path}: x is {x.dtype}; expected uint8 in 0..255 or floats in [0, 1]")
    if not np.isfinite(x).all() or x.min() < 0 or x.max() > 1:
        raise DataError(f"{path}: x holds floats in [{np.nanmin(x):g}, {np.nanmax(x):g}] (or NaN); expected "
                        "floats in [0, 1] (or uint8 in 0..255)")
    if np.all((x == 0) | (x == 1)):
        return x.astype(np.uint8)
    return np.rint(x.astype(np.float64) * 255).astype(np.uint8)


def _labels(path: Path, y: np.ndarray, n: int) -> np.ndarray:
    if y.shape != (n,):
        raise DataError(f"{path}: y has shape {y.shape}; expected ({n},), one label per image of x")
    if np.issubdtype(y.dtype, np.floating):
        bad = np.flatnonzero(~np.isfinite(y) | (y != np.round(y)))
        if bad.size:
            raise DataError(f"{path}: y holds non-integer labels (y[{bad[0]}] = {y[bad[0]]:g}); labels are class "
                            "numbers 0, 1, 2, ...")
    elif not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{path}: y is {y.dtype}; labels are integer class numbers 0, 1, 2, ...")
    if y.min() < 0:
        i = int(np.argmin(y))
        raise DataError(f"{path}: y holds negative labels (y[{i}] = {y[i]:g}); labels are class numbers 0, 1, 2, ...")
    return y.astype(np.int64)


def read(path: Path) -> tuple[dict, Optional[list[str]]]:
    """{"train": {"images", "labels"}} for write_cache, and the class names ("0", "1", ...;
    None without labels)."""
    x, y = _load(path)
    images = _images(path, x)
    labels = None if y is None else _labels(path, y, len(images))
    classes = None if labels is None else [str(c) for c in range(int(labels.max()) + 1)]
    return {"train": {"images": images, "labels": labels}}, classes
