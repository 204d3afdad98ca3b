"""Every model/objective/likelihood/prior config choice trains a few steps through the one
fused trainer and is evaluated by the one estimator; every paper config validates and runs;
mnist / fashion_mnist / cifar10 come through TFDS's mock data."""
from __future__ import annotations

import json
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from typer.testing import CliRunner

from vaecli import config, data, densities, evaluate, metrics, models, objectives, sample, state as state_lib, train
from vaecli import epoch
from vaecli.cli import app
from vaecli.config import ModelConfig, ObjectiveConfig as OC
from vaecli.errors import ConfigError

PAPER = sorted((Path(__file__).resolve().parents[1] / "configs" / "paper").glob("*.yaml"))

# Every choice, grouped so that each run combines choices that do not interact: name -> overrides.
CHOICES = {
    "iwae_schedule_map": ["objective.name=iwae", "objective.samples=3", "optim.schedule=iwae", "optim.eps=1e-4",
                          "optim.weight_decay=1e-4"],
    "ae_tanh_bias": ["objective.name=ae", "model.activation=tanh", "model.output_bias=data_mean"],
    "beta_free_bits": ["objective.beta=4.0", "objective.free_bits=0.5"],
    "gaussian_learned_conv": ["model.likelihood=gaussian", "model.kind=conv", "model.channels=[4,8]"],
    "gaussian_fixed_mc_kl": ["model.likelihood=gaussian", "model.obs_variance=fixed", "model.obs_std=0.2",
                             "objective.kl=mc", "objective.samples=2"],
    "logistic_bias": ["model.likelihood=logistic", "model.output_bias=data_mean"],
    "vamp_gated": ["model.prior=vamp", "model.pseudo_inputs=8", "objective.kl=mc", "model.activation=gated"],
    "two_layer": ["model.latent_dim2=2", "model.hidden2=[16]", "objective.kl=mc"],
}


def _train_and_eval(cfg, tmp_path, name, k=4):
    path = train.train(cfg, tmp_path, name, argv=[], progress="none")
    assert json.loads((path / "summary.json").read_text())["status"] == "completed"
    rows = [r for r in metrics.read(path) if r["split"] == "train"]
    assert all(math.isfinite(r["loss"]) for r in rows)
    return path, rows, evaluate.evaluate(path, split="test", samples=k, seed=0)["results"][0]


@pytest.mark.parametrize("choice", sorted(CHOICES))
def test_each_choice_trains_and_evaluates(choice, tiny_cache, tiny_config, tmp_path):
    cfg = config.load(None, [*_tiny(tiny_cache), "train.epochs=2", *CHOICES[choice]])
    path, rows, res = _train_and_eval(cfg, tmp_path, choice)
    pics = np.load(sample.sample(path, n=5, seed=1, out=tmp_path / "pics")["npy"])  # prior samples, any model
    assert pics.shape == (5, 8, 8, 1) and np.all((pics >= 0) & (pics <= 1))
    assert rows[-1]["recon"] < rows[0]["recon"] or choice.startswith("beta")  # it learns (β=4 may trade recon)
    if choice.startswith("ae"):
        assert res["log_likelihood"] is None and res["elbo"] is None and res["kl"] is None
        assert "no density" in res["notes"][0] and res["recon"] > 0 and rows[-1]["kl"] == 0
        val = [r for r in metrics.read(path) if r["split"] == "validation"][-1]  # the AE's objective, no KL
        assert val["kl"] == 0 and val["loss"] == pytest.approx(val["recon"])
        out = CliRunner().invoke(app, ["eval-elbo", str(path), "--samples", "3"])
        assert out.exit_code == 0, out.output
        assert "n/a" in out.output and "note: objective.name=ae" in out.output
        return
    assert np.isfinite(res["log_likelihood"]) and np.isfinite(res["elbo"])
    if choice.startswith("gaussian"):
        assert res["bits_per_dim"] is None and "bits/dim" in res["notes"][0]
    else:
        assert res["bits_per_dim"] == pytest.approx(res["nll"] / (64 * math.log(2)))
    # the K-sample estimate sits above the ELBO (up to the K=4 noise of a tiny model)
    assert res["log_likelihood"] > res["elbo"] - 1.0


def _tiny(cache):
    from conftest import tiny_overrides

    return tiny_overrides(cache)


def test_kl_warmup_ramps_the_weight_inside_the_compiled_epoch(tiny_cache, tmp_path):
    """loss = recon + w·KL with w = step / warm-up steps: below recon + KL while warming up,
    equal after; and the ramp costs no retrace (the weight is computed from the step)."""
    cfg = config.load(None, [*_tiny(tiny_cache), "train.epochs=3", "objective.warmup_epochs=2"])
    before = epoch.TRACES["epoch"]
    _, rows, _ = _train_and_eval(cfg, tmp_path, "warm")
    assert epoch.TRACES["epoch"] == before + 1
    first, last = rows[0], rows[-1]
    # epoch 1: w runs over 0..0.5 (mean 0.25); epoch 3: w = 1
    assert first["loss"] < first["recon"] + 0.5 * first["kl"]
    assert last["loss"] == pytest.approx(last["recon"] + last["kl"], rel=1e-5)


@pytest.mark.parametrize("path", PAPER, ids=[p.stem for p in PAPER])
def test_paper_config_validates_and_runs_a_few_steps(path, tiny_cache, tmp_path):
    text = path.read_text()
    assert text.startswith("#") and ("Table" in text)  # names its source table
    cfg = config.load(path)  # the shipped file validates as it is
    assert cfg.data.dataset == "binarized_mnist" and cfg.data.binarize == "static"
    # the same network, objective and optimizer, one epoch on the tiny dataset
    tiny = config.load(path, ["data.dataset=tiny_bars", f"data.cache_dir={tiny_cache}", "train.epochs=1",
                              "eval.batch_size=64", "eval.grid=4", "log.progress=none", "log.tensorboard=false"])
    run = train.train(tiny, tmp_path, path.stem, argv=[], progress="none")  # ends with the validation estimate
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and math.isfinite(summary["final_validation"]["elbo"])


def test_iwae_schedule_steps_down_by_10_to_the_minus_1_7_at_3_to_the_i_epochs():
    cfg = config.load(None, ["optim.schedule=iwae", "optim.lr=1e-3"]).optim
    lr = state_lib.learning_rate_schedule(cfg, steps_per_epoch=10)
    starts = np.cumsum([0] + [3**i for i in range(8)])  # stage i starts at epoch starts[i]
    for i, start in enumerate(starts[:8]):
        for step in (start * 10, start * 10 + 9, (starts[i + 1] * 10) - 1):
            assert float(lr(step)) == pytest.approx(1e-3 * 10 ** (-i / 7), rel=1e-5)
    assert float(lr(10**7)) == pytest.approx(1e-3 * 10 ** (-1), rel=1e-5)


@pytest.mark.parametrize("overrides, key", [
    (["model.prior=vamp"], "objective.kl"),
    (["model.latent_dim2=10"], "objective.kl"),
    (["objective.free_bits=0.5", "objective.kl=mc"], "objective.free_bits"),
    (["objective.name=iwae", "objective.beta=2"], "objective.beta"),
    (["objective.name=iwae", "objective.warmup_epochs=3"], "objective.warmup_epochs"),
    (["objective.name=ae", "objective.samples=5"], "objective.samples"),
    (["model.latent_dim2=5", "model.prior=vamp", "objective.kl=mc"], "model.prior"),
    (["model.kind=conv", "model.hidden=[]"], "model.hidden"),
    (["model.kind=conv", "model.activation=gated"], "model.activation"),
])
def test_impossible_combinations_are_refused_naming_the_key(overrides, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        config.load(None, overrides)


# ---------------------------------------------------------------- the objectives on one batch


@pytest.fixture(scope="module")
def small_model():
    fn = models.functional(ModelConfig(latent_dim=3, hidden=(16,)), (4, 4, 1), seed=0)
    x = jnp.asarray((np.random.default_rng(0).random((32, 16)) < 0.4).astype(np.float32))
    return fn.bind(fn.params), x


def test_objective_values(small_model):
    vae, x = small_model
    key = jax.random.key(5)
    loss, recon, kl = objectives.training_loss(vae, x, key, OC())
    assert float(loss) == pytest.approx(float(recon + kl), rel=1e-6)
    beta_loss, r2, kl2 = objectives.training_loss(vae, x, key, OC(), kl_weight=4.0)
    assert (float(r2), float(kl2)) == (float(recon), float(kl))
    assert float(beta_loss) == pytest.approx(float(recon + 4 * kl), rel=1e-6)
    # free bits: each dimension's batch-mean KL is floored at λ
    per_dim = np.asarray(densities.kl_per_dim(*vae.encode(x))).mean(0)
    fb_loss, _, fb_kl = objectives.training_loss(vae, x, key, OC(free_bits=0.3))
    assert float(fb_loss) == pytest.approx(float(recon) + np.maximum(per_dim, 0.3).sum(), rel=1e-5)
    assert float(fb_kl) == pytest.approx(per_dim.sum(), rel=1e-5)
    # IWAE with K=1 is the single-sample ELBO with the Monte Carlo KL (same draws)
    iw1 = objectives.training_loss(vae, x, key, OC(name="iwae", samples=1))[0]
    mc1 = objectives.training_loss(vae, x, key, OC(kl="mc", samples=1))[0]
    assert float(iw1) == pytest.approx(float(mc1), rel=1e-5)
    # IWAE with K=50 is a tighter bound: a lower loss than the 50-sample ELBO on the same draws
    assert float(objectives.training_loss(vae, x, key, OC(name="iwae", samples=50))[0]) < \
        float(objectives.training_loss(vae, x, key, OC(kl="mc", samples=50))[0])
    # the autoencoder: −log p(x|z) at the encoder's mean, no KL, no randomness
    ae = objectives.training_loss(vae, x, key, OC(name="ae"))
    expected = -jnp.mean(vae.log_likelihood(x, vae.encode(x)[0]))
    assert float(ae[0]) == pytest.approx(float(expected), rel=1e-6) and float(ae[2]) == 0.0
    assert float(objectives.training_loss(vae, x, jax.random.key(9), OC(name="ae"))[0]) == float(ae[0])


# ---------------------------------------------------------------- datasets through TFDS mock data


@pytest.mark.parametrize("dataset, overrides, shape", [
    ("fashion_mnist", ["data.binarize=dynamic"], (28, 28, 1)),
    ("cifar10", ["data.binarize=none", "model.kind=conv", "model.channels=[4,8]", "model.likelihood=logistic",
                 "model.output_bias=data_mean"], (32, 32, 3)),
])
def test_mock_datasets_train_and_evaluate(dataset, overrides, shape, tmp_path, monkeypatch):
    import tensorflow_datasets as tfds

    monkeypatch.setattr(data, "_network_available", lambda *a, **k: True)  # mock_data downloads nothing
    cfg = config.load(None, [f"data.dataset={dataset}", f"data.cache_dir={tmp_path / 'c'}",
                             f"data.data_dir={tmp_path / 'tfds'}", "data.val_size=16", "model.hidden=[16]",
                             "model.latent_dim=4", "train.epochs=1", "train.batch_size=16", "eval.grid=4",
                             "log.progress=none", "log.tensorboard=false", *overrides])
    with tfds.testing.mock_data(num_examples=64):
        split = data.load_split(cfg.data, "train")
    assert split.image_shape == shape
    path, _, res = _train_and_eval(cfg, tmp_path, dataset)
    meta = json.loads((path / "meta.json").read_text())["data"]
    assert meta["image_shape"] == list(shape)
    if "model.likelihood=gaussian" in overrides:
        assert res["bits_per_dim"] is None
    else:  # a discrete likelihood: bits/dim of the pixel values
        # mock images are uniform noise: 8 bits/dim is the floor for 8-bit colour (an untrained
        # logistic of scale 1 pays ~10); binarized grayscale pays about 1 bit per pixel
        lo, hi = (7.9, 11) if dataset == "cifar10" else (0.3, 1.5)
        assert lo < res["bits_per_dim"] < hi
