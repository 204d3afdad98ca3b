"""`vae train-features` and `vae eval-samples` on toy_sprites with its shape classifier: the
sanity figures (the test split against train, disjoint halves of train, noise images, a
one-epoch model against a longer-trained one), the JSON and its determinism, a feature
function from Python, the prior draws of every model family, and bad input (one line, its
exit code, nothing written)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_error, built_once, make_bars, tiny_overrides, toy_sprites_overrides, vae_inproc

from vaecli import config, data
from vaecli.evaluation import feature_file, feature_net, sample_quality
from vaecli.evaluation import sample_metrics as sm


@pytest.fixture(scope="module")
def shape_features(tmp_path_factory) -> Path:
    """toy_sprites' shape classifier, two epochs: its weights file (the record beside it)."""
    def build(root: Path) -> Path:
        cfg = config.load(None, toy_sprites_overrides(root / "cache"))
        return Path(feature_file.train_features(cfg.data, "shape", epochs=2, seed=0, out=root / "shape.npz")
                    ["written_to"])

    return built_once(tmp_path_factory, "toy-shape-features", build)[1]


@pytest.fixture(scope="module")
def longer_run(tmp_path_factory) -> Path:
    """The toy run's model trained for 6 epochs instead of 1."""
    from vaecli.training.start import train

    def build(root: Path) -> Path:
        cfg = config.load(None, toy_sprites_overrides(root / "cache") + ["train.epochs=6"])
        return train(cfg, root / "runs", "toy6", argv=["pytest"], progress="none")

    return built_once(tmp_path_factory, "toy-sprites-run-6", build)[1]


def test_the_record_names_dataset_shape_label_accuracy_and_hash(shape_features):
    record = json.loads(shape_features.with_suffix(".json").read_text())
    assert record["dataset"] == "toy_sprites" and record["label"] == "shape" and record["image_shape"] == [64, 64, 1]
    assert record["classes"] == [0, 1, 2] and record["sha256"] == feature_file.sha256(shape_features)
    assert record["test_accuracy"] > record["chance_accuracy"]
    # trained on the train images that are not test images: toy_sprites' test is a subset of train
    assert record["num_train"] == 3456 - record["num_test"]
    assert "not Inception" in record["kind"]


def test_sanity_figures_on_the_splits(shape_features, toy_run):
    """The test split against train is near the floor, and so are disjoint halves of train;
    noise images are far, and outside the real manifold."""
    from vaecli.rundir.layout import open_run

    _, params = feature_file.load(shape_features, (64, 64, 1))
    cfg = open_run(toy_run).config.data
    train, test = data.load_split(cfg, "train"), data.load_split(cfg, "test")
    feats = lambda x: feature_net.apply(params, x.astype(np.float32))  # noqa: E731
    # not seed 0: the test split is a block of permutation(0) of train (data.factors.SPLIT_SEED)
    perm = np.random.default_rng(12345).permutation(len(train))
    half_a, half_b = feats(train.images[perm[:864]]), feats(train.images[perm[864:1728]])
    f_test = feats(test.images)
    noise = feats((np.random.default_rng(1).random((864, 64, 64, 1)) < 0.1).astype(np.float32))
    fid_test, fid_halves, fid_noise = sm.fid(f_test, half_a), sm.fid(half_b, half_a), sm.fid(noise, half_a)
    assert max(fid_test, fid_halves) * 20 < fid_noise, (fid_test, fid_halves, fid_noise)
    assert sm.precision_recall(half_a, noise)["precision"] == 0.0
    assert sm.precision_recall(half_a, half_b)["precision"] > 0.5
    kid_test, kid_noise = sm.kid(half_a, f_test, subsets=10)["mean"], sm.kid(half_a, noise, subsets=10)["mean"]
    assert abs(kid_test) * 20 < kid_noise


def test_a_longer_trained_model_samples_better(shape_features, toy_run, longer_run):
    one = sample_quality.evaluate(toy_run, shape_features, n=500, write=False)
    six = sample_quality.evaluate(longer_run, shape_features, n=500, write=False)
    assert six["fid"] < one["fid"] and six["kid"]["mean"] < one["kid"]["mean"], (one["fid"], six["fid"])


def test_the_command_writes_one_json_and_gives_the_same_numbers_twice(shape_features, toy_run):
    args = ["eval-samples", toy_run, "--features", shape_features, "--n", "300", "--seed", "4", "--json"]
    first, second = vae_inproc(*args), vae_inproc(*args)
    assert first.code == 0, first.stderr
    a, b = json.loads(first.stdout), json.loads(second.stdout)
    for key in ("fid", "kid", "precision", "recall"):
        assert a[key] == b[key]
    written = Path(a["written_to"])
    sha = json.loads(shape_features.with_suffix(".json").read_text())["sha256"]
    assert written == toy_run / "eval" / f"samples-test-step{a['checkpoint_step']}-n300-seed4-f{sha[:12]}.json"
    doc = json.loads(written.read_text())
    assert doc["fid"] == a["fid"] and doc["features"]["sha256"] == sha and doc["features"]["kind"] == "classifier"
    assert "not Inception" in doc["features"]["note"]
    p = doc["protocol"]
    assert (p["n"], p["split"], p["seed"], p["temperature"]) == (300, "test", 4, 1.0)
    table = vae_inproc(*args[:-1])
    assert table.code == 0 and "FID" in table.stdout and "precision" in table.stdout


def test_a_feature_function_from_python_gives_the_file_s_numbers(shape_features, toy_run):
    import vaecli

    _, params = feature_file.load(shape_features, (64, 64, 1))

    def shape_classifier(images):
        return feature_net.apply(params, images)

    by_file = vaecli.sample_quality(toy_run, features=shape_features, n=200, write=False)
    by_fn = vaecli.sample_quality(toy_run, features=shape_classifier, n=200)
    assert (by_fn["fid"], by_fn["kid"], by_fn["precision"]) == (by_file["fid"], by_file["kid"], by_file["precision"])
    assert by_fn["features"] == {**by_fn["features"], "kind": "user function", "name": "shape_classifier",
                                 "sha256": None}
    fingerprint = by_fn["features"]["fingerprint"]["sha256"]
    assert Path(by_fn["written_to"]).name.endswith(f"-fshape_classifier_{fingerprint[:8]}.json")


def test_two_feature_functions_of_one_name_are_told_apart(tiny_run):
    """The fingerprint: SHA-256 of the function's float32 outputs on the seeded probe images
    (recomputed here from its documented definition); same function, same fingerprint."""
    import hashlib

    import vaecli

    def make(power):
        def pixels(images):
            return np.asarray(images, np.float64).reshape(len(images), -1) ** power
        return pixels

    first, again, other = (vaecli.sample_quality(tiny_run, features=make(p), n=64) for p in (1, 1, 2))
    probe = np.random.default_rng(0).random((8, 8, 8, 1), dtype=np.float32)
    expected = np.ascontiguousarray(probe.reshape(8, -1) ** 2, np.float32)
    assert other["features"]["fingerprint"]["sha256"] == hashlib.sha256(
        repr(expected.shape).encode() + expected.tobytes()).hexdigest()
    assert first["features"]["fingerprint"] == again["features"]["fingerprint"]
    assert first["features"]["fingerprint"]["sha256"] != other["features"]["fingerprint"]["sha256"]
    assert first["features"]["name"] == other["features"]["name"] == "pixels"
    assert first["written_to"] == again["written_to"] != other["written_to"]
    written = json.loads(Path(other["written_to"]).read_text())
    assert written["features"]["fingerprint"] == other["features"]["fingerprint"]
    assert first["fid"] != other["fid"]


@pytest.mark.parametrize("overrides", [
    ["model.prior=vamp", "model.pseudo_inputs=4", "objective.kl=mc"],
    ["model.latent_dim2=2", "objective.kl=mc"],
    ["model.latent_dim2=2", "model.hierarchy=hvae", "objective.kl=mc"],
    ["model.flow.kind=iaf", "model.flow.steps=1", "model.flow.hidden=[8]", "objective.kl=mc"],
], ids=["vamp", "two-layer", "hvae", "iaf"])
def test_prior_draws_of_every_model_family(tiny_cache, overrides, monkeypatch):
    """Batches keyed by their index: the first rows do not depend on N, a seed gives the same
    draws, another seed others (an untrained model at step 0 is enough to draw)."""
    from vaecli.compiled.encode_decode import CompiledModel
    from vaecli.models import vae as models

    monkeypatch.setattr(sample_quality, "SAMPLE_ROWS", 4)
    cfg = config.load(None, tiny_overrides(tiny_cache) + overrides)
    fn = models.functional(cfg.model, (8, 8, 1), 0)
    model = CompiledModel(fn, fn.params, (8, 8, 1))
    flat = lambda x: np.asarray(x).reshape(len(x), -1)  # noqa: E731
    seven = sample_quality.sample_features(model, cfg, 7, 0, 1.0, flat)
    assert seven.shape == (7, 64) and np.isfinite(seven).all() and (seven >= 0).all() and (seven <= 1).all()
    np.testing.assert_array_equal(sample_quality.sample_features(model, cfg, 5, 0, 1.0, flat), seven[:5])
    assert not np.array_equal(sample_quality.sample_features(model, cfg, 7, 1, 1.0, flat), seven)


@pytest.fixture(scope="module")
def ae_run(tmp_path_factory, tiny_cache) -> Path:
    from vaecli.training.start import train

    cfg = config.load(None, tiny_overrides(tiny_cache) + ["objective.name=ae", "train.epochs=1"])
    return built_once(tmp_path_factory, "ae-run", lambda root: train(cfg, root, "ae", argv=["pytest"],
                                                                      progress="none"))[1]


def test_bad_input_is_one_line_and_writes_nothing(shape_features, bars_features, toy_run, ae_run, tmp_path):
    before = sorted((toy_run / "eval").glob("samples-*")) if (toy_run / "eval").exists() else []
    assert_error(vae_inproc("eval-samples", ae_run, "--features", bars_features), 1, "objective.name=ae",
                 "no prior to sample")
    assert_error(vae_inproc("eval-samples", toy_run, "--features", bars_features), 2, "(8, 8, 1)", "(64, 64, 1)",
                 "vae train-features")
    assert_error(vae_inproc("eval-samples", toy_run, "--features", shape_features, "--n", "5000"), 2,
                 "--n 5000", "only 864 images")
    changed = tmp_path / "changed"
    shutil.copy(shape_features, changed.with_suffix(".npz"))
    shutil.copy(shape_features.with_suffix(".json"), changed.with_suffix(".json"))
    with open(changed.with_suffix(".npz"), "r+b") as f:
        f.seek(-1, 2)
        last = f.read(1)
        f.seek(-1, 2)
        f.write(bytes([last[0] ^ 1]))
    assert_error(vae_inproc("eval-samples", toy_run, "--features", changed.with_suffix(".json")), 1,
                 "SHA-256", "does not match")
    assert_error(vae_inproc("eval-samples", toy_run, "--features", tmp_path / "none.npz"), 2, "no record")
    assert_error(vae_inproc("eval-samples", toy_run, env={"XDG_CACHE_HOME": str(tmp_path / "xdg")}), 2,
                 "no feature classifier for 'toy_sprites'", "vae train-features")
    assert_error(vae_inproc("eval-samples", toy_run, "--n", "1"), 2, "--n 1")
    assert_error(vae_inproc("eval-samples", toy_run, "--temperature", "0"), 2, "--temperature")
    from vaecli.rundir.layout import open_run

    cache = open_run(toy_run).config.data.cache_dir
    assert_error(vae_inproc("train-features", "--dataset", "toy_sprites", "--label", "colour",
                            "--set", f"data.cache_dir={cache}", "--out", tmp_path / "f"), 2,
                 "--label colour", "shape")
    assert not (tmp_path / "f.npz").exists()
    same = {"images": make_bars(64, 0), "labels": make_bars(64, 0)[:, :, :, 0].all(axis=2).argmax(axis=1)}
    data.write_cache(tmp_path / "c" / "same", {"train": same, "validation": same, "test": same})
    assert_error(vae_inproc("train-features", "--dataset", "same", "--set", f"data.cache_dir={tmp_path / 'c'}",
                            "--out", tmp_path / "f"), 1, "every training image is also a test image")
    assert not (tmp_path / "f.npz").exists() and not (tmp_path / "f.json").exists()
    after = sorted((toy_run / "eval").glob("samples-*")) if (toy_run / "eval").exists() else []
    assert after == before


def test_a_feature_file_is_replaced_as_a_pair(bars_features, tmp_path, monkeypatch):
    """Weights and record are written in full, then renamed, the weights first: a failure
    before the renames leaves the old pair as it was and no other file; a process stopped
    between the renames leaves the new weights, whose pending record read_record takes."""
    import errno
    import os

    from vaecli import files
    from vaecli.errors import StorageError

    cfg = config.load(None, [f"data.cache_dir={bars_features.parent / 'cache'}", "data.dataset=bars_rows"])
    target = tmp_path / "rows.npz"
    shutil.copy(bars_features, target)
    shutil.copy(bars_features.with_suffix(".json"), target.with_suffix(".json"))
    old = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def full_disk(path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    with monkeypatch.context() as m:
        m.setattr(files, "write_json", full_disk)
        with pytest.raises(StorageError, match="No space left"):
            feature_file.train_features(cfg.data, "label", epochs=1, seed=1, out=target)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == old

    replace = os.replace

    def stopped_before_the_record(src, dst):
        if str(src).endswith(".json.pending"):
            raise KeyboardInterrupt
        replace(src, dst)

    with monkeypatch.context() as m:
        m.setattr(os, "replace", stopped_before_the_record)
        with pytest.raises(KeyboardInterrupt):
            feature_file.train_features(cfg.data, "label", epochs=1, seed=1, out=target)
    assert target.with_suffix(".json").read_bytes() == old["rows.json"] and target.read_bytes() != old["rows.npz"]
    record, _ = feature_file.read_record(target)
    assert record["seed"] == 1 and record["sha256"] == feature_file.sha256(target)
    assert feature_file.load(target, (8, 8, 1))[0] == record
