"""Every config in configs/disentanglement/ loads and validates; the dSprites one has
disentanglement_lib's network, likelihood and optimizer."""
from __future__ import annotations

import pytest
from helpers import ROOT

from vaecli import config, data

CONFIGS = sorted((ROOT / "configs" / "disentanglement").glob("*.yaml"))


def test_there_are_configs():
    assert {p.name for p in CONFIGS} >= {"betavae_dsprites.yaml", "betavae_toy_sprites.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_each_config_validates_on_a_dataset_with_factors(path):
    cfg = config.load(path)
    assert cfg.data.dataset in ("toy_sprites", "dsprites", "shapes3d")
    assert cfg.model.latent_dim == 10 and cfg.model.likelihood == "bernoulli" and cfg.train.batch_size == 64
    assert cfg.data.dataset in data.KNOWN  # `vae show` sizes it before the data is prepared


def test_dsprites_config_is_the_study_network():
    cfg = config.load(ROOT / "configs" / "disentanglement" / "betavae_dsprites.yaml")
    m = cfg.model
    assert (m.kind, m.channels, m.hidden, m.activation) == ("conv", (32, 32, 64, 64), (256,), "relu")
    assert (cfg.optim.name, cfg.optim.lr, cfg.optim.eps) == ("adam", 1e-4, 1e-8)
    assert cfg.objective.name == "elbo" and cfg.objective.beta == 4.0
    # 300,000 steps of 64 over dSprites' 737,280 images
    assert cfg.train.epochs == round(300_000 * 64 / 737_280)
