"""Every model/objective/likelihood/prior config choice trains a few steps through the one
fused trainer and is evaluated by the one estimator; every paper config validates and runs
(the TFDS datasets, fashion_mnist and cifar10, train and evaluate in test_data.py)."""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import ROOT, train_and_eval
from typer.testing import CliRunner

from vaecli import config, data, streams
from vaecli.cli import app
from vaecli.compiled import cache as programs
from vaecli.compiled import epoch, optimizer
from vaecli.compiled import state as state_lib
from vaecli.config import ModelConfig
from vaecli.config import ObjectiveConfig as OC
from vaecli.errors import ConfigError
from vaecli.evaluation import sample
from vaecli.models import densities, objectives
from vaecli.models import vae as models
from vaecli.rundir import metrics
from vaecli.training import start as train

PAPER = sorted((ROOT / "configs" / "paper").glob("*.yaml"))

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
    "hvae_vamp_warmup": ["model.latent_dim2=3", "model.hierarchy=hvae", "model.prior=vamp", "model.pseudo_inputs=8",
                         "model.activation=gated", "objective.kl=mc", "objective.warmup_epochs=1"],
    "iwae_stl_two_layer": ["objective.name=iwae", "objective.samples=3", "objective.gradient=stl",
                           "model.latent_dim2=2", "model.hidden2=[16]"],
    "elbo_stl_warmup": ["objective.kl=mc", "objective.gradient=stl", "objective.samples=2",
                        "objective.warmup_epochs=1"],
    "miwae_dreg_vamp": ["objective.name=miwae", "objective.samples=2", "objective.groups=2",
                        "objective.gradient=dreg", "model.prior=vamp", "model.pseudo_inputs=8"],
    "piwae_dreg_gaussian": ["objective.name=piwae", "objective.samples=2", "objective.groups=2",
                            "objective.gradient=dreg", "model.likelihood=gaussian"],
    "ciwae_conv": ["objective.name=ciwae", "objective.samples=3", "objective.beta=0.5", "model.kind=conv",
                   "model.channels=[4,8]"],
    "vr_dreg_logistic": ["objective.name=vr", "objective.samples=3", "objective.alpha=0.5",
                         "objective.gradient=dreg", "model.likelihood=logistic"],
    "btcvae_ema": ["objective.name=btcvae", "objective.beta=3.0", "train.ema_decay=0.9"],
    "planar_iwae": ["model.flow.kind=planar", "model.flow.steps=2", "objective.name=iwae", "objective.samples=3"],
    "iaf_elbo_mc": ["model.flow.kind=iaf", "model.flow.steps=2", "model.flow.hidden=[8]", "objective.kl=mc"],
    "iaf_piwae": ["model.flow.kind=iaf", "model.flow.steps=2", "objective.name=piwae", "objective.samples=2",
                  "objective.groups=2"],
    "factorvae_mc": ["objective.name=factorvae", "objective.beta=6", "objective.discriminator.hidden=[16]",
                     "objective.kl=mc"],
    "capacity_gelu": ["objective.capacity=3", "objective.capacity_epochs=1", "objective.beta=5",
                      "model.activation=gelu"],
}
LOGGED = {"btcvae": ("mi", "tc", "dim_kl"), "piwae": ("encoder_loss",),
          "factorvae": ("tc", "disc_loss", "disc_accuracy")}  # an objective's extra training terms


@pytest.mark.parametrize("choice", sorted(CHOICES))
def test_each_choice_trains_and_evaluates(choice, tiny_cache, tiny_config, tmp_path):
    cfg = config.load(None, [*_tiny(tiny_cache), "train.epochs=2", *CHOICES[choice]])
    path, rows, res = train_and_eval(cfg, tmp_path, choice)
    pics = np.load(sample.sample(path, n=5, seed=1, out=tmp_path / "pics")["npy"])  # prior samples, any model
    assert pics.shape == (5, 8, 8, 1) and np.all((pics >= 0) & (pics <= 1))
    assert rows[-1]["recon"] < rows[0]["recon"] or choice.startswith("beta")  # it learns (β=4 may trade recon)
    extra = set(LOGGED.get(cfg.objective.name, ()))  # logged with every training record, and only for that objective
    others = {k for keys in LOGGED.values() for k in keys} - extra
    assert all(extra <= set(r) and not others & set(r) for r in rows)
    if cfg.objective.name == "btcvae":
        assert all(r["mi"] + r["tc"] + r["dim_kl"] == pytest.approx(r["kl"], rel=1e-4, abs=1e-4) for r in rows)
    if cfg.model.flow.kind is not None:  # the encoder's point with a flow: its mean pushed through the flow
        recon = sample.sample(path, mode="recon", n=4, seed=0, out=tmp_path / "recon")
        assert np.load(recon["npy"]).shape == (2, 4, 8, 8, 1)
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
    if cfg.model.likelihood == "gaussian":
        assert res["bits_per_dim"] is None and "bits/dim" in res["notes"][0]
    else:
        assert res["bits_per_dim"] == pytest.approx(res["nll"] / (64 * math.log(2)))
    # the K-sample estimate sits above the ELBO (up to the K=4 noise of a tiny model)
    assert res["log_likelihood"] > res["elbo"] - 1.0


def _tiny(cache):
    from helpers import tiny_overrides

    return tiny_overrides(cache)


def test_kl_warmup_ramps_the_weight_inside_the_compiled_epoch(tiny_cache, tmp_path):
    """loss = recon + w·KL with w = step / warm-up steps: below recon + KL while warming up,
    equal after; and the ramp costs no retrace (the weight is computed from the step)."""
    cfg = config.load(None, [*_tiny(tiny_cache), "train.epochs=3", "objective.warmup_epochs=2"])
    programs.clear()  # this process may hold the program already (the warm-up is a value of the state)
    before = epoch.TRACES["epoch"]
    _, rows, _ = train_and_eval(cfg, tmp_path, "warm")
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
    if path.stem.endswith("_short"):  # the same network as its twin, which is trained below: not again
        twin = config.load(path.with_name(path.name.replace("_short", "")))
        assert (cfg.model, cfg.optim, cfg.data) == (twin.model, twin.optim, twin.data)
        assert (cfg.objective.name, cfg.objective.samples) == (twin.objective.name, twin.objective.samples)
        return
    # the same network, objective and optimizer, one epoch on the tiny dataset
    # one epoch cannot hold a patience (vampprior.yaml's early stopping is tested in test_stops.py)
    tiny = config.load(path, ["data.dataset=tiny_bars", f"data.cache_dir={tiny_cache}", "train.epochs=1",
                              "train.patience=0", "eval.batch_size=64", "eval.grid=4", "log.progress=none", "log.tensorboard=false"])
    run = train.train(tiny, tmp_path, path.stem, argv=[], progress="none")  # ends with the validation estimate
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and math.isfinite(summary["final_validation"]["elbo"])


def test_iwae_schedule_steps_down_by_10_to_the_minus_1_7_at_3_to_the_i_epochs():
    cfg = config.load(None, ["optim.schedule=iwae", "optim.lr=1e-3"]).optim
    lr = optimizer.learning_rate_schedule(cfg, steps_per_epoch=10)
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
    (["model.hierarchy=hvae", "objective.kl=mc"], "model.hierarchy"),  # one layer
    (["model.hierarchy=hvae", "model.latent_dim2=5"], "objective.kl"),
    (["model.hierarchy=hvae", "model.latent_dim2=5", "objective.kl=mc", "model.kind=conv"], "model.kind"),
    (["model.hierarchy=hvae", "model.latent_dim2=5", "objective.kl=mc", "model.hidden2=[8]"], "model.hidden2"),
    (["model.hierarchy=hvae", "model.latent_dim2=5", "objective.name=iwae", "objective.gradient=dreg"],
     "objective.gradient"),
    (["model.hierarchy=hvae", "model.latent_dim2=5", "objective.kl=mc", "model.flow.kind=planar"], "model.flow.kind"),
    (["model.kind=conv", "model.hidden=[]"], "model.hidden"),
    (["model.kind=conv", "model.activation=gated"], "model.activation"),
    (["model.flow.kind=planar"], "objective.kl"),  # the default analytic KL: a flow has none
    (["model.flow.kind=iaf", "objective.name=iwae", "objective.gradient=dreg"], "objective.gradient"),
    (["model.flow.kind=planar", "objective.kl=mc", "objective.gradient=stl"], "objective.gradient"),
    (["model.flow.kind=planar", "objective.kl=mc", "model.prior=vamp"], "model.prior"),
    (["model.flow.kind=planar", "objective.kl=mc", "model.latent_dim2=2"], "model.flow.kind"),
    (["model.flow.kind=planar", "objective.name=ae"], "model.flow.kind"),
    (["model.flow.steps=3"], "model.flow.steps"),
    (["model.flow.kind=planar", "objective.kl=mc", "model.flow.hidden=[8]"], "model.flow.hidden"),
    (["objective.gradient=stl"], "objective.gradient"),  # the analytic KL has no score term to drop
    (["objective.gradient=dreg"], "objective.gradient"),
    (["objective.name=btcvae", "objective.gradient=stl"], "objective.gradient"),
    (["objective.name=iwae", "objective.groups=2"], "objective.groups"),
    (["objective.name=iwae", "objective.alpha=0.2"], "objective.alpha"),
    (["objective.name=ciwae", "objective.beta=1.5"], "objective.beta"),
    (["objective.name=ciwae", "objective.warmup_epochs=1"], "objective.warmup_epochs"),
    (["objective.name=btcvae", "model.prior=vamp"], "model.prior"),
    (["objective.name=btcvae", "model.flow.kind=planar"], "model.flow.kind"),
    (["objective.name=btcvae", "objective.samples=2"], "objective.samples"),
    (["objective.name=btcvae", "train.batch_size=1"], "train.batch_size"),
    (["objective.name=vr", "objective.alpha=-1"], "objective.alpha"),
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


# ------------------------------------------- each option changes the first training step as it says

@pytest.fixture(scope="module")
def one_image_cache(tmp_path_factory) -> Path:
    """A training split of 32 copies of one image: with batch 32 an epoch is one step whose
    batch is known whatever the shuffle, so that step can be recomputed outside the trainer."""
    from helpers import make_bars

    root = tmp_path_factory.mktemp("one-image")
    data.write_cache(root / "tiny_same", {"train": {"images": np.repeat(make_bars(1, 0), 32, 0), "labels": None},
                                          "validation": {"images": make_bars(64, 1), "labels": None},
                                          "test": {"images": make_bars(64, 2), "labels": None}})
    return root


def one_step(cache: Path, tmp_path: Path, name: str, *overrides):
    """One step of the trainer's compiled epoch (its optimizer, its objective, its keys) from
    the config's initial state; return (config, train metrics, θ0, θ1, the batch x, the
    step's noise key, the model)."""
    cfg = config.load(None, [*_tiny(cache), "data.dataset=tiny_same", "train.epochs=1", *overrides])
    split = data.load_split(cfg.data, "train")
    fn, tx, start = state_lib.init_state(cfg, split.image_shape, train=split)
    p0 = jax.tree.map(np.array, start["params"])  # a host copy: the epoch donates its input
    epoch_fn = epoch.make_epoch_fn(fn, tx, cfg, len(split), split.scale)
    end, m = epoch_fn(start, jax.device_put(split.flat))
    assert int(end["step"]) == 1
    x = jnp.asarray(split.flat[:32].astype(np.float32) / split.scale)
    # the step's key as the README promises: derived from (seed, step) alone
    key = jax.random.fold_in(jax.random.fold_in(jax.random.key(cfg.seed), streams.STEP_NOISE), 0)
    _, k_z = jax.random.split(key)
    rec = {k: float(m[k]) for k in ("loss", "recon", "kl")}
    return cfg, rec, p0, end["params"], x, k_z, fn


def _grad(fn, params, x, key, obj):
    # jitted: one program, not one per operation (the suite compiles thousands of those)
    return jax.jit(jax.grad(lambda p: objectives.training_loss(fn.bind(p), x, key, obj)[0]))(params)


def _assert_tree_close(got, expected, atol=1e-6):
    assert jax.tree.structure(got) == jax.tree.structure(expected)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=atol)


def test_iwae_trains_on_the_k_sample_bound(one_image_cache, tmp_path):
    from scipy.stats import norm

    cfg, rec, p0, _, x, key, fn = one_step(one_image_cache, tmp_path, "iwae", "objective.name=iwae",
                                           "objective.samples=3")
    vae = fn.bind(p0)
    mean, logvar = (np.asarray(a, np.float64) for a in vae.encode(x))
    eps = np.asarray(jax.random.normal(key, (3, 32, 4)), np.float64)  # (K, batch, latent)
    z = mean + np.exp(0.5 * logvar) * eps
    log_px = np.asarray(vae.log_likelihood(x, jnp.asarray(z, jnp.float32)), np.float64)
    log_w = log_px + norm.logpdf(z).sum(-1) - norm.logpdf(z, mean, np.exp(0.5 * logvar)).sum(-1)
    bound = np.log(np.mean(np.exp(log_w - log_w.max(0)), 0)) + log_w.max(0)
    assert rec["loss"] == pytest.approx(-bound.mean(), rel=1e-5)
    elbo = -np.mean(log_w)  # the 3-sample ELBO on the same draws: what an ignored objective.name gives
    assert abs(rec["loss"] - elbo) > 1e-3 * abs(elbo)


@pytest.mark.parametrize("overrides", [["objective.name=iwae", "objective.samples=3", "objective.gradient=dreg"],
                                       ["objective.name=btcvae", "objective.beta=3.0"]], ids=["iwae-dreg", "btcvae"])
def test_the_trainer_steps_along_the_registered_loss(overrides, one_image_cache, tmp_path):
    """The compiled epoch's first SGD update is −lr·∇ of the registered loss with the step's key
    (the estimator's gradient; β-TCVAE's q(z) with the training-set size the epoch passes)."""
    cfg, rec, p0, p1, x, key, fn = one_step(one_image_cache, tmp_path, "g", *overrides, "optim.name=sgd",
                                            "optim.lr=0.01")
    terms = jax.jit(lambda p: objectives.training_terms(fn.bind(p), x, key, cfg.objective, dataset_size=32))(p0)
    assert rec["loss"] == pytest.approx(float(terms["loss"]), rel=1e-5)
    g = jax.jit(jax.grad(lambda p: objectives.training_loss(fn.bind(p), x, key, cfg.objective,
                                                            dataset_size=32)[0]))(p0)
    _assert_tree_close(jax.tree.map(lambda a, b: a - b, p1, p0), jax.tree.map(lambda gi: -0.01 * np.asarray(gi), g),
                       atol=2e-7)
    if cfg.objective.gradient != "reparam":  # what an ignored objective.gradient would give differs
        other = dataclasses.replace(cfg.objective, gradient="reparam")
        g_other = _grad(fn, p0, x, key, other)
        assert max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in
                   zip(jax.tree.leaves(g), jax.tree.leaves(g_other))) > 1e-4


def test_beta_scales_the_kl_term(one_image_cache, tmp_path):
    _, rec, *_ = one_step(one_image_cache, tmp_path, "beta", "objective.beta=4.0")
    assert rec["loss"] == pytest.approx(rec["recon"] + 4 * rec["kl"], rel=1e-5)
    assert rec["kl"] > 1e-3 * rec["recon"]  # so β=1 would give another loss


def test_free_bits_floor_each_dimension_s_kl(one_image_cache, tmp_path):
    _, rec, p0, _, x, _, fn = one_step(one_image_cache, tmp_path, "fb", "objective.free_bits=0.5")
    per_dim = np.asarray(densities.kl_per_dim(*fn.bind(p0).encode(x))).mean(0)
    assert rec["kl"] == pytest.approx(per_dim.sum(), rel=1e-4)  # reported: the KL itself
    assert rec["loss"] == pytest.approx(rec["recon"] + np.maximum(per_dim, 0.5).sum(), rel=1e-5)
    assert np.maximum(per_dim, 0.5).sum() > per_dim.sum() + 0.1  # the floor binds at the start


@pytest.mark.parametrize("optim, expected", [
    ("sgd", lambda g, lr: -lr * g),
    ("rmsprop", lambda g, lr: -lr * g / np.sqrt(0.1 * g**2 + 1e-8)),  # first step: ν = (1 − 0.9)·g²; optax: ε inside the root
])
def test_the_named_optimizer_makes_the_first_update(optim, expected, one_image_cache, tmp_path):
    cfg, _, p0, p1, x, key, fn = one_step(one_image_cache, tmp_path, optim, f"optim.name={optim}", "optim.lr=0.01",
                                          "optim.eps=1e-8")
    g = _grad(fn, p0, x, key, cfg.objective)
    _assert_tree_close(jax.tree.map(lambda a, b: a - b, p1, p0),
                       jax.tree.map(lambda gi: expected(np.asarray(gi, np.float64), 0.01), g), atol=2e-6)


def test_grad_clip_scales_the_gradient_to_its_norm(one_image_cache, tmp_path):
    cfg, _, p0, p1, x, key, fn = one_step(one_image_cache, tmp_path, "clip", "optim.name=sgd", "optim.lr=0.01",
                                          "optim.grad_clip=0.5")
    g = _grad(fn, p0, x, key, cfg.objective)
    norm = float(np.sqrt(sum(np.sum(np.asarray(a, np.float64) ** 2) for a in jax.tree.leaves(g))))
    assert norm > 1.0  # so the clip binds
    _assert_tree_close(jax.tree.map(lambda a, b: a - b, p1, p0),
                       jax.tree.map(lambda gi: -0.01 * np.asarray(gi) * 0.5 / norm, g), atol=1e-7)


def test_normalize_grads_divides_each_tensor_by_its_norm(one_image_cache, tmp_path):
    cfg, _, p0, p1, x, key, fn = one_step(one_image_cache, tmp_path, "normalized", "optim.name=sgd", "optim.lr=0.01",
                                          "optim.normalize_grads=true")
    g = _grad(fn, p0, x, key, cfg.objective)
    norms = [float(np.sqrt(np.sum(np.asarray(a, np.float64) ** 2))) for a in jax.tree.leaves(g)]
    assert max(norms) > 3 * min(norms)  # tensors of different scales: each moves at the same rate
    _assert_tree_close(jax.tree.map(lambda a, b: a - b, p1, p0),
                       jax.tree.map(lambda gi: -0.01 * np.asarray(gi, np.float64)
                                    / (np.sqrt(np.sum(np.asarray(gi, np.float64) ** 2)) + 1e-7), g), atol=1e-7)


@pytest.mark.parametrize("plain, decayed", [
    (["optim.name=sgd"], ["optim.name=sgd", "optim.weight_decay=0.1"]),  # L2 prior: wd·θ added to the gradient
    (["optim.name=adam"], ["optim.name=adamw", "optim.weight_decay=0.1"]),  # AdamW: wd·θ added to the update
], ids=["sgd-l2", "adamw"])
def test_weight_decay_changes_the_update_by_exactly_wd_theta(plain, decayed, one_image_cache, tmp_path):
    _, _, p0, without, *_ = one_step(one_image_cache, tmp_path, "plain", *plain, "optim.lr=0.01")
    _, _, _, with_wd, *_ = one_step(one_image_cache, tmp_path, "decayed", *decayed, "optim.lr=0.01")
    _assert_tree_close(jax.tree.map(lambda a, b: a - b, with_wd, without),
                       jax.tree.map(lambda t: -0.01 * 0.1 * np.asarray(t), p0), atol=1e-7)
