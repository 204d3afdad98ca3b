"""VQ-VAE runs of the real trainer (model.latent=vq): the quantisation figures logged,
resume bit-identical with the codebook's moving averages, the conv grid, and refusals."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import CONFIG, assert_error, assert_same_bits, built_once, final_state, run_folders, sets, tiny_overrides, \
    vae_inproc

from vaecli import config
from vaecli.rundir import metrics
from vaecli.training import resume as resume_lib
from vaecli.training import start as train

VQ_SETS = ["model.latent=vq", "objective.name=vq", "model.latent_dim=4", "model.code_dim=2", "model.codebook_size=8",
           "model.dead_code_threshold=0.05"]


@pytest.fixture(scope="module")
def vq_config(tiny_config):
    return config.load(None, [*tiny_overrides(tiny_config.data.cache_dir), *VQ_SETS])


@pytest.fixture(scope="module")
def vq_run(vq_config, tmp_path_factory):
    return built_once(tmp_path_factory, "vq", lambda root: train.train(
        vq_config, root, "vq", argv=["pytest"], progress="none"))[1]


def test_a_run_logs_the_codebook_figures(vq_run):
    rows = [r for r in metrics.read(vq_run) if r["split"] == "train"]
    assert len(rows) == 3
    for r in rows:
        assert 1 <= r["codes_used"] <= 8 and 1 <= r["perplexity"] <= r["codes_used"] + 1e-4
        assert r["commitment"] >= 0 and r["kl"] == pytest.approx(2 * np.log(8), rel=1e-6)
    assert rows[-1]["recon"] < rows[0]["recon"]
    state, _ = final_state(vq_run)
    assert set(state["params"]["quantizer"]) == {"codebook", "cluster_size", "embed_sum"}


def test_resume_is_bit_identical_codebook_averages_included(vq_config, vq_run, tmp_path):
    path = train.train(config.replace(vq_config, train={"epochs": 2}), tmp_path, "split", argv=["pytest"],
                       progress="none")
    resume_lib.resume_run(path, ["train.epochs=3"], argv=["pytest"])
    assert_same_bits(final_state(vq_run)[0], final_state(path)[0])


def test_conv_codes_form_a_grid(vq_config, tmp_path):
    cfg = config.replace(vq_config, model={"kind": "conv", "channels": (4, 8), "code_dim": 3},
                         train={"epochs": 1})
    path = train.train(cfg, tmp_path, "conv", argv=["pytest"], progress="none")
    state, _ = final_state(path)
    assert state["params"]["quantizer"]["codebook"].shape == (8, 3)
    rows = [r for r in metrics.read(path) if r["split"] == "train"]
    assert rows[0]["kl"] == pytest.approx(4 * np.log(8), rel=1e-6)  # a 2x2 grid of codes on 8x8 images


@pytest.mark.parametrize("vq, bad, needles", [
    (True, ["model.codebook_size=1"], ("model.codebook_size", ">= 2")),
    (True, ["model.code_dim=3"], ("model.code_dim", "does not divide")),
    (True, ["objective.name=elbo"], ("objective.name", "objective.name=vq")),
    (True, ["model.codebook_update=loss"], ("model.dead_code_threshold", "codebook_update=ema")),
    (False, ["model.codebook_size=8"], ("model.codebook_size", "model.latent=vq")),
    (False, ["objective.commitment=1"], ("objective.commitment", "objective.name=vq")),
])
def test_bad_settings_are_one_line(vq, bad, needles, tiny_cache, tmp_path):
    out = vae_inproc("train", "--config", CONFIG, *sets(tiny_overrides(tiny_cache)), *(sets(VQ_SETS) if vq else []),
                     *sets(bad), "--runs-dir", tmp_path)
    assert_error(out, 2, *needles)
    assert run_folders(tmp_path) == []
