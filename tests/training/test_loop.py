"""The trainer: real training runs, the run folder contract, compile-once, exact randomness."""
from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import assert_same_bits, final_state

from vaecli import config, data
from vaecli.compiled import epoch, optimizer
from vaecli.compiled import state as state_lib
from vaecli.evaluation import elbo as evaluate
from vaecli.evaluation import sample
from vaecli.rundir import layout as runs
from vaecli.rundir import metrics
from vaecli.rundir.checkpoints import Checkpoints
from vaecli.training import start as train


def test_run_folder_contract(tiny_run, tiny_config):
    run = runs.open_run(tiny_run)
    assert run.config == tiny_config  # config.yaml is the resolved config
    meta = json.loads((tiny_run / "meta.json").read_text())
    assert {"vaecli_version", "versions", "devices", "argv", "start_time", "data"} <= set(meta)
    assert {"jax", "flax"} <= set(meta["versions"]) and meta["argv"] == ["pytest"]

    recs = metrics.read(tiny_run)
    tr = [r for r in recs if r["split"] == "train"]
    va = [r for r in recs if r["split"] == "validation"]
    assert [r["epoch"] for r in tr] == [1, 2, 3] and [r["epoch"] for r in va] == [1, 2, 3]
    steps_per_epoch = 640 // 32
    assert [r["step"] for r in tr] == [steps_per_epoch * e for e in (1, 2, 3)]
    for r in tr:
        assert {"loss", "recon", "kl", "examples_per_s", "elapsed_s"} <= set(r)
        assert r["loss"] == pytest.approx(r["recon"] + r["kl"], rel=1e-5)
    for r in va:
        assert r["elbo"] == pytest.approx(-(r["recon"] + r["kl"]))
    assert list(tiny_run.glob("events.out.tfevents.*")), "TensorBoard events are written"

    with Checkpoints(run.checkpoint_dir, read_only=True) as ck:
        assert ck.steps() == [steps_per_epoch * e for e in (1, 2, 3)]
    pngs = sorted(p.name for p in (tiny_run / "samples").glob("*.png"))
    assert pngs == sorted([f"{kind}-step{steps_per_epoch * e}.png" for kind in ("prior", "recon") for e in (1, 2, 3)])

    summary = json.loads((tiny_run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["last_checkpoint_step"] == 3 * steps_per_epoch
    assert summary["compile_s"] > 0 and summary["epoch_s_median"] > 0
    assert summary["final_validation"] == va[-1]


def test_same_seed_same_bits_other_seed_other_bits(tmp_path, tiny_config, tiny_run):
    again = train.train(tiny_config, tmp_path, "again", argv=[], progress="none")
    a, _ = final_state(tiny_run)
    b, _ = final_state(again)
    assert_same_bits(a, b)
    other = train.train(config.replace(tiny_config, seed=1), tmp_path, "other", argv=[], progress="none")
    c, _ = final_state(other)
    assert not np.array_equal(np.asarray(a["params"]["decoder"]["net"]["dense0"]["kernel"]),
                              np.asarray(c["params"]["decoder"]["net"]["dense0"]["kernel"]))


def test_continuing_from_a_checkpoint_reproduces_the_run_exactly(tiny_run):
    """Randomness is a function of (seed, step): epoch 3 replayed from the epoch-2 checkpoint
    lands on the bits of the uninterrupted run's final checkpoint."""
    run = runs.open_run(tiny_run)
    with Checkpoints(run.checkpoint_dir, read_only=True) as ck:
        mid, final = ck.steps()[1], ck.steps()[2]
    state, _ = final_state(tiny_run, mid)
    fn, tx, _ = state_lib.init_state(run.config, run.image_shape)
    train_split = data.load_split(run.config.data, "train")
    epoch_fn = epoch.make_epoch_fn(fn, tx, run.config, len(train_split), train_split.scale)
    replayed, _ = epoch_fn(state, jax.device_put(train_split.flat))
    expected, _ = final_state(tiny_run, final)
    assert_same_bits(replayed, expected)


def test_dynamic_binarization_resamples_on_the_device():
    x = np.array([[0, 64, 128, 191, 255]], np.uint8).repeat(4000, axis=0)
    a = np.asarray(epoch.to_inputs(x, jax.random.key(0), 255, True))
    b = np.asarray(epoch.to_inputs(x, jax.random.key(1), 255, True))
    assert set(np.unique(a)) == {0.0, 1.0} and not np.array_equal(a, b)
    np.testing.assert_allclose(a.mean(0), x[0] / 255, atol=0.03)  # a Bernoulli draw of the intensities
    np.testing.assert_array_equal(np.asarray(epoch.to_inputs(x, jax.random.key(0), 255, False)), x / np.float32(255))


def test_dynamic_binarization_run(tmp_path, tiny_cache, tiny_config):
    gray = (np.random.default_rng(3).random((256, 8, 8, 1)) * 255).astype(np.uint8)
    data.write_cache(tiny_cache / "tiny_gray", {s: {"images": gray, "labels": None} for s in data.SPLITS})
    cfg = config.replace(tiny_config, data={"dataset": "tiny_gray", "binarize": "dynamic"}, train={"epochs": 2})
    path = train.train(cfg, tmp_path, "dyn", argv=[], progress="none")
    assert json.loads((path / "summary.json").read_text())["status"] == "completed"
    assert json.loads((path / "meta.json").read_text())["data"]["train_scale"] == 255


def test_sample_and_eval_need_only_the_run_folder(tiny_run, tmp_path, monkeypatch):
    """A copy of the run folder elsewhere (the data cache aside, where config.yaml points), the
    original out of reach and another working folder: sample and eval-elbo work from it."""
    import os
    import shutil

    moved = tmp_path / "elsewhere" / "run"
    shutil.copytree(tiny_run, moved)
    before = sorted(p.relative_to(tiny_run) for p in tiny_run.rglob("*"))
    hidden = tiny_run.with_name(tiny_run.name + "-hidden")
    os.rename(tiny_run, hidden)
    monkeypatch.chdir(tmp_path)
    try:
        _sample_and_eval(moved, tmp_path)
    finally:
        os.rename(hidden, tiny_run)
    assert sorted(p.relative_to(tiny_run) for p in tiny_run.rglob("*")) == before  # nothing written there


def _sample_and_eval(tiny_run, tmp_path):
    res = sample.sample(tiny_run, n=10, seed=3, out=tmp_path)
    arr = np.load(res["npy"])
    assert arr.shape == (10, 8, 8, 1) and 0 <= arr.min() and arr.max() <= 1
    np.testing.assert_array_equal(arr, np.load(sample.sample(tiny_run, n=10, seed=3, out=tmp_path / "b")["npy"]))

    r1 = evaluate.evaluate(tiny_run, split="test", samples=1, seed=0)["results"][0]
    r50 = evaluate.evaluate(tiny_run, split="test", samples=50, seed=0)["results"][0]
    assert r1["num_examples"] == r50["num_examples"] == 128
    assert r50["log_likelihood"] > r1["log_likelihood"]  # the bound tightens with K
    assert r50["log_likelihood"] > r50["elbo"]
    saved = json.loads((tiny_run / "eval" / f"test-step{r50['protocol']['checkpoint_step']}-k50.json").read_text())
    assert saved["log_likelihood"] == r50["log_likelihood"] and saved["protocol"]["samples"] == 50
    assert evaluate.evaluate(tiny_run, split="test", samples=50, seed=0)["results"][0]["log_likelihood"] == r50["log_likelihood"]


@pytest.mark.parametrize("precision, marker", [("float32", "HIGHEST"), ("tf32", "HIGH"), ("bfloat16", "bf16")])
def test_train_precision_sets_the_matmuls_of_the_step(tiny_config, precision, marker):
    cfg = config.replace(tiny_config, train={"precision": precision})
    split = data.load_split(cfg.data, "train")
    fn, tx, state = state_lib.init_state(cfg, split.image_shape, train=split)
    text = epoch.make_epoch_fn(fn, tx, cfg, len(split), split.scale).lower(state, split.flat).as_text()
    dots = [line for line in text.splitlines() if "dot_general" in line]
    assert dots and all(marker in line for line in dots)
    if precision != "bfloat16":
        assert not any("bf16" in line for line in dots)



def test_a_zero_weight_decay_is_skipped_in_a_single_run_with_the_same_numbers(tiny_config):
    split = data.load_split(tiny_config.data, "train")
    fn, tx, state = state_lib.init_state(tiny_config, split.image_shape, train=split)
    # the same optimizer, deaf to the caller's hint: it adds weight_decay·θ = 0 every step
    always = optax.GradientTransformation(tx.init, lambda u, s, p=None, **hint: tx.update(u, s, p))
    ends, accessed = [], []
    for t in (tx, always):
        run = epoch.make_epoch_fn(fn, t, tiny_config, len(split), split.scale).lower(state, split.flat).compile()
        cost = run.cost_analysis()
        accessed.append((cost[0] if isinstance(cost, list) else cost)["bytes accessed"])
        ends.append(run(jax.tree.map(jnp.array, state), split.flat)[0])
    assert accessed[0] < accessed[1]  # the skipped stage no longer reads the parameters
    assert jax.tree.structure(ends[0]) == jax.tree.structure(ends[1])  # same state, same checkpoint
    # the same numbers up to float32 rounding (XLA contracts g + 0·θ into Adam's loops differently)
    for a, b in zip(jax.tree.leaves(ends[0]["params"]), jax.tree.leaves(ends[1]["params"])):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    # the stage itself: skipped only when told, otherwise g + weight_decay·θ
    g, p = {"w": jnp.array([1.0, -2.0])}, {"w": jnp.array([3.0, 4.0])}
    stage = optimizer.decayed_weights(0.5)
    assert np.allclose(stage.update(g, stage.init(p), p)[0]["w"], [2.5, 0.0])
    assert np.array_equal(stage.update(g, stage.init(p), p, weight_decay_is_zero=True)[0]["w"], g["w"])
