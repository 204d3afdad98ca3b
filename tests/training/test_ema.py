"""EMA of the parameters (train.ema_decay): updated inside the compiled step, carried in the
training state (replicas, bit-identical resume), checkpointed; validation, pictures,
eval-elbo and sample use it and say so; --raw-params selects the raw parameters; runs
without EMA keep their state layout."""
from __future__ import annotations

import json
import shutil

import jax
import numpy as np
import pytest
import yaml
from helpers import (
    CONFIG,
    assert_error,
    assert_same_bits,
    built_once,
    run_folders,
    sets,
    tiny_overrides,
    vae_inproc,
)

from vaecli import config, data
from vaecli.compiled import state as state_lib
from vaecli.compiled.epoch import make_epoch_fn
from vaecli.evaluation import elbo as evaluate
from vaecli.rundir import layout as runs
from vaecli.rundir import metrics, restore
from vaecli.training import resume as resume_lib
from vaecli.training import start as train

DECAY = 0.9
LAYOUT = {"params", "opt_state", "step", "rng", "skipped"}  # run format 2's state


def raw_state(path, step=None):
    run = runs.open_run(path)
    _, state, chosen, _ = restore.load_state(run.config, run.image_shape, run.checkpoint_dir, step, raw_params=True)
    return state_lib.checkpointed(state), chosen  # what the checkpoint holds (state["hyper"] comes from config.yaml)


@pytest.fixture(scope="module")
def ema_config(tiny_config):
    return config.replace(tiny_config, train={"ema_decay": DECAY})


@pytest.fixture(scope="module")
def ema_run(ema_config, tmp_path_factory):
    return built_once(tmp_path_factory, "ema", lambda root: train.train(
        ema_config, root, "ema", argv=["pytest"], progress="none"))[1]


@pytest.mark.parametrize("value", ["1", "1.5", "-0.1"])
def test_ema_decay_outside_0_1_is_one_line(value, tiny_cache, tmp_path):
    out = vae_inproc("train", "--config", CONFIG, *sets(tiny_overrides(tiny_cache)),
                     "--set", f"train.ema_decay={value}", "--runs-dir", tmp_path)
    assert_error(out, 2, "train.ema_decay", "[0, 1)")
    assert run_folders(tmp_path) == []


def test_one_step_moves_the_average_toward_the_new_parameters(ema_config):
    """One compiled step on the whole (tiny) split: ema = d·θ0 + (1 − d)·θ1."""
    cfg = config.replace(ema_config, train={"batch_size": 640})
    split = data.load_split(cfg.data, "train")
    fn, tx, state = state_lib.init_state(cfg, split.image_shape, train=split)
    theta0 = jax.tree.map(np.array, state["params"])
    np.testing.assert_array_equal(jax.tree.leaves(state["ema"])[0], jax.tree.leaves(theta0)[0])
    epoch = make_epoch_fn(fn, tx, cfg, len(split), split.scale)
    state, _ = epoch(state, jax.numpy.asarray(split.flat))
    assert int(state["step"]) == 1
    for e, t0, t1 in zip(jax.tree.leaves(state["ema"]), jax.tree.leaves(theta0), jax.tree.leaves(state["params"])):
        np.testing.assert_allclose(np.asarray(e), DECAY * t0 + (1 - DECAY) * np.asarray(t1), rtol=1e-5, atol=1e-7)
    assert any(not np.array_equal(np.asarray(e), np.asarray(t))
               for e, t in zip(jax.tree.leaves(state["ema"]), jax.tree.leaves(state["params"])))


def test_ema_leaves_training_unchanged_and_is_checkpointed(ema_run, tiny_run):
    ema_state, step = raw_state(ema_run)
    plain_state, plain_step = raw_state(tiny_run)
    assert step == plain_step == 60
    assert set(ema_state) == LAYOUT | {"ema"} and set(plain_state) == LAYOUT
    # the average only watches: the raw parameters are those of the same run without it
    assert_same_bits(ema_state["params"], plain_state["params"])
    assert jax.tree.structure(ema_state["ema"]) == jax.tree.structure(ema_state["params"])
    assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(ema_state["ema"]),
                                                         jax.tree.leaves(ema_state["params"])))


def test_resume_with_ema_is_bit_identical(ema_config, ema_run, tmp_path):
    path = train.train(config.replace(ema_config, train={"epochs": 2}), tmp_path, "split", argv=["pytest"],
                       progress="none")
    resume_lib.resume_run(path, ["train.epochs=3"], argv=["pytest"])
    assert_same_bits(raw_state(ema_run)[0], raw_state(path)[0])  # the EMA included


def test_replicas_carry_their_own_average(ema_config, ema_run, tmp_path):
    paths = train.train_replicas([config.replace(ema_config, seed=s) for s in (0, 1)], tmp_path, ["r0", "r1"],
                                 argv=["pytest"], progress="none")
    (a, _), (b, _), (single, _) = raw_state(paths[0]), raw_state(paths[1]), raw_state(ema_run)
    for x, y in zip(jax.tree.leaves(a["ema"]), jax.tree.leaves(single["ema"])):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=2e-5, atol=2e-6)
    assert not np.array_equal(jax.tree.leaves(a["ema"])[0], jax.tree.leaves(b["ema"])[0])


def test_validation_uses_the_average_and_says_so(ema_run):
    val = metrics.read(ema_run, "validation")
    assert val and all(r["params"] == "ema" for r in val)
    seed = runs.open_run(ema_run).config.seed
    ema = evaluate.evaluate(ema_run, split="validation", samples=1, seed=seed, batch_size=64, kl_mc_samples=0,
                            write=False)
    raw = evaluate.evaluate(ema_run, split="validation", samples=1, seed=seed, batch_size=64, kl_mc_samples=0,
                            write=False, raw_params=True)
    assert (ema["params"], raw["params"]) == ("ema", "raw")
    assert val[-1]["elbo"] == pytest.approx(ema["results"][0]["elbo"], abs=1e-4)
    assert abs(val[-1]["elbo"] - raw["results"][0]["elbo"]) > 1e-3


def test_eval_elbo_and_sample_default_to_the_average(ema_run):
    out = vae_inproc("eval-elbo", ema_run, "--split", "validation", "--samples", "1", "--batch-size", "64",
                     "--kl-mc-samples", "0", "--json")
    assert out.code == 0, out.stderr
    ema = json.loads(out.stdout)
    out = vae_inproc("eval-elbo", ema_run, "--split", "validation", "--samples", "1", "--batch-size", "64",
                     "--kl-mc-samples", "0", "--raw-params")
    assert out.code == 0, out.stderr
    assert "(EMA params)" not in out.stdout and "-k1-raw.json" in out.stdout
    assert ema["params"] == ema["results"][0]["params"] == "ema"
    raw = json.loads((ema_run / "eval" / "validation-step60-k1-raw.json").read_text())
    kept = json.loads((ema_run / "eval" / "validation-step60-k1.json").read_text())  # not overwritten
    assert raw["params"] == "raw" and kept["params"] == "ema" and raw["elbo"] != kept["elbo"]
    assert "(EMA params)" in vae_inproc("eval-elbo", ema_run, "--split", "validation", "--samples", "1",
                                        "--batch-size", "64", "--kl-mc-samples", "0").stdout

    s_ema = json.loads(vae_inproc("sample", ema_run, "--n", "4", "--json").stdout)
    s_raw = json.loads(vae_inproc("sample", ema_run, "--n", "4", "--raw-params", "--json").stdout)
    assert s_ema["params"] == "ema" and " EMA " in s_ema["title"] and not s_ema["png"].endswith("-raw.png")
    assert s_raw["params"] == "raw" and " EMA " not in s_raw["title"] and s_raw["png"].endswith("-raw.png")
    assert not np.array_equal(np.load(s_ema["npy"]), np.load(s_raw["npy"]))


def test_runs_without_ema_load_as_before(tiny_run, tmp_path):
    """A run format 2 folder (written before train.ema_decay existed) loads and evaluates with
    its own parameters, and says which."""
    old = tmp_path / "old"
    shutil.copytree(tiny_run, old, ignore=shutil.ignore_patterns("train.lock", "eval", "samples"))
    raw = yaml.safe_load((old / "config.yaml").read_text())
    del raw["train"]["ema_decay"]
    (old / "config.yaml").write_text(yaml.safe_dump(raw))
    assert "ema_decay" not in (old / "config.yaml").read_text()
    state, _ = raw_state(old)
    assert set(state) == LAYOUT
    report = evaluate.evaluate(old, split="validation", samples=1, batch_size=64, kl_mc_samples=0)
    assert report["params"] == "raw" and report["results"][0]["written_to"].endswith("-k1.json")
