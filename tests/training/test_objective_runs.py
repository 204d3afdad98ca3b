"""The objectives of vaecli.models.objectives beyond the ELBO and IWAE in the machinery
around one training program: replicas that differ in the Rényi α (a value of the state),
`vae tune` over it, an exact resume of β-TCVAE (whose loss needs the training-set size and
logs three more terms), and data parallelism over several devices."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
from helpers import ENV, ROOT, assert_same_bits, final_state, tiny_overrides

from vaecli import config
from vaecli.rundir import metrics
from vaecli.training import replicas
from vaecli.training import resume as resume_lib
from vaecli.training import start as train
from vaecli.tune import space


def _config(cache, *overrides):
    return config.load(None, [*tiny_overrides(cache), "train.epochs=2", "log.tensorboard=false", *overrides])


def _close(a, b, rtol=2e-5, atol=2e-6):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


def test_replicas_of_one_program_differ_in_the_renyi_alpha(tiny_cache, tmp_path):
    """--sweep objective.alpha: one compiled program, each replica the single run of its config."""
    base = _config(tiny_cache, "objective.name=vr", "objective.samples=3", "objective.gradient=dreg")
    items = replicas.expand(config.to_dict(base), None, ["objective.alpha=0.2,0.9"], "vr")
    paths = train.train_replicas([c for _, c in items], tmp_path / "replicas", [n for n, _ in items], argv=[])
    finals = []
    for path, (name, cfg) in zip(paths, items):
        single = train.train(cfg, tmp_path / "single", name, argv=[])
        (a, step), (b, _) = final_state(path), final_state(single)
        assert step == 40
        _close(a, b)
        np.testing.assert_allclose([r["loss"] for r in metrics.read(path)],
                                   [r["loss"] for r in metrics.read(single)], rtol=1e-5)
        finals.append(a)
    diff = max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
               for x, y in zip(jax.tree.leaves(finals[0]["params"]), jax.tree.leaves(finals[1]["params"])))
    assert diff > 1e-4  # α reaches the loss: the replicas trained differently


def test_tune_may_search_the_renyi_alpha(tiny_cache):
    raw = config.to_dict(_config(tiny_cache, "objective.name=vr", "objective.samples=3"))
    dim = space.parse("objective.alpha=0:1", raw)
    assert (dim.key, dim.low, dim.high) == ("objective.alpha", 0.0, 1.0)
    with pytest.raises(Exception, match="objective.gradient"):  # code, not a value of the state
        space.parse("objective.gradient=reparam,dreg", raw)


def test_btcvae_resumes_bit_identically_with_its_terms(tiny_cache, tmp_path):
    cfg = _config(tiny_cache, "objective.name=btcvae", "objective.beta=4.0", "train.epochs=3")
    whole = train.train(cfg, tmp_path, "whole", argv=[])
    part = train.train(config.replace(cfg, train={"epochs": 1}), tmp_path, "part", argv=[])
    resume_lib.resume_run(part, ["train.epochs=3"], argv=[])
    (a, step_a), (b, step_b) = final_state(whole), final_state(part)
    assert step_a == step_b == 60
    assert_same_bits(a, b)
    strip = lambda rows: [{k: v for k, v in r.items() if not k.endswith("_s")} for r in rows]
    rows = strip(metrics.read(part, "train"))
    assert rows == strip(metrics.read(whole, "train")) and all({"mi", "tc", "dim_kl"} <= set(r) for r in rows)


def test_new_objectives_shard_over_devices_with_the_numbers_of_one(tiny_cache, tmp_path):
    """β-TCVAE (pairs across the whole batch), PIWAE with DReG (two held copies of the model)
    and FactorVAE (its discriminator and the batch's permuted codes) on a mesh of two CPU devices: the final state of one device, to float tolerance."""
    choices = {"btcvae": ["objective.name=btcvae", "objective.beta=3.0"],
               "piwae": ["objective.name=piwae", "objective.samples=2", "objective.groups=2",
                         "objective.gradient=dreg"],
               "factorvae": ["objective.name=factorvae", "objective.beta=6",  # the discriminator too
                             "objective.discriminator.hidden=[16]"]}
    script = textwrap.dedent(f"""
        import json, sys
        import jax
        sys.path.insert(0, {str(ROOT / 'tests')!r})
        from helpers import tiny_overrides
        from vaecli import config
        from vaecli.training import start as train
        assert len(jax.devices()) == 2
        out = {{}}
        for name, overrides in {choices!r}.items():
            for n in (1, 2):
                cfg = config.load(None, tiny_overrides({str(tiny_cache)!r}) + ["train.epochs=2", f"train.devices={{n}}",
                                                                               "log.tensorboard=false"] + overrides)
                out[f"{{name}}{{n}}"] = str(train.train(cfg, {str(tmp_path)!r}, f"{{name}}-dev{{n}}", argv=[]))
        print(json.dumps(out))
    """)
    env = {**ENV, "XLA_FLAGS": f"{ENV.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=2".strip()}
    p = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    paths = json.loads(p.stdout.strip().splitlines()[-1])
    for name in choices:
        (one, step), (two, _) = final_state(paths[f"{name}1"]), final_state(paths[f"{name}2"])
        assert step == 40
        _close(one, two, rtol=1e-4, atol=1e-5)
