"""Datasets with factors: toy_sprites made on first use and cached with its factor values,
the splits of a factor dataset, images by factor values (drawn, or looked up in the train
split), old caches without factors, and dSprites / shapes3d through TFDS (mock data)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import CONFIG, assert_error, run_folders, vae_inproc

from vaecli import config, data
from vaecli.data import cache, factors, tfds_source, toy_sprites
from vaecli.data.factor_images import check_rows, grid_positions
from vaecli.errors import DataError, UsageError


def _cfg(**data_keys) -> config.DataConfig:
    return config.load(None, [f"data.{k}={v}" for k, v in data_keys.items()]).data


@pytest.fixture
def toy(tmp_path) -> config.DataConfig:
    return _cfg(dataset="toy_sprites", cache_dir=tmp_path)


def test_toy_sprites_is_made_on_first_use_with_its_factors(toy, tmp_path):
    train = data.load_split(toy, "train")
    folder = tmp_path / "toy_sprites"
    index = json.loads((folder / "index.json").read_text())
    assert index["factors"]["names"] == list(toy_sprites.FACTOR_NAMES)
    assert index["factors"]["sizes"] == list(toy_sprites.FACTOR_SIZES)
    assert index["factors"]["values"][0] == ["square", "ellipse", "heart"]
    assert index["procedural_version"] == factors.PROCEDURAL["toy_sprites"].version
    # Every image is in train, in the grid's order, binary (bit-packed in the cache).
    images, grid = toy_sprites.dataset()
    np.testing.assert_array_equal(train.images, images)
    np.testing.assert_array_equal(train.factors, grid)
    assert train.scale == 1 and train.labels is None
    with np.load(folder / "train.npz") as z:
        assert {"bits", "factors"} <= set(z) and z["factors"].dtype == np.int32
    # A second load reads the cache: nothing is drawn or written again.
    stamp = (folder / "train.npz").stat().st_mtime_ns
    data.load_split(toy, "test")
    assert (folder / "train.npz").stat().st_mtime_ns == stamp


def test_validation_and_test_are_fixed_disjoint_subsets_of_train(toy):
    train, val, test = (data.load_split(toy, s) for s in data.SPLITS)
    k = factors.subset_size(toy_sprites.NUM_IMAGES)
    assert len(val) == len(test) == k == toy_sprites.NUM_IMAGES // 4
    rows = {s: toy_sprites.index_of(split.factors) for s, split in (("val", val), ("test", test))}
    assert not set(rows["val"]) & set(rows["test"])
    for s, split in (("val", val), ("test", test)):
        np.testing.assert_array_equal(split.images, train.images[rows[s]])  # each image with its factors
        assert (np.diff(rows[s]) > 0).all()  # in the order of the whole set
    picks = factors.factor_splits(train.images, train.factors)  # the same subsets every time
    np.testing.assert_array_equal(picks["test"]["factors"], test.factors)


def test_an_older_procedural_cache_is_made_again(toy, tmp_path, monkeypatch):
    data.prepare(toy)
    entry = factors.PROCEDURAL["toy_sprites"]
    monkeypatch.setitem(factors.PROCEDURAL, "toy_sprites", factors.Procedural(entry.version + 1, entry.build,
                                                                              entry.draw, entry.help))
    assert data.prepare(toy)["procedural_version"] == entry.version + 1


def test_toy_sprites_draws_what_the_cache_holds(toy):
    images = data.load_factor_images(toy)
    assert images.names == toy_sprites.FACTOR_NAMES and images.sizes == toy_sprites.FACTOR_SIZES
    assert images.scale == 1 and images.source.startswith("drawn")
    test = data.load_split(toy, "test")
    np.testing.assert_array_equal(images.draw(test.factors), test.images)


def test_other_datasets_look_images_up_in_the_train_split(tmp_path):
    # The toy grid written as a dataset vaecli does not draw, shuffled: images come from the cache.
    images, grid = toy_sprites.dataset()
    order = np.random.default_rng(0).permutation(len(images))
    table = factors.factor_table(toy_sprites.FACTOR_NAMES, toy_sprites.FACTOR_SIZES)
    data.write_cache(tmp_path / "grid", factors.factor_splits(images[order], grid[order]), factors=table)
    looked_up = data.load_factor_images(_cfg(dataset="grid", cache_dir=tmp_path))
    assert looked_up.source.startswith("looked up") and looked_up.scale == 1
    rows = np.random.default_rng(1).integers(0, toy_sprites.FACTOR_SIZES, (300, 5))
    np.testing.assert_array_equal(looked_up.draw(rows), toy_sprites.draw(rows))
    with pytest.raises(UsageError, match="factor 3 must lie in 0..7"):
        looked_up.draw(np.array([[0, 0, 0, 8, 0]]))


def test_lookup_needs_every_combination_exactly_once(tmp_path):
    images, grid = toy_sprites.dataset()
    table = factors.factor_table(toy_sprites.FACTOR_NAMES, toy_sprites.FACTOR_SIZES)
    grid_twice = np.concatenate([grid[:-1], grid[:1]])  # one combination twice, one missing
    data.write_cache(tmp_path / "gappy", factors.factor_splits(images, grid_twice), factors=table)
    with pytest.raises(DataError, match=r"'gappy'.*every combination.*3455 distinct.*= 3456"):
        data.load_factor_images(_cfg(dataset="gappy", cache_dir=tmp_path))
    positions = grid_positions(grid[::-1], (3, 3, 6, 8, 8), "reversed")
    np.testing.assert_array_equal(positions, np.arange(len(grid))[::-1])


def test_a_cache_without_factors_reads_as_before(tmp_path):
    # What vaecli wrote before factors were kept: no `factors` array or index entry.
    bars = (np.random.default_rng(0).random((40, 4, 4, 1)) < 0.5).astype(np.uint8)
    data.write_cache(tmp_path / "old", {s: {"images": bars, "labels": None} for s in data.SPLITS})
    index = json.loads((tmp_path / "old" / "index.json").read_text())
    assert "factors" not in index and "factors" not in index["splits"]["train"]
    split = data.load_split(_cfg(dataset="old", cache_dir=tmp_path), "train")
    assert split.factors is None
    np.testing.assert_array_equal(split.images, bars)
    with pytest.raises(DataError, match="'old' has no factors of variation.*toy_sprites, dsprites, shapes3d"):
        data.load_factor_images(_cfg(dataset="old", cache_dir=tmp_path))


def test_held_out_validation_keeps_each_image_with_its_factors(tmp_path):
    images, grid = toy_sprites.dataset()
    data.write_cache(tmp_path / "trainonly", {"train": {"images": images, "labels": None, "factors": grid}})
    cfg = _cfg(dataset="trainonly", cache_dir=tmp_path, val_size=100)
    val = data.load_split(cfg, "validation")
    np.testing.assert_array_equal(val.factors, grid[-100:])
    np.testing.assert_array_equal(data.load_split(cfg, "train").factors, grid[:-100])


def test_factor_rows_and_values_are_checked():
    with pytest.raises(UsageError, match=r"shape \(n, 2\)"):
        check_rows(np.zeros((3, 3), int), (2, 2))
    with pytest.raises(UsageError, match="integer"):
        check_rows(np.zeros((3, 2)), (2, 2))
    # Values: every index with one value, else none (mock data has random ones).
    assert factors.values_of(np.array([1, 0, 1]), np.array([0.5, 0.25, 0.5]), 2) == [0.25, 0.5]
    assert factors.values_of(np.array([1, 0, 1]), np.array([0.5, 0.25, 0.7]), 2) is None
    assert factors.values_of(np.array([1, 1]), np.array([0.5, 0.5]), 2) is None  # index 0 never seen


# ------------------------------------------------------------ dSprites and shapes3d through TFDS


@pytest.mark.tensorflow
@pytest.mark.parametrize("dataset, shape, names, sizes", [
    ("dsprites", (64, 64, 1), ["shape", "scale", "orientation", "x_position", "y_position"], [3, 6, 40, 32, 32]),
    ("shapes3d", (64, 64, 3), ["floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation"],
     [10, 10, 10, 8, 4, 15]),
])
def test_tfds_factor_datasets_are_cached_with_their_factors(dataset, shape, names, sizes, tmp_path, monkeypatch):
    import tensorflow_datasets as tfds

    monkeypatch.setattr(tfds_source, "network_available", lambda *a, **k: True)  # mock_data downloads nothing
    # binarize=none: the splits' pixels as stored (mock images are grey noise)
    cfg = _cfg(dataset=dataset, cache_dir=tmp_path / "c", data_dir=tmp_path / "tfds", binarize="none")
    with tfds.testing.mock_data(num_examples=80):
        index = data.prepare(cfg)
    assert index["factors"]["names"] == names and index["factors"]["sizes"] == sizes
    # TFDS gives one split; vaecli keeps it whole as train and draws validation and test from it.
    assert {s: v["num_examples"] for s, v in index["splits"].items()} == {"train": 80, "validation": 20, "test": 20}
    train, test = data.load_split(cfg, "train"), data.load_split(cfg, "test")
    assert train.image_shape == shape and train.factors.shape == (80, len(names))
    assert (train.factors >= 0).all() and (train.factors < np.array(sizes)).all()
    picks = factors.factor_splits(train.images, train.factors)
    np.testing.assert_array_equal(test.images, picks["test"]["images"])
    np.testing.assert_array_equal(test.factors, picks["test"]["factors"])
    # Mock data is random: not every combination once, so images cannot be looked up by factors.
    with pytest.raises(DataError, match=f"'{dataset}': its train split does not hold every combination"):
        data.load_factor_images(cfg)


@pytest.mark.tensorflow
def test_tfds_factor_values_are_kept_where_consistent(tmp_path, monkeypatch):
    splits = {"train": {"images": np.zeros((6, 2, 2, 1), np.uint8), "labels": None,
                        "factor_columns": {"label_a": np.array([0, 1, 2, 0, 1, 2]),
                                           "value_a": np.array([0.0, 0.5, 1.0, 0.0, 0.5, 1.0]),
                                           "label_b": np.array([0, 0, 0, 1, 1, 1])}}}
    out, table = tfds_source.with_factors(splits, {"a": 3, "b": 2})
    assert table == {"names": ["a", "b"], "sizes": [3, 2], "values": [[0.0, 0.5, 1.0], None]}
    assert set(out) == {"train", "validation", "test"} and out["train"]["factors"].shape == (6, 2)


@pytest.mark.tensorflow
def test_a_factor_dataset_offline_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(tfds_source, "network_available", lambda *a, **k: False)
    runs_dir = tmp_path / "runs"
    dirs = [f"data.cache_dir={tmp_path / 'c'}", f"data.data_dir={tmp_path / 'tfds'}"]
    sets = [a for d in ["data.dataset=dsprites", *dirs] for a in ("--set", d)]
    out = vae_inproc("train", "--config", CONFIG, *sets, "--runs-dir", runs_dir)
    assert_error(out, 1, "dsprites", "data.manual_dir", only_line=False)
    assert run_folders(runs_dir) == [] and not (tmp_path / "c" / "dsprites").exists()
    prep = vae_inproc("data", "prepare", "shapes3d", "--cache-dir", tmp_path / "c", "--data-dir", tmp_path / "tfds")
    assert_error(prep, 1, "shapes3d", "manual_dir", only_line=False)


def test_cache_rows_unpack_only_what_is_asked(tmp_path):
    images, grid = toy_sprites.dataset()
    data.write_cache(tmp_path / "rows", {"train": {"images": images, "labels": None, "factors": grid}})
    rows = cache.read_rows(tmp_path / "rows", "train")
    np.testing.assert_array_equal(rows(np.array([5, 0, 3455])), images[[5, 0, 3455]])
    np.testing.assert_array_equal(cache.read_factors(tmp_path / "rows", "train"), grid)
