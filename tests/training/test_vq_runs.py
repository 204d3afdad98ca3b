"""VQ-VAE runs of the real trainer (model.latent=vq): the quantisation figures logged,
resume bit-identical with the codebook's moving averages and dead-code restarts, the EMA of
the parameters, the conv grid, and refusals. Replicas: tests/compiled/test_devices.py."""
from __future__ import annotations

import json

import jax
import numpy as np
import pytest
from helpers import CONFIG, TINY_VQ, assert_error, assert_same_bits, built_once, final_state, run_folders, sets, \
    tiny_overrides, vae_inproc

from vaecli import config
from vaecli.rundir import metrics, restore
from vaecli.training import resume as resume_lib
from vaecli.training import start as train


@pytest.fixture(scope="module")
def vq_config(tiny_config):
    return config.load(None, [*tiny_overrides(tiny_config.data.cache_dir), *TINY_VQ])


@pytest.fixture(scope="module")
def vq_run(vq_config, tmp_path_factory):
    return built_once(tmp_path_factory, "vq", lambda root: train.train(
        vq_config, root, "vq", argv=["pytest"], progress="none"))[1]


def test_a_run_logs_the_codebook_figures(vq_run):
    rows = [r for r in metrics.read(vq_run) if r["split"] == "train"]
    assert len(rows) == 3
    for r in rows:
        assert 1 <= r["codes_used"] <= 16 and 1 <= r["perplexity"] <= r["codes_used"] + 1e-4
        assert r["commitment"] >= 0 and r["kl"] == pytest.approx(2 * np.log(16), rel=1e-6)
    assert rows[-1]["recon"] < rows[0]["recon"]
    state, _ = final_state(vq_run)
    assert set(state["params"]["quantizer"]) == {"codebook", "cluster_size", "embed_sum"}


def test_resume_is_bit_identical_codebook_averages_included(vq_config, vq_run, tmp_path):
    path = train.train(config.replace(vq_config, train={"epochs": 2}), tmp_path, "split", argv=["pytest"],
                       progress="none")
    resume_lib.resume_run(path, ["train.epochs=3"], argv=["pytest"])
    assert_same_bits(final_state(vq_run)[0], final_state(path)[0])


def test_ema_of_the_parameters_watches_and_evaluates(vq_config, vq_run, tmp_path):
    """train.ema_decay on a VQ-VAE: the raw parameters (codebook statistics included) are those
    of the run without it, the average covers the quantiser too, and evaluation uses it."""
    cfg = config.replace(vq_config, train={"ema_decay": 0.9})
    path = train.train(cfg, tmp_path, "ema", argv=["pytest"], progress="none")
    raw = restore.load_state(cfg, (8, 8, 1), path / "checkpoints", raw_params=True)[1]
    assert_same_bits(raw["params"], final_state(vq_run)[0]["params"])
    assert jax.tree.structure(raw["ema"]) == jax.tree.structure(raw["params"])
    assert not np.array_equal(raw["ema"]["quantizer"]["codebook"], raw["params"]["quantizer"]["codebook"])
    assert all(r["params"] == "ema" for r in metrics.read(path, "validation"))
    report = [json.loads(vae_inproc("eval-elbo", path, "--split", "validation", "--json", *raw_flag).stdout)
              for raw_flag in ([], ["--raw-params"])]
    assert [r["params"] for r in report] == ["ema", "raw"]
    assert report[0]["results"][0]["recon"] != report[1]["results"][0]["recon"]


def test_conv_codes_form_a_grid(vq_config, tmp_path):
    cfg = config.replace(vq_config, model={"kind": "conv", "channels": (4, 8), "code_dim": 3},
                         train={"epochs": 1})
    path = train.train(cfg, tmp_path, "conv", argv=["pytest"], progress="none")
    state, _ = final_state(path)
    assert state["params"]["quantizer"]["codebook"].shape == (16, 3)
    rows = [r for r in metrics.read(path) if r["split"] == "train"]
    assert rows[0]["kl"] == pytest.approx(4 * np.log(16), rel=1e-6)  # a 2x2 grid of codes on 8x8 images


@pytest.mark.parametrize("vq, bad, needles", [
    (True, ["model.codebook_size=1"], ("model.codebook_size", ">= 2")),
    (True, ["model.code_dim=3"], ("model.code_dim", "does not divide")),
    (True, ["objective.name=elbo"], ("objective.name", "objective.name=vq")),
    (True, ["model.codebook_update=loss"], ("model.dead_code_threshold", "codebook_update=ema")),
    (False, ["model.codebook_size=8"], ("model.codebook_size", "model.latent=vq")),
    (False, ["objective.commitment=1"], ("objective.commitment", "objective.name=vq")),
])
def test_bad_settings_are_one_line(vq, bad, needles, tiny_cache, tmp_path):
    out = vae_inproc("train", "--config", CONFIG, *sets(tiny_overrides(tiny_cache)), *(sets(TINY_VQ) if vq else []),
                     *sets(bad), "--runs-dir", tmp_path)
    assert_error(out, 2, *needles)
    assert run_folders(tmp_path) == []
