"""The data layer: TFDS preparation, vaecli's compact cache, splits and binarization; the
data errors of the command line; TFDS datasets (mock data) that train and evaluate."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest
from helpers import (
    CONFIG,
    ENV,
    ROOT,
    TINY,
    assert_error,
    run_folders,
    train_and_eval,
    vae_inproc,
)

from vaecli import config, data
from vaecli.data import tfds_source
from vaecli.errors import DataError


def _cfg(**data_keys) -> config.DataConfig:
    return config.load(None, [f"data.{k}={v}" for k, v in data_keys.items()]).data


def test_cache_round_trip_binary_and_grayscale(tmp_path):
    rng = np.random.default_rng(0)
    binary = (rng.random((50, 5, 5, 1)) < 0.3).astype(np.uint8)
    gray = rng.integers(0, 256, (40, 6, 6, 1), dtype=np.uint8)
    labels = rng.integers(0, 10, 40)
    data.write_cache(tmp_path / "bin", {"train": {"images": binary, "labels": None},
                                        "test": {"images": binary[:7], "labels": None}})
    data.write_cache(tmp_path / "gray", {"train": {"images": gray, "labels": labels}})

    with np.load(tmp_path / "bin" / "train.npz") as z:
        assert "bits" in z and z["bits"].shape == (50, 4)  # 25 pixels packed into 4 bytes
    b = data.load_split(_cfg(dataset="bin", cache_dir=tmp_path, val_size=10), "train")
    np.testing.assert_array_equal(b.images, binary[:40])  # the last 10 are the held-out validation
    assert b.scale == 1 and b.labels is None
    v = data.load_split(_cfg(dataset="bin", cache_dir=tmp_path, val_size=10), "validation")
    np.testing.assert_array_equal(v.images, binary[40:])
    t = data.load_split(_cfg(dataset="bin", cache_dir=tmp_path), "test")
    np.testing.assert_array_equal(t.images, binary[:7])

    g = data.load_split(_cfg(dataset="gray", cache_dir=tmp_path, binarize="none", val_size=5), "train")
    np.testing.assert_array_equal(g.images, gray[:35])
    np.testing.assert_array_equal(g.labels, labels[:35])
    assert g.scale == 255 and g.flat.shape == (35, 36)


def test_binarization_modes(tmp_path):
    gray = np.random.default_rng(1).integers(0, 256, (400, 6, 6, 1), dtype=np.uint8)
    data.write_cache(tmp_path / "g", {s: {"images": gray, "labels": None} for s in data.SPLITS})
    load = lambda mode, split: data.load_split(_cfg(dataset="g", cache_dir=tmp_path, binarize=mode), split)

    static = load("static", "train")
    assert static.scale == 1 and set(np.unique(static.images)) <= {0, 1}
    np.testing.assert_array_equal(static.images, load("static", "train").images)  # fixed, reproducible
    # A Bernoulli sample of the intensities: its mean matches the mean intensity.
    assert abs(static.images.mean() - gray.mean() / 255) < 0.01

    dyn_train, dyn_test = load("dynamic", "train"), load("dynamic", "test")
    assert dyn_train.scale == 255 and dyn_train.images.max() > 1  # resampled on the device
    assert dyn_test.scale == 1  # evaluation data are binarized once, reproducibly
    none = load("none", "test")
    assert none.scale == 255
    np.testing.assert_array_equal(none.images, gray)


def test_unknown_split_and_damaged_cache(tmp_path):
    data.write_cache(tmp_path / "d", {"train": {"images": np.zeros((20, 2, 2, 1), np.uint8), "labels": None}})
    with pytest.raises(DataError, match="unknown split"):
        data.load_split(_cfg(dataset="d", cache_dir=tmp_path, val_size=5), "dev")
    with pytest.raises(DataError, match="no 'test' split"):
        data.load_split(_cfg(dataset="d", cache_dir=tmp_path, val_size=5), "test")
    with pytest.raises(DataError, match="val_size"):
        data.load_split(_cfg(dataset="d", cache_dir=tmp_path, val_size=20), "train")
    (tmp_path / "d" / "train.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="damaged"):
        data.load_split(_cfg(dataset="d", cache_dir=tmp_path, val_size=5), "train")


@pytest.mark.tensorflow
def test_offline_without_files_fails_fast_with_the_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(tfds_source, "network_available", lambda *a, **k: False)
    cfg = _cfg(dataset="binarized_mnist", cache_dir=tmp_path / "c", data_dir=tmp_path / "tfds")
    with pytest.raises(DataError, match="data.manual_dir"):
        data.load_split(cfg, "train")
    assert not (tmp_path / "c" / "binarized_mnist" / "index.json").exists()
    with pytest.raises(DataError, match="not a folder"):
        data.load_split(_cfg(dataset="binarized_mnist", cache_dir=tmp_path / "c", data_dir=tmp_path / "tfds",
                             manual_dir=tmp_path / "missing"), "train")


@pytest.mark.tensorflow
def test_unknown_tfds_dataset(tmp_path):
    with pytest.raises(DataError, match="unknown dataset 'no_such_dataset_xyz'"):
        data.load_split(_cfg(dataset="no_such_dataset_xyz", cache_dir=tmp_path), "train")


@pytest.mark.tensorflow
def test_mock_mnist_through_tfds_then_cache(tmp_path, monkeypatch):
    """Another TFDS dataset (mnist, grayscale with labels) through the real TFDS code path."""
    import tensorflow_datasets as tfds

    monkeypatch.setattr(tfds_source, "network_available", lambda *a, **k: True)  # mock_data downloads nothing
    cfg = _cfg(dataset="mnist", cache_dir=tmp_path / "c", data_dir=tmp_path / "tfds", binarize="dynamic")
    with tfds.testing.mock_data(num_examples=60):
        train = data.load_split(cfg, "train")
    assert train.images.shape == (60, 28, 28, 1) and train.scale == 255 and train.labels.shape == (60,)
    # Later loads come from vaecli's cache, with no TFDS at all.
    again = data.load_split(cfg, "train")
    np.testing.assert_array_equal(again.images, train.images)
    assert set(np.unique(data.load_split(cfg, "test").images)) <= {0, 1}


@pytest.mark.tensorflow
def test_train_features_on_mnist_digit_labels(tmp_path, monkeypatch):
    """`vae train-features` on mnist's digit labels, as a user with TFDS online runs it: the
    real TFDS code path under tfds.testing.mock_data (random images and labels), then the
    classifier; its record's test accuracy is that of its weights on the cached test split."""
    import tensorflow_datasets as tfds
    from helpers import sets, vae_inproc

    from vaecli.evaluation import feature_file, feature_net

    def digits(builder, split, **kwargs):
        """Mock mnist whose label is drawn as a bar (column 2 + 2·label), the splits drawn
        apart (TFDS's own mock data repeats one set of images in every split)."""
        import tensorflow as tf

        if split not in ("train", "test"):
            raise ValueError(split)  # a split the mock does not have, as mnist has no validation split
        rng = np.random.default_rng(["train", "test"].index(split))
        labels = rng.integers(0, 10, 256)
        images = rng.integers(0, 100, (256, 28, 28, 1), dtype=np.uint8)
        images[np.arange(256), :, 2 + 2 * labels] = 255
        return tf.data.Dataset.from_tensor_slices({"image": images, "label": labels})

    monkeypatch.setattr(tfds_source, "network_available", lambda *a, **k: True)  # mock_data downloads nothing
    keys = [f"data.cache_dir={tmp_path / 'c'}", f"data.data_dir={tmp_path / 'tfds'}", "data.val_size=64"]
    with tfds.testing.mock_data(as_dataset_fn=digits):
        out = vae_inproc("train-features", "--dataset", "mnist", "--label", "label", *sets(keys), "--epochs", "3",
                         "--out", tmp_path / "digits.npz", "--json")
    assert out.code == 0, out.stderr
    rec = json.loads(out.stdout)
    test = data.load_split(_cfg(dataset="mnist", cache_dir=tmp_path / "c", val_size=64), "test")  # the cache's
    assert (rec["dataset"], rec["label"], rec["image_shape"], rec["num_test"], rec["num_train"]) == \
        ("mnist", "label", [28, 28, 1], 256, 192)
    assert rec["classes"] == list(range(10)) and rec["test_accuracy"] > 2 * rec["chance_accuracy"]
    _, params = feature_file.load(tmp_path / "digits.npz", (28, 28, 1))
    labels = np.searchsorted(rec["classes"], test.labels)
    assert feature_net.accuracy(params, test.images.astype(np.float32) / test.scale, labels) == rec["test_accuracy"]


@pytest.mark.tensorflow
def test_binarized_mnist_through_tfds_from_the_manual_dir(bmnist_dir, bmnist_images, tmp_path, monkeypatch):
    """TFDS's own binarized_mnist builder on the shared files (their checksums verified by
    TFDS), into vaecli's cache: each split holds exactly the images of its file, in the
    order TFDS gives them (it shuffles the examples it writes by their key). TFDS is
    asked to stop after the first 300 images of each split (its `max_examples_per_split`,
    made for tests) because it PNG-encodes every image it prepares (~30 s for 70,000)."""
    import functools

    import tensorflow_datasets as tfds

    monkeypatch.setattr(tfds.download, "DownloadConfig",
                        functools.partial(tfds.download.DownloadConfig, max_examples_per_split=300))
    cfg = _cfg(dataset="binarized_mnist", manual_dir=bmnist_dir, data_dir=tmp_path / "tfds", cache_dir=tmp_path / "c")
    index = data.prepare(cfg)
    assert index["dataset"] == "binarized_mnist"
    assert {s: (v["num_examples"], v["shape"], v["binary"]) for s, v in index["splits"].items()} == {
        s: (300, [28, 28, 1], True) for s in data.SPLITS}
    for split in data.SPLITS:
        loaded = data.load_split(cfg, split)
        assert loaded.scale == 1 and loaded.labels is None
        np.testing.assert_array_equal(_rows_sorted(loaded.images), _rows_sorted(bmnist_images[split][:300]))
    # what `train` reads is what TFDS serves for its train split, image for image
    builder = tfds.builder("binarized_mnist", data_dir=tmp_path / "tfds")
    served = np.stack([x["image"] for x in tfds.as_numpy(builder.as_dataset(split="train"))])
    np.testing.assert_array_equal(data.load_split(cfg, "train").images, served)


def _rows_sorted(images: np.ndarray) -> np.ndarray:
    flat = images.reshape(len(images), -1)
    return flat[np.lexsort(flat.T[::-1])]


def test_binarized_mnist_cache_holds_the_whole_files_compactly(bmnist_cache, bmnist_images):
    cfg, _ = bmnist_cache
    splits = {s: data.load_split(cfg.data, s) for s in data.SPLITS}
    assert {s: len(v) for s, v in splits.items()} == {"train": 50000, "validation": 10000, "test": 10000}
    train = splits["train"]
    assert train.image_shape == (28, 28, 1) and train.scale == 1
    np.testing.assert_array_equal(train.images, bmnist_images["train"])  # 8 pixels a byte, and back
    assert 0.10 < train.images.mean() < 0.16  # about 13% of binarized MNIST pixels are on
    folder = data.cache_folder(cfg.data)
    assert sum(f.stat().st_size for f in folder.iterdir()) < 8 * 2**20  # compact enough to carry


def test_cached_data_loads_without_tensorflow(bmnist_cache):
    cfg, _ = bmnist_cache
    code = ("import sys; from vaecli import config, data; "
            f"cfg = config.load(None, ['data.cache_dir={cfg.data.cache_dir}']); "
            "s = data.load_split(cfg.data, 'train'); "
            "print(len(s), 'tensorflow' in sys.modules, 'tensorflow_datasets' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["50000", "False", "False"]


# ------------------------------------------------------------- vae data prepare | list


def test_vae_data_list_shows_the_tiny_cache(tiny_cache):
    from helpers import vae_inproc

    out = vae_inproc("data", "list", "--cache-dir", tiny_cache, "--json")
    assert out.code == 0, out.stderr
    (entry,) = [e for e in json.loads(out.stdout) if e["dataset"] == "tiny_bars"]
    assert entry["folder"] == str(tiny_cache / "tiny_bars")
    assert {s: (v["num_examples"], v["shape"], v["binary"]) for s, v in entry["splits"].items()} == {
        "train": (640, [8, 8, 1], True), "validation": (128, [8, 8, 1], True), "test": (128, [8, 8, 1], True)}
    assert entry["bytes"] == sum(f.stat().st_size for f in (tiny_cache / "tiny_bars").iterdir())
    table = vae_inproc("data", "list", "--cache-dir", tiny_cache)
    assert table.code == 0
    row = next(line for line in table.stdout.splitlines() if line.startswith("tiny_bars"))
    assert row.split()[:5] == ["tiny_bars", "train", "640", "8x8x1", "binary"] and str(tiny_cache) in row


@pytest.mark.tensorflow
def test_vae_data_prepare_then_list(tmp_path, monkeypatch):
    """`vae data prepare` through TFDS's real code path (mnist under tfds.testing.mock_data)."""
    import tensorflow_datasets as tfds
    from helpers import vae_inproc

    monkeypatch.setattr(tfds_source, "network_available", lambda *a, **k: True)  # mock_data downloads nothing
    with tfds.testing.mock_data(num_examples=30):
        out = vae_inproc("data", "prepare", "mnist", "--cache-dir", tmp_path / "c", "--data-dir", tmp_path / "tfds")
    assert out.code == 0, out.stderr
    assert out.stdout.strip() == str(tmp_path / "c" / "mnist")
    listed = json.loads(vae_inproc("data", "list", "--cache-dir", tmp_path / "c", "--json").stdout)
    assert [e["dataset"] for e in listed] == ["mnist"]
    assert listed[0]["splits"]["train"] == {"num_examples": 30, "shape": [28, 28, 1], "binary": False, "labels": True}
    # the cache is what training reads, without TFDS
    assert data.load_split(_cfg(dataset="mnist", cache_dir=tmp_path / "c"), "test").images.shape[1:] == (28, 28, 1)


@pytest.mark.tensorflow
def test_vae_data_prepare_bad_input_writes_nothing(tmp_path):
    from helpers import assert_error, vae_inproc

    dirs = ["--cache-dir", tmp_path / "c", "--data-dir", tmp_path / "tfds"]
    # the one line before TensorFlow is imported says what is being done, then the error
    assert_error(vae_inproc("data", "prepare", "no_such_dataset_xyz", *dirs), 1, "unknown dataset",
                 "no_such_dataset_xyz", only_line=False)
    # no network here and no files: says at once which option brings the files
    assert_error(vae_inproc("data", "prepare", "binarized_mnist", *dirs), 1, "binarized_mnist", "manual_dir")
    assert_error(vae_inproc("data", "prepare", "binarized_mnist", "--manual-dir", tmp_path / "missing", *dirs), 1,
                 "not a folder")
    assert not (tmp_path / "c").exists()
    assert not (tmp_path / "tfds").exists()
    (tmp_path / "file").write_text("")
    assert_error(vae_inproc("data", "list", "--cache-dir", tmp_path / "file"), 1, "is a file")
    empty = vae_inproc("data", "list", "--cache-dir", tmp_path / "none")
    assert empty.code == 0 and empty.stdout == "" and "no prepared datasets" in empty.stderr


# Every test that imports TensorFlow is in this module, so that one pytest-xdist worker
# (mostly) pays its import (~6 s of CPU), not each of them.

# ------------------------------------------------- the command line: data errors exit 1


@pytest.mark.tensorflow
def test_unknown_dataset_exits_1(tmp_path):
    runs_dir = tmp_path / "runs"
    (tmp_path / "cache").mkdir()
    (tmp_path / "tfds").mkdir()
    out = vae_inproc("train", "--config", CONFIG, "--set", "data.dataset=no_such_dataset_xyz",
              "--set", f"data.cache_dir={tmp_path / 'cache'}", "--set", f"data.data_dir={tmp_path / 'tfds'}",
              "--runs-dir", runs_dir)
    assert_error(out, 1, "unknown dataset", "no_such_dataset_xyz", only_line=False)
    assert run_folders(runs_dir) == []


@pytest.mark.tensorflow
def test_offline_without_data_fails_fast_naming_manual_dir(tmp_path, offline):
    runs_dir = tmp_path / "runs"
    t = time.monotonic()
    out = vae_inproc("train", "--config", CONFIG, *offline, "--runs-dir", runs_dir)
    elapsed = time.monotonic() - t
    assert_error(out, 1, "binarized_mnist", "data.manual_dir", only_line=False)
    assert elapsed < 60  # TFDS alone would retry its download for minutes
    assert run_folders(runs_dir) == []
    assert list((tmp_path / "cache").iterdir()) == []


# ---------------------------------------------------------------- datasets through TFDS mock data


@pytest.mark.tensorflow
@pytest.mark.parametrize("dataset, overrides, shape", [
    ("fashion_mnist", ["data.binarize=dynamic"], (28, 28, 1)),
    ("cifar10", ["data.binarize=none", "model.kind=conv", "model.channels=[4,8]", "model.likelihood=logistic",
                 "model.output_bias=data_mean"], (32, 32, 3)),
])
def test_mock_datasets_train_and_evaluate(dataset, overrides, shape, tmp_path, monkeypatch):
    import tensorflow_datasets as tfds

    monkeypatch.setattr(tfds_source, "network_available", lambda *a, **k: True)  # mock_data downloads nothing
    cfg = config.load(None, [f"data.dataset={dataset}", f"data.cache_dir={tmp_path / 'c'}",
                             f"data.data_dir={tmp_path / 'tfds'}", "data.val_size=16", "model.hidden=[16]",
                             "model.latent_dim=4", "train.epochs=1", "train.batch_size=16", "eval.grid=4",
                             "log.progress=none", "log.tensorboard=false", *overrides])
    with tfds.testing.mock_data(num_examples=64):
        split = data.load_split(cfg.data, "train")
    assert split.image_shape == shape
    names = tfds.builder(dataset, data_dir=tmp_path / "tfds").info.features["label"].names  # the ClassLabel's
    assert split.class_names == tuple(names) and split.num_classes == len(names) == 10
    path, _, res = train_and_eval(cfg, tmp_path, dataset)
    meta = json.loads((path / "meta.json").read_text())["data"]
    assert meta["image_shape"] == list(shape) and meta["classes"] == names
    # both likelihoods here are discrete (gaussian's null bits/dim: test_each_choice_trains_and_evaluates):
    # mock images are uniform noise: 8 bits/dim is the floor for 8-bit colour (an untrained
    # logistic of scale 1 pays ~10); binarized grayscale pays about 1 bit per pixel
    lo, hi = (7.9, 11) if dataset == "cifar10" else (0.3, 1.5)
    assert lo < res["bits_per_dim"] < hi


def test_the_tiny_cache_loads_without_tensorflow(tiny_cache):
    """A GPU machine has no TensorFlow: loading a prepared dataset from the cache never
    imports it (here importing it would fail)."""
    code = ("import sys; sys.modules['tensorflow'] = None; sys.modules['tensorflow_datasets'] = None\n"
            "from vaecli import config, data\n"
            f"cfg = config.load(None, ['data.dataset={TINY}', 'data.cache_dir={tiny_cache}'])\n"
            "s = data.load_split(cfg.data, 'test')\n"
            "assert len(s) == 128 and 'tensorflow' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
            "print('ok')")
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stderr
