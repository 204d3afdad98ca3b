"""A folder of image files -> uint8 arrays and class labels, decoded with Pillow.

Layouts (files whose names start with a dot are skipped):

    PATH/*.png                          flat: images without labels
    PATH/<class>/*.png                  a subfolder per class: label = the class's place in
                                        the sorted class names
    PATH/{train,valid,test}/...         split folders (`validation` and `val` name the same
                                        one), each flat or with class subfolders

Pillow, not TFDS's ImageFolder builder: that one needs TensorFlow and writes TFRecords,
which vaecli would then read back into its own cache; Pillow decodes straight into the
cache's arrays in one pass (docs/performance.md has the measurement). Every image is read
as grayscale (1 channel) or RGB (3 channels); alpha is dropped.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Optional

import numpy as np

from vaecli.errors import DataError

SPLIT_FOLDERS = {"train": "train", "valid": "validation", "validation": "validation", "val": "validation",
                 "test": "test"}
GRAY_MODES = {"1", "L", "LA", "I", "I;16", "F"}


def _entries(folder: Path) -> tuple[list[Path], list[Path]]:
    """(files, subfolders) of `folder`, sorted, dot-names skipped (os.scandir: the kind of each
    entry without a stat of every file)."""
    try:
        with os.scandir(folder) as it:
            items = sorted((e.name, e.is_dir()) for e in it if not e.name.startswith("."))
    except FileNotFoundError:
        raise DataError(f"folder {folder} vanished while it was read; the cache was left as it was: run again") from None
    return [folder / n for n, d in items if not d], [folder / n for n, d in items if d]


def _listing(folder: Path) -> tuple[list[Path], Optional[list[str]]]:
    """One split's files and their class names (None: flat)."""
    files, subs = _entries(folder)
    if not subs:
        return files, None
    if files:
        raise DataError(f"{folder} holds both image files ({files[0].name}) and class folders ({subs[0].name}); "
                        "put every image in a class folder, or use no class folders")
    out, names = [], []
    for sub in subs:
        inner, nested = _entries(sub)
        if nested:
            raise DataError(f"class folder {sub} has a folder inside ({nested[0].name}); a class folder holds images")
        out += inner
        names += [sub.name] * len(inner)
    return out, names


def layout(root: Path) -> tuple[dict[str, list[Path]], dict[str, Optional[list[str]]]]:
    """{split: files} and {split: their class names or None}; DataError for a missing or
    empty folder, or a mix of flat and class-folder splits."""
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "does not exist"
        raise DataError(f"data.path {root} {what}; point it at a folder of images")
    _, subs = _entries(root)
    if subs and "train" in {s.name for s in subs} and all(s.name in SPLIT_FOLDERS for s in subs):
        parts = {SPLIT_FOLDERS[s.name]: _listing(s) for s in subs}
        if len(parts) < len(subs):
            raise DataError(f"{root} has two folders for one split (valid, validation, val); keep one")
    else:
        parts = {"train": _listing(root)}
    files = {k: v[0] for k, v in parts.items()}
    names = {k: v[1] for k, v in parts.items()}
    if len({n is None for n in names.values()}) > 1:
        raise DataError(f"{root}: some split folders have class folders and some do not; use them in all or none")
    empty = [k for k, f in files.items() if not f]
    if empty:
        where = root if list(files) == ["train"] else root / empty[0]
        raise DataError(f"no images in {where}; put image files (PNG, JPEG, ...) there")
    return files, names


def _stat_tree(folder: str, prefix: str, names: list[str], stats: list[int], depth: int) -> None:
    """Append the relative name of every entry under `folder` (folders end with "/") to
    `names`, and each file's size and modification time to `stats`, `depth` levels deep: the
    levels `layout` reads (root, split, class), a folder below them named but not entered.
    Dot-names are skipped as `layout` skips them. The tree is walked with os.scandir and
    DirEntry.stat, and the numbers go into one flat list: a later run pays little more than one
    stat per file, which is what catches a file rewritten in place (its folder's own
    modification time does not change then)."""
    try:
        with os.scandir(folder) as it:
            entries = sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return  # gone since its parent was listed: the listing differs, and so does the digest
    for e in entries:
        if e.is_dir():
            names.append(prefix + e.name + "/")
            if depth > 1:
                _stat_tree(e.path, prefix + e.name + "/", names, stats, depth - 1)
            continue
        try:
            st = e.stat()
        except FileNotFoundError:
            continue
        names.append(prefix + e.name)
        stats += (st.st_size, st.st_mtime_ns)


def fingerprint(root: Path, image_size) -> str:
    """A digest of every image file's relative path, size and modification time (and the
    resize): a file added, removed or rewritten changes it."""
    names: list[str] = []
    stats: list[int] = []
    _stat_tree(os.fspath(root), "", names, stats, depth=3)
    h = hashlib.sha256(repr(tuple(image_size) if image_size else None).encode())
    h.update("\0".join(names).encode("utf-8", "surrogateescape"))
    h.update(np.array(stats, np.int64).tobytes())
    return h.hexdigest()


def _mismatch(what: str, first: tuple[Path, tuple], path: Path, got: tuple, fix: str) -> DataError:
    return DataError(f"images of mixed {what}: {first[0]} is {'x'.join(map(str, first[1]))}, {path} is "
                     f"{'x'.join(map(str, got))}; {fix}")


def decode(files: list[Path], image_size=None) -> np.ndarray:
    """uint8 (N, H, W, C) of the files in order, C 1 (grayscale) or 3 (RGB), resized to
    `image_size` (height, width) when given (bilinear, antialiased as Pillow resizes)."""
    from PIL import Image, UnidentifiedImageError  # here: vaecli.data is imported by every command

    out, first = None, None
    for i, path in enumerate(files):
        try:
            with Image.open(path) as im:
                channels = 1 if im.mode in GRAY_MODES else 3
                mode = "L" if channels == 1 else "RGB"
                if im.mode != mode:
                    im = im.convert(mode)
                if image_size is not None and im.size != (image_size[1], image_size[0]):
                    im = im.resize((image_size[1], image_size[0]), Image.Resampling.BILINEAR)
                a = np.asarray(im)
        except FileNotFoundError:
            raise DataError(f"{path} vanished while the folder was read; the cache was left as it was: "
                            "run again") from None
        except (UnidentifiedImageError, OSError, ValueError) as e:
            raise DataError(f"{path} is not an image Pillow can read ({type(e).__name__}); remove it or move it "
                            "out of the folder") from None
        if out is None:
            first = (path, a.shape[:2], channels)
            out = np.empty((len(files), *a.shape[:2], channels), np.uint8)
        elif channels != first[2]:
            raise DataError(f"images of mixed channels: {first[0]} is {'grayscale' if first[2] == 1 else 'RGB'}, "
                            f"{path} is {'grayscale' if channels == 1 else 'RGB'}; convert them to one kind")
        elif a.shape[:2] != first[1]:
            raise _mismatch("sizes", first[:2], path, a.shape[:2],
                            "set data.image_size: [height, width] to resize them as they are read")
        out[i] = a.reshape(out.shape[1:])
    return out


def read(root: Path, image_size=None) -> tuple[dict, Optional[list[str]]]:
    """{split: {"images", "labels"}} for write_cache, and the class names (None: no classes)."""
    files, names = layout(root)
    classes = sorted({n for ns in names.values() if ns is not None for n in ns}) or None
    code = {c: i for i, c in enumerate(classes or [])}
    splits = {}
    shape = None
    for split, paths in files.items():
        images = decode(paths, image_size)
        if shape is not None and images.shape[1:] != shape:
            raise DataError(f"split folders hold images of different shapes ({'x'.join(map(str, shape))} and "
                            f"{'x'.join(map(str, images.shape[1:]))}); set data.image_size or make them alike")
        shape = images.shape[1:]
        labels = None if names[split] is None else np.array([code[n] for n in names[split]], np.int64)
        splits[split] = {"images": images, "labels": labels}
    return splits, classes
