"""The VampPrior paper's HVAE (`model.hierarchy: hvae`) through everything a run goes through:
training with KL warm-up, exact resume, replicas (--seeds), `vae eval-elbo`, `vae sample` and
the Python API, on the tiny dataset."""
from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import (ROOT, assert_error, assert_same_bits, built_once, final_state, sets, tiny_overrides, train_records,
                     vae_inproc)

import vaecli
from vaecli import config
from vaecli.evaluation.elbo import evaluate
from vaecli.training import resume as resume_lib
from vaecli.training import start as train

HVAE = ["model.latent_dim2=3", "model.hierarchy=hvae", "model.hidden=[16,16]", "model.prior=vamp",
        "model.pseudo_inputs=8", "model.activation=gated", "model.output_bias=data_mean", "objective.kl=mc",
        "objective.warmup_epochs=2", "log.tensorboard=false"]
PAPER = ROOT / "configs" / "paper" / "hvae_vampprior.yaml"


def hvae_config(tiny_cache, *more):
    return config.load(None, [*tiny_overrides(tiny_cache), *HVAE, *more])


@pytest.fixture(scope="module")
def hvae_run(tiny_cache, tmp_path_factory):
    """Three epochs, uninterrupted."""
    cfg = hvae_config(tiny_cache, "train.epochs=3")
    return built_once(tmp_path_factory, "hvae-run", lambda root: train.train(cfg, root, "hvae", argv=["pytest"]))[1]


def test_resume_ends_bit_identical_to_an_uninterrupted_run(hvae_run, tiny_cache, tmp_path):
    path = train.train(hvae_config(tiny_cache, "train.epochs=2"), tmp_path, "split", argv=["pytest"])
    assert resume_lib.resume_run(path, ["train.epochs=3"], argv=["pytest"]) == path
    (a, step_a), (b, step_b) = final_state(hvae_run), final_state(path)
    assert step_a == step_b == 60
    assert_same_bits(a, b)
    assert train_records(path) == train_records(hvae_run)


def test_eval_elbo_sample_and_the_python_api(hvae_run, tmp_path):
    out = vae_inproc("eval-elbo", hvae_run, "--samples", "1,8", "--split", "test")
    assert out.code == 0, out.stderr
    k1, k8 = evaluate(hvae_run, split="test", samples="1,8", seed=0)["results"]
    assert np.isfinite(k8["log_likelihood"]) and k8["log_likelihood"] >= k1["log_likelihood"] - 0.5
    assert k8["kl_per_dim"] is None and k8["latent_dim"] == 3  # active units: of z2, the code
    assert k8["protocol"]["model"]["hierarchy"] == "hvae"  # the record names the model it measured

    run = vaecli.load(hvae_run)
    images = run.images("test")
    assert run.latent_dim == 3
    ll = run.log_likelihood(images, k=8)  # eval-elbo's draws, keyed by the index in the split
    assert float(np.mean(ll.astype(np.float64))) == pytest.approx(k8["log_likelihood"], rel=1e-6)
    mean, std = run.encode(images[:5])
    assert mean.shape == std.shape == (5, 3) and np.all(std > 0)
    assert run.decode(mean).shape == (5, 8, 8, 1)
    prior = run.generate(6, seed=1)
    assert prior.shape == (6, 8, 8, 1) and np.all((prior >= 0) & (prior <= 1))
    assert not np.array_equal(prior, run.generate(6, seed=2))

    for mode in ("prior", "recon", "traverse", "latents"):
        out = vae_inproc("sample", hvae_run, "--mode", mode, "--n", "3", "--out", tmp_path / mode, "--json")
        assert out.code == 0, (mode, out.stderr)
        assert np.load(json.loads(out.stdout)["npy"]).size > 0
    shown = np.load(json.loads(vae_inproc("sample", hvae_run, "--n", "6", "--seed", "1", "--out", tmp_path / "p",
                                          "--json").stdout)["npy"])
    np.testing.assert_array_equal(shown, prior)  # the API's generate is `vae sample --mode prior`'s picture


def test_grad_snr_refuses_the_estimators_that_hold_q(hvae_run):
    out = vae_inproc("grad-snr", hvae_run, "--samples", "2", "--estimators", "reparam,dreg", "--draws", "2")
    assert_error(out, 2, "--estimators", "hvae", "--estimators reparam")


def test_seeds_train_as_replicas_each_equal_to_its_single_run(tiny_cache, tmp_path):
    """The paper config, shrunk to the tiny dataset, as two replicas of one program."""
    shrunk = [*tiny_overrides(tiny_cache), *HVAE, "train.epochs=1", "train.patience=0"]
    out = vae_inproc("train", "--config", PAPER, *sets(shrunk), "--seeds", "0-1", "--name", "rep",
                     "--runs-dir", tmp_path / "runs")
    assert out.code == 0, out.stderr
    folders = sorted((tmp_path / "runs").iterdir())
    assert len(folders) == 2 and ["rep-seed0" in f.name for f in folders] == [True, False]
    single = train.train(config.load(PAPER, [*shrunk, "seed=1"]), tmp_path, "single", argv=["pytest"])
    (a, _), (b, _) = final_state(folders[1]), final_state(single)
    for x, y in zip(*(sorted(_leaves(s["params"]).items()) for s in (a, b))):
        np.testing.assert_allclose(x[1], y[1], rtol=2e-5, atol=2e-6, err_msg=x[0])
    c, _ = final_state(folders[0])
    assert not np.array_equal(_leaves(c["params"])["prior/logits"], _leaves(b["params"])["prior/logits"])


def _leaves(tree, prefix=""):
    if isinstance(tree, dict):
        return {k: v for name, sub in tree.items() for k, v in _leaves(sub, f"{prefix}{name}/").items()}
    return {prefix.rstrip("/"): np.asarray(tree)}
