"""FactorVAE (its discriminator, trained beside the model) and the capacity-annealed β-VAE:
the discriminator's total-correlation estimate on codes with known dependence, the losses
against their formulas, and the runs in the machinery (resume, replicas, refusals)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_same_bits, final_state, tiny_overrides

from vaecli import config
from vaecli.errors import ConfigError
from vaecli.models import factorvae, objectives
from vaecli.models import vae as models
from vaecli.rundir import metrics
from vaecli.training import resume as resume_lib
from vaecli.training import start as train


def _train_discriminator(codes_fn, steps: int = 400, batch: int = 128):
    cfg = config.load(None, ["objective.name=factorvae", "objective.discriminator.hidden=[32,32]",
                             "objective.discriminator.lr=3e-3"]).objective
    net, tx = factorvae.network(cfg, 2, 0), factorvae.optimizer(cfg)
    aux = factorvae.init(cfg, 2, 0)

    @jax.jit
    def run(aux, key):
        def body(aux, k):
            kz, kp = jax.random.split(k)
            aux, logs = factorvae.step(net, tx, aux, codes_fn(kz, batch), kp)
            return aux, logs
        return jax.lax.scan(body, aux, jax.random.split(key, steps))

    aux, logs = run(aux, jax.random.key(1))
    z = codes_fn(jax.random.key(2), 4096)
    return float(factorvae.total_correlation(net.bind(aux["params"])(z))), float(jnp.mean(logs["disc_accuracy"][-50:]))


def test_the_discriminator_sees_dependence_and_no_dependence_in_independent_codes():
    """Two equal dimensions (TC = ∞ in theory; here a large positive estimate, accuracy well
    above chance) against two independent ones (TC = 0: the estimate near 0, chance accuracy)."""
    dependent = lambda k, n: jnp.repeat(jax.random.normal(k, (n, 1)), 2, axis=1)
    independent = lambda k, n: jax.random.normal(k, (n, 2))
    tc_dep, acc_dep = _train_discriminator(dependent)
    tc_ind, acc_ind = _train_discriminator(independent)
    assert tc_dep > 1.0 and acc_dep > 0.75, (tc_dep, acc_dep)
    assert abs(tc_ind) < 0.15 and abs(acc_ind - 0.5) < 0.08, (tc_ind, acc_ind)


def test_permuted_codes_keep_each_dimension_and_lose_their_joint():
    z = jnp.stack([jnp.arange(100.0), jnp.arange(100.0)], axis=1)
    p = factorvae.permute_dims(z, jax.random.key(0))
    for d in range(2):
        assert sorted(np.asarray(p[:, d]).tolist()) == list(range(100))
    assert not np.array_equal(np.asarray(p[:, 0]), np.asarray(p[:, 1]))


@pytest.fixture(scope="module")
def tiny_model():
    cfg = config.load(None, ["model.hidden=[16]", "model.latent_dim=3"])
    fn = models.functional(cfg.model, (4, 4, 1), 0)
    x = (np.random.default_rng(0).random((8, 16)) < 0.5).astype(np.float32)
    return fn, jnp.asarray(x)


def test_factorvae_loss_is_recon_plus_kl_plus_gamma_tc(tiny_model):
    fn, x = tiny_model
    cfg = config.load(None, ["objective.name=factorvae", "objective.beta=6"]).objective
    critic = lambda z: jnp.stack([jnp.sum(z, -1), jnp.zeros(len(z))], -1)  # logit difference Σ z
    terms = objectives.training_terms(fn.bind(fn.params), x, jax.random.key(3), cfg, critic=critic)
    assert float(terms["loss"]) == pytest.approx(float(terms["recon"] + terms["kl"] + 6 * terms["tc"]), rel=1e-6)
    assert float(terms["tc"]) == pytest.approx(float(jnp.mean(jnp.sum(terms["aux_input"], -1))), rel=1e-5)


def test_capacity_loss_is_beta_times_the_distance_to_the_target(tiny_model):
    fn, x = tiny_model
    cfg = config.load(None, ["objective.capacity=5", "objective.beta=10"]).objective
    plain = config.load(None, []).objective
    model, key = fn.bind(fn.params), jax.random.key(3)
    ref = objectives.training_terms(model, x, key, plain)
    for target in (0.0, 2.5, 5.0):
        t = objectives.training_terms(model, x, key, cfg, capacity=target)
        assert float(t["kl"]) == float(ref["kl"]) and float(t["recon"]) == float(ref["recon"])
        assert float(t["loss"]) == pytest.approx(float(ref["recon"] + 10 * abs(ref["kl"] - target)), rel=1e-6)


def _cfg(cache, *more):
    return config.load(None, [*tiny_overrides(cache), "log.tensorboard=false", *more])


def test_factorvae_resumes_bit_identically_with_its_discriminator(tiny_cache, tmp_path):
    cfg = _cfg(tiny_cache, "objective.name=factorvae", "objective.beta=6", "objective.discriminator.hidden=[16,16]")
    whole = train.train(cfg, tmp_path, "whole", argv=[])
    part = train.train(config.replace(cfg, train={"epochs": 1}), tmp_path, "part", argv=[])
    resume_lib.resume_run(part, ["train.epochs=3"], argv=[])
    (a, _), (b, _) = final_state(whole), final_state(part)
    assert "aux" in a and {"params", "opt_state"} <= set(a["aux"])
    assert_same_bits(a, b)
    rows = metrics.read(whole, "train")
    assert all({"tc", "disc_loss", "disc_accuracy"} <= set(r) for r in rows)


def test_factorvae_replicas_each_carry_their_own_discriminator(tiny_cache, tmp_path):
    """--seeds 0-1 of FactorVAE as one program: each replica ends where its single run does
    (to float tolerance: a vmapped program), discriminator included."""
    cfg = _cfg(tiny_cache, "objective.name=factorvae", "objective.beta=6", "objective.discriminator.hidden=[16]",
               "train.epochs=2")
    cfgs = [config.replace(cfg, seed=s) for s in (0, 1)]
    paths = train.train_replicas(cfgs, tmp_path / "replicas", ["r0", "r1"], argv=[])
    finals = [final_state(p)[0] for p in paths]
    for c, final in zip(cfgs, finals):
        single = final_state(train.train(c, tmp_path / "single", f"s{c.seed}", argv=[]))[0]
        for x, y in zip(jax.tree.leaves(final), jax.tree.leaves(single)):
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=2e-5, atol=2e-6)
    a, b = (np.asarray(jax.tree.leaves(f["aux"]["params"])[0]) for f in finals)
    assert not np.allclose(a, b)


def test_capacity_raises_the_kl_towards_its_target(tiny_cache, tmp_path):
    """With β large, the KL follows the target C(t) = 5·min(1, t / 2 epochs): below it early,
    near it at the end (a plain run's KL stays far below 5 nats on these images)."""
    run = train.train(_cfg(tiny_cache, "objective.capacity=5", "objective.capacity_epochs=2", "objective.beta=20",
                           "train.epochs=4"), tmp_path, "cap", argv=[])
    kl = [r["kl"] for r in metrics.read(run, "train")]
    plain = train.train(_cfg(tiny_cache, "train.epochs=4"), tmp_path, "plain", argv=[])
    assert kl[0] < kl[-1] and abs(kl[-1] - 5) < 1.0 and metrics.read(plain, "train")[-1]["kl"] < 3, kl


@pytest.mark.parametrize("overrides, needle", [
    (["objective.name=iwae", "objective.capacity=5"], "objective.capacity"),
    (["objective.capacity_epochs=3"], "objective.capacity_epochs"),
    (["objective.capacity=5", "objective.kl=mc", "objective.gradient=stl"], "objective.capacity"),
    (["objective.discriminator.lr=0.1"], "objective.discriminator"),
    (["objective.name=factorvae", "model.prior=vamp", "objective.kl=mc"], "model.prior"),
])
def test_refused_settings_name_their_key(overrides, needle):
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        config.load(None, overrides)
