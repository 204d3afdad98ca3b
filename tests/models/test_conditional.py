"""The conditional VAE: its estimator against an independent float64 NumPy computation on a tiny
network, the label's way into both networks, training/evaluation end to end, the label deciding
what is drawn, replicas on two devices equal to their runs alone, and `vae tune`."""
from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest
from helpers import (CONFIG, ENV, ROOT, assert_error, assert_same_bits, built_once, final_state, flat, make_bars, sets,
                     vae_inproc)

import vaecli
from vaecli import config
from vaecli.compiled import estimator
from vaecli.models import vae as models

D, C, L, K = 6, 3, 2, 5


def _np_mlp(layers, x):
    """Dense layers with ReLU between them: layers = [(kernel, bias), ...]."""
    for i, (w, b) in enumerate(layers):
        x = x @ w + b
        if i < len(layers) - 1:
            x = np.maximum(x, 0.0)
    return x


def _f64(tree):
    return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


def _reference(p, x, y, eps):
    """log p̂_K(x|y), recon and analytic KL per example, float64, from the parameter dict."""
    e, d = p["encoder"], p["decoder"]["net"]
    onehot = np.eye(C)[y]
    h = np.maximum(np.concatenate([x, onehot], 1) @ e["trunk"]["dense0"]["kernel"] + e["trunk"]["dense0"]["bias"], 0)
    mean = h @ e["mean"]["kernel"] + e["mean"]["bias"]
    logvar = h @ e["logvar"]["kernel"] + e["logvar"]["bias"]
    z = mean + np.exp(0.5 * logvar) * eps  # (K, B, L)
    zy = np.concatenate([z, np.broadcast_to(onehot, (K, *onehot.shape))], -1)
    logits = _np_mlp([(d[f"dense{i}"]["kernel"], d[f"dense{i}"]["bias"]) for i in range(2)], zy)
    log_px = (x * logits - np.logaddexp(0.0, logits)).sum(-1)
    log_pz = (-0.5 * z ** 2 - 0.5 * math.log(2 * math.pi)).sum(-1)
    log_qz = (-0.5 * eps ** 2 - 0.5 * logvar - 0.5 * math.log(2 * math.pi)).sum(-1)
    log_w = log_px + log_pz - log_qz
    top = log_w.max(0)
    ll = top + np.log(np.exp(log_w - top).mean(0))
    kl = 0.5 * (np.exp(logvar) + mean ** 2 - 1.0 - logvar).sum(-1)
    return ll, -log_px.mean(0), kl


def test_estimator_matches_a_float64_numpy_computation():
    cfg = config.load(None, ["model.conditional=true", f"model.num_classes={C}", f"model.latent_dim={L}",
                             "model.hidden=[4]"]).model
    fn = models.functional(cfg, (2, 3, 1), seed=7)
    rng = np.random.default_rng(0)
    x = (rng.random((9, D)) < 0.5).astype(np.uint8)
    y = rng.integers(0, C, 9)
    rows = np.concatenate([x, np.eye(C, dtype=np.uint8)[y]], 1)  # the layout of Split.with_labels, scale 1
    got = estimator.per_example(fn, fn.params, rows, 1, K, seed=3, batch_size=4)
    keys = jax.vmap(jax.random.fold_in, (None, 0))(jax.random.key(3), np.arange(9))
    eps = np.asarray(estimator._draws(keys, np.arange(K), L), np.float64)  # the estimator's own draws, (K, B, L)
    ll, recon, kl = _reference(_f64(fn.params), x.astype(np.float64), y, eps)
    np.testing.assert_allclose(got["log_likelihood"], ll, rtol=2e-5, atol=2e-5)
    np.testing.assert_allclose(got["recon"], recon, rtol=2e-5, atol=2e-5)
    np.testing.assert_allclose(got["kl"], kl, rtol=2e-5, atol=2e-5)
    other = np.concatenate([x, np.eye(C, dtype=np.uint8)[(y + 1) % C]], 1)
    assert not np.allclose(estimator.per_example(fn, fn.params, other, 1, K, seed=3, batch_size=4)["recon"], recon)


def test_conv_encoder_sees_the_label_as_constant_channels():
    cfg = config.load(None, ["model.conditional=true", f"model.num_classes={C}", "model.kind=conv",
                             "model.channels=[4]", "model.hidden=[8]", f"model.latent_dim={L}"]).model
    model = models.functional(cfg, (4, 4, 1), seed=1)
    vae = model.bind(model.params)
    rng = np.random.default_rng(1)
    x = rng.random((5, 4, 4, 1)).astype(np.float32)
    y = rng.integers(0, C, 5)
    stacked = np.concatenate([x, np.broadcast_to(np.eye(C)[y][:, None, None, :], (5, 4, 4, C))], -1)
    mean, _ = vae.encode(np.concatenate([x.reshape(5, -1), np.eye(C)[y]], 1).astype(np.float32))
    inner, _ = vae.encoder.conv(stacked.reshape(5, -1).astype(np.float32))
    np.testing.assert_allclose(mean, inner, rtol=1e-6)
    assert vae.decoder(np.zeros((1, L + C), np.float32)).shape == (1, 16)


def _labelled_bars(path):
    x = make_bars(160, 0)[..., 0]
    y = np.arange(160) % C
    x[y == 1, 0, :] = 1  # each class marked differently
    x[y == 2, :, 0] = 1
    np.savez(path, x=x, y=y)
    return path


def _overrides(path, cache, *extra) -> list[str]:
    return ["data.source=arrays", f"data.path={path}", f"data.cache_dir={cache}", "data.val_size=32",
            "data.test_size=32", "model.conditional=true", "model.hidden=[16]", "model.latent_dim=3",
            "train.batch_size=32", "eval.every_epochs=1", "checkpoint.every_epochs=1", "log.progress=none",
            "log.tensorboard=false", *extra]


def _train(tmp_path, cache, name, *extra):
    args = sets(_overrides(tmp_path / "bars.npz", cache, "objective.name=iwae", "objective.samples=2",
                           "train.ema_decay=0.9", *extra))
    return vae_inproc("train", "--config", CONFIG, *args, "--runs-dir", tmp_path / "runs", "--name", name)


def test_conditional_training_resumes_bit_for_bit_and_evaluates_log_p_x_given_y(tmp_path):
    _labelled_bars(tmp_path / "bars.npz")
    cache = tmp_path / "cache"
    assert _train(tmp_path, cache, "whole", "train.epochs=2").code == 0
    assert _train(tmp_path, cache, "part", "train.epochs=1").code == 0
    runs = {p.name.split("-")[0]: p for p in (tmp_path / "runs").iterdir()}
    assert vae_inproc("train", "--resume", runs["part"], "--set", "train.epochs=2").code == 0
    whole, part = final_state(runs["whole"]), final_state(runs["part"])
    assert whole[1] == part[1] > 0
    assert_same_bits(whole[0], part[0])
    assert "num_classes: 3" in (runs["whole"] / "config.yaml").read_text()
    out = vae_inproc("eval-elbo", runs["whole"], "-k", "4", "--kl-mc-samples", "0")
    assert out.code == 0 and "log p(x|y)" in out.stdout
    assert_error(vae_inproc("sample", runs["whole"], "--label", "12"), 2, "--label 12: this run has 3 classes")
    grid = vae_inproc("sample", runs["whole"], "--n", "6", "--json")
    assert grid.code == 0 and json.loads(grid.stdout)["shape"][:2] == [3, 2]  # a row per class


def test_conditional_needs_labels(tmp_path):
    np.savez(tmp_path / "bars.npz", x=make_bars(100, 0)[..., 0])
    out = _train(tmp_path, tmp_path / "cache", "nolabels", "train.epochs=1")
    assert_error(out, 2, "model.conditional: the conditional VAE needs class labels")
    out = vae_inproc("tune", "--config", CONFIG, *sets(_overrides(tmp_path / "bars.npz", tmp_path / "cache")),
                     "--space", "optim.lr=log:1e-4:1e-2", "--trials", "2", "--runs-dir", tmp_path / "runs")
    assert_error(out, 2, "model.conditional: the conditional VAE needs class labels")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def _halves(path, n: int = 192):
    """Binary 8x8 images whose label says where they are dark: class 0 the left half (pixel
    probability 0.05, 0.85 elsewhere), class 1 the right half. The noise is independent of
    the class, so in a draw from the prior only the label can tell the halves apart."""
    y = np.arange(n) % 2
    p = np.full((n, 8, 8), 0.85)
    p[y == 0, :, :4] = p[y == 1, :, 4:] = 0.05
    np.savez(path, x=(np.random.default_rng(0).random(p.shape) < p).astype(np.uint8), y=y)


@pytest.fixture(scope="module")
def halves_runs(tmp_path_factory):
    """On two forced host devices (set before JAX starts, hence the subprocess): seeds 0 and 1
    of a conditional run on the halves as one program of two replicas (one a device), the same
    two seeds alone, and a `vae tune` of two conditional trials that leaves model.num_classes
    to the data. After 60 epochs of 4 steps the model has moved the class from z to the label
    (it starts out coding it in z, as an unconditional VAE would)."""
    def build(root):
        _halves(root / "halves.npz")
        base = _overrides(root / "halves.npz", root / "cache", "model.latent_dim=2", "optim.lr=1e-2",
                          "train.epochs=60", "eval.every_epochs=60", "checkpoint.every_epochs=60", "eval.grid=4")
        script = textwrap.dedent(f"""
            import json
            import jax
            from vaecli import config
            from vaecli.training import start as train
            from vaecli.tune import study as tune
            assert len(jax.devices()) == 2
            cfgs = [config.load({str(CONFIG)!r}, {base!r} + [f"seed={{s}}"]) for s in (0, 1)]
            out = {{"replicas": [str(p) for p in train.train_replicas(cfgs, {str(root)!r}, ["r0", "r1"], argv=[])],
                   "alone": [str(train.train(config.replace(c, train={{"devices": 1}}), {str(root)!r}, f"a{{s}}",
                                             argv=[])) for s, c in enumerate(cfgs)]}}
            raw = config.to_dict(config.replace(cfgs[0], train={{"epochs": 2}}, eval={{"every_epochs": 1}}))
            study = tune.create(raw, ["optim.lr=log:1e-3:1e-2"], 2, 2, "none", {str(root)!r}, "study", [])
            out["tune"] = {{"states": tune.run(study, [])["states"], "study": str(study)}}
            print(json.dumps(out))
        """)
        forced = {**ENV, "XLA_FLAGS": f"{ENV.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=2".strip()}
        p = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=forced, capture_output=True, text=True,
                           timeout=600)
        assert p.returncode == 0, p.stderr[-3000:]
        return json.loads(p.stdout.strip().splitlines()[-1])
    return built_once(tmp_path_factory, "conditional-halves", build)[1]


def test_the_label_decides_what_is_drawn(halves_runs):
    run = vaecli.load(halves_runs["replicas"][0])
    left, right = np.s_[:, :, :4], np.s_[:, :, 4:]
    zero, one = (run.generate(64, label=c)[..., 0] for c in (0, 1))  # the same 64 draws of z, each label
    assert zero[left].mean() < 0.3 < 0.6 < zero[right].mean()
    assert one[right].mean() < 0.3 < 0.6 < one[left].mean()


def test_conditional_replicas_on_two_devices_equal_their_runs_alone(halves_runs):
    states = [(final_state(r), final_state(a)) for r, a in zip(halves_runs["replicas"], halves_runs["alone"])]
    for (replica, step), (alone, alone_step) in states:
        assert step == alone_step == 240
        assert_same_bits(replica, alone)
    metas = [json.loads((Path(r) / "meta.json").read_text()) for r in halves_runs["replicas"]]
    assert [(m["replica"]["index"], m["replica"]["count"]) for m in metas] == [(0, 2), (1, 2)]  # one program
    assert not np.array_equal(*(flat(s[0][0]["params"]) for s in states))  # two seeds, two models


def test_tune_trains_conditional_trials_with_the_data_s_classes(halves_runs):
    assert halves_runs["tune"]["states"] == {"complete": 2}
    study = Path(halves_runs["tune"]["study"])
    assert json.loads((study / "study.json").read_text())["config"]["model"]["num_classes"] == 2
    trials = sorted((study / "trials").iterdir())
    assert len(trials) == 2 and all(config.load(t / "config.yaml").model.num_classes == 2 for t in trials)
