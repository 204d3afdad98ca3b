"""Images of one's own: a folder of image files and an array file, read into the cache (once,
and again when they change), split, labelled; every bad input refused in one line with
nothing written."""
from __future__ import annotations

import os

import numpy as np
import pytest
from helpers import assert_error, vae_inproc
from PIL import Image

from vaecli import config, data
from vaecli.data import cache, image_folder
from vaecli.errors import ConfigError, DataError

CLASSES = ("cat", "dog", "emu")


def _write_pngs(folder, n: int, seed: int, size=(8, 8), mode="L"):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        shape = size if mode == "L" else (*size, 3)
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(folder / f"{i:03d}.png")


def _classes(root, n=12):
    for c, name in enumerate(CLASSES):
        _write_pngs(root / name, n, seed=c)
    return root


def _cfg(path, cache, source="folder", **keys) -> config.DataConfig:
    keys = {"val_size": 5, "test_size": 6, "binarize": "none", **keys}
    return config.load(None, [f"data.source={source}", f"data.path={path}", f"data.cache_dir={cache}",
                              *(f"data.{k}={v}" for k, v in keys.items())]).data


def _pil(path) -> np.ndarray:
    return np.asarray(Image.open(path))


def test_class_folders_give_labels_names_and_a_seeded_split(tmp_path):
    root = _classes(tmp_path / "imgs")
    cfg = _cfg(root, tmp_path / "cache")
    splits = {s: data.load_split(cfg, s) for s in data.SPLITS}
    assert [len(splits[s]) for s in data.SPLITS] == [25, 5, 6]
    every = sorted(p for c in CLASSES for p in (root / c).iterdir())
    pixels = {_pil(p).tobytes(): (p, CLASSES.index(p.parent.name)) for p in every}
    seen = []
    for s in splits.values():
        assert s.class_names == CLASSES and s.num_classes == 3 and s.scale == 255
        for image, label in zip(s.images, s.labels):
            path, truth = pixels[image[..., 0].tobytes()]  # the very pixels Pillow reads from that file
            assert label == truth
            seen.append(path)
    assert sorted(seen) == every  # the three splits partition the images
    again = data.load_split(_cfg(root, tmp_path / "cache"), "test")
    np.testing.assert_array_equal(again.images, splits["test"].images)
    other = data.load_split(_cfg(root, tmp_path / "cache", split_seed=1), "test")
    assert not np.array_equal(other.images, splits["test"].images)


def test_split_folders_flat_folders_and_resizing(tmp_path):
    for split, n in (("train", 10), ("valid", 4), ("test", 3)):
        _write_pngs(tmp_path / "s" / split, n, seed=n, size=(10, 6), mode="RGB")
    cfg = _cfg(tmp_path / "s", tmp_path / "cache", image_size="[4,8]")
    got = {s: data.load_split(cfg, s) for s in data.SPLITS}
    assert {s: got[s].images.shape for s in got} == {"train": (10, 4, 8, 3), "validation": (4, 4, 8, 3),
                                                    "test": (3, 4, 8, 3)}
    assert got["train"].labels is None and got["train"].num_classes is None
    want = np.asarray(Image.open(tmp_path / "s" / "valid" / "002.png").resize((8, 4), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(got["validation"].images[2], want)
    _write_pngs(tmp_path / "flat", 20, seed=0)
    flat = data.load_split(_cfg(tmp_path / "flat", tmp_path / "cache"), "train")
    assert len(flat) == 9 and flat.labels is None


def test_a_changed_folder_is_read_again_an_unchanged_one_is_not(tmp_path):
    root = _classes(tmp_path / "imgs")
    cfg = _cfg(root, tmp_path / "cache")
    folder = data.cache_folder(cfg)
    data.prepare(cfg)
    written = (folder / "index.json").stat().st_mtime_ns
    (root / ".DS_Store").write_text("x")  # a dot-name is never read: no reason to read again
    data.prepare(cfg)
    assert (folder / "index.json").stat().st_mtime_ns == written
    _write_pngs(root / "fox", 4, seed=9)  # a class added
    assert data.prepare(cfg)["splits"]["train"]["num_examples"] == 40
    assert data.load_split(cfg, "train").class_names == (*CLASSES, "fox")
    new = np.full((8, 8), 7, np.uint8)
    Image.fromarray(new).save(root / "cat" / "000.png")  # a file rewritten
    os.utime(root / "cat" / "000.png", ns=(1, 1))
    images = np.concatenate([data.load_split(cfg, s).images for s in data.SPLITS])
    assert (images[..., 0] == new).all(axis=(1, 2)).sum() == 1
    (root / "dog" / "003.png").unlink()  # a file removed
    assert data.prepare(cfg)["splits"]["train"]["num_examples"] == 39
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # no temporary folder left


def test_arrays_with_and_without_labels(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((40, 6, 5)) < 0.5
    y = rng.integers(0, 4, 40)
    np.savez(tmp_path / "a.npz", x=x.astype(np.float32), y=y)
    cfg = _cfg(tmp_path / "a.npz", tmp_path / "cache", source="arrays", val_size=8, test_size=2)
    train = data.load_split(cfg, "train")
    assert train.images.shape == (30, 6, 5, 1) and train.scale == 1 and train.num_classes == int(y.max()) + 1
    rows = np.sort(np.random.default_rng(0).permutation(40)[10:])  # the seeded draw, as documented
    np.testing.assert_array_equal(train.images[..., 0], x[rows])
    np.testing.assert_array_equal(train.labels, y[rows])
    gray = rng.random((12, 4, 4, 3))
    np.save(tmp_path / "g.npy", gray)
    g = data.load_split(_cfg(tmp_path / "g.npy", tmp_path / "cache", source="arrays", val_size=2, test_size=2), "test")
    assert g.labels is None and g.scale == 255 and g.images.shape == (2, 4, 4, 3)
    assert np.abs(g.images / 255.0 - gray[np.sort(np.random.default_rng(0).permutation(12)[:2])]).max() <= 0.5 / 255


def _bad_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    _write_pngs(tmp_path / "text", 3, seed=0)
    (tmp_path / "text" / "notes.txt").write_text("not an image")
    _write_pngs(tmp_path / "sizes", 2, seed=0)
    _write_pngs(tmp_path / "sizes" / "x", 1, seed=0, size=(9, 8))
    (tmp_path / "sizes" / "x" / "000.png").rename(tmp_path / "sizes" / "big.png")
    (tmp_path / "sizes" / "x").rmdir()
    _write_pngs(tmp_path / "mixed", 2, seed=0)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "mixed" / "rgb.png")
    return [("missing", "does not exist"), ("empty", "no images in"), ("text", "notes.txt is not an image"),
            ("sizes", "images of mixed sizes"), ("mixed", "images of mixed channels")]


def _bad_arrays(tmp_path):
    x = np.zeros((6, 4, 4), np.uint8)
    cases = {"nox.npz": dict(images=x), "ylen.npz": dict(x=x, y=np.zeros(5, int)),
             "yfrac.npz": dict(x=x, y=np.full(6, 0.5)), "yneg.npz": dict(x=x, y=-np.ones(6, int)),
             "int.npz": dict(x=np.full((6, 4, 4), 300)), "float.npz": dict(x=np.full((6, 4, 4), 1.5))}
    for name, arrays in cases.items():
        np.savez(tmp_path / name, **arrays)
    return [("nox.npz", "has no array 'x'"), ("ylen.npz", "y has shape (5,)"), ("yfrac.npz", "non-integer labels"),
            ("yneg.npz", "negative labels"), ("int.npz", "integers in [300, 300]"), ("float.npz", "floats in [1.5, 1.5]")]


def test_every_bad_source_is_one_line_exit_1_and_nothing_cached(tmp_path):
    root = tmp_path / "cache"
    for source, cases in (("folder", _bad_folders(tmp_path)), ("arrays", _bad_arrays(tmp_path))):
        for name, needle in cases:
            out = vae_inproc("data", "prepare", tmp_path / name, "--source", source, "--cache-dir", root)
            assert_error(out, 1, needle)
    assert not root.exists() or not any(root.iterdir())


def test_a_folder_that_changes_while_read_leaves_the_cache_as_it_was(tmp_path, monkeypatch):
    root = _classes(tmp_path / "imgs", n=4)
    cfg = _cfg(root, tmp_path / "cache", val_size=1, test_size=1)
    before = data.load_split(cfg, "train").images
    _write_pngs(root / "fox", 2, seed=5)
    decode = image_folder.decode

    def vanishing(files, image_size=None):
        files[-1].unlink()  # removed between the listing and its decoding
        return decode(files, image_size)

    monkeypatch.setattr(image_folder, "decode", vanishing)
    with pytest.raises(DataError, match="vanished while the folder was read; the cache was left as it was"):
        data.prepare(cfg)
    monkeypatch.setattr(image_folder, "decode", lambda files, size=None: (files[0].unlink(), decode(files[1:], size))[1])
    with pytest.raises(DataError, match="changed while it was read"):
        data.prepare(cfg)
    folder = data.cache_folder(cfg)
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]
    images = cache.read_split(folder, "train")[0]  # the cache from before the change, whole
    assert images.shape == (12, 8, 8, 1) and {i.tobytes() for i in before} <= {i.tobytes() for i in images}


def test_config_refuses_what_cannot_work():
    for overrides, needle in ((["data.source=folder"], "data.path: data.source=folder reads a folder"),
                              (["data.path=/x"], "data.path: only for images of your own"),
                              (["data.source=arrays", "data.path=/x.npz", "data.image_size=[4,4]"], "data.image_size"),
                              (["data.source=folder", "data.path=/x", "data.image_size=[4]"], "[height, width]"),
                              (["model.conditional=true", "model.prior=vamp"], "model.conditional")):
        with pytest.raises(ConfigError, match=__import__("re").escape(needle)):
            config.load(None, overrides)
