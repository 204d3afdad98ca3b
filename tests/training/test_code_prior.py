"""`vae train-prior` (vaecli.training.prior) and what reads its prior: the discrete-latent bound
of `vae eval-elbo` against float64 NumPy, `vae sample --mode prior`, resume bit-identical,
the time limit, and refusals."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from helpers import CONFIG, ENV, ROOT, Out, assert_error, assert_same_bits, built_once, sets, tiny_overrides, \
    vae_inproc

from vaecli import config, data
from vaecli.compiled import code_prior as compiled_prior
from vaecli.rundir import code_prior, layout
from vaecli.rundir.checkpoints import Checkpoints
from vaecli.rundir.restore import load_state
from vaecli.training import start as train

VQ_SETS = ["model.latent=vq", "objective.name=vq", "model.latent_dim=8", "model.code_dim=2", "model.codebook_size=6",
           "train.epochs=2", "code_prior.layers=2", "code_prior.channels=8", "code_prior.epochs=2",
           "code_prior.batch_size=64"]


@pytest.fixture(scope="module")
def vq_run(tiny_cache, tmp_path_factory):
    cfg = config.load(None, [*tiny_overrides(tiny_cache), *VQ_SETS])
    return built_once(tmp_path_factory, "vq-for-prior", lambda root: train.train(
        cfg, root, "vq", argv=["pytest"], progress="none"))[1]


@pytest.fixture(scope="module")
def with_prior(vq_run, tmp_path_factory):
    def build(root):
        path = root / "run"
        shutil.copytree(vq_run, path)
        out = vae_inproc("train-prior", path, "--json")
        assert out.code == 0, out.stderr
        return path
    return built_once(tmp_path_factory, "vq-prior", build)[1]


def _prior_state(path):
    """The state of a run's latest prior checkpoint, restored into the template of its prior.yaml."""
    run = layout.open_run(path)
    meta = code_prior.PriorFolder(path).meta()
    cfg = code_prior.prior_config(run.config, meta)
    _, _, like = compiled_prior.template_state(cfg.code_prior, meta["codebook_size"], meta["codes"], cfg.seed)
    with Checkpoints(code_prior.PriorFolder(path).checkpoint_dir, read_only=True) as ckpts:
        return ckpts.restore(ckpts.steps()[-1], like)[0]


def _np_recon(params, x):
    """−log p(x|z_q) per image in float64: the MLP encoder, the nearest codes, the MLP decoder."""
    f64 = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    enc, dec, codebook = f64["encoder"]["net"], f64["decoder"]["net"], f64["quantizer"]["codebook"]
    z = np.maximum(x @ enc["dense0"]["kernel"] + enc["dense0"]["bias"], 0) @ enc["dense1"]["kernel"] \
        + enc["dense1"]["bias"]
    flat = z.reshape(len(x), -1, 2)
    idx = ((flat[:, :, None] - codebook[None, None]) ** 2).sum(-1).argmin(-1)
    zq = codebook[idx].reshape(len(x), -1)
    logits = np.maximum(zq @ dec["dense0"]["kernel"] + dec["dense0"]["bias"], 0) @ dec["dense1"]["kernel"] \
        + dec["dense1"]["bias"]
    return -(x * logits - np.logaddexp(0, logits)).sum(-1), idx


def test_the_bound_is_reconstruction_plus_the_prior_nll(with_prior):
    out = vae_inproc("eval-elbo", with_prior, "--json")
    assert out.code == 0, out.stderr
    doc = json.loads(out.stdout)["results"][0]
    assert doc["log_likelihood"] is None and doc["nll"] is None and doc["elbo"] is None  # never mixed
    run = layout.open_run(with_prior)
    _, state, _, _ = load_state(run.config, run.image_shape, run.checkpoint_dir)
    test = data.load_split(run.config.data, "test")
    x = test.flat.astype(np.float64) / test.scale
    recon, idx = _np_recon(state["params"], x)
    prior = code_prior.load(run)
    logits = np.asarray(prior.fn.bind(prior.params).logits(jax.numpy.asarray(idx, np.int32)), np.float64)
    logp = logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)
    prior_nll = -np.take_along_axis(logp, idx[..., None], -1)[..., 0].sum(-1)
    np.testing.assert_allclose(doc["recon"], recon.mean(), rtol=1e-5)
    np.testing.assert_allclose(doc["prior_nll"], prior_nll.mean(), rtol=1e-5)
    np.testing.assert_allclose(doc["discrete_bound_nll"], (recon + prior_nll).mean(), rtol=1e-5)
    np.testing.assert_allclose(doc["discrete_bound_bits_per_dim"], (recon + prior_nll).mean() / (64 * np.log(2)),
                               rtol=1e-5)
    assert doc["codes_used"] == len(np.unique(idx))


def test_without_a_prior_only_the_reconstruction_and_a_note(vq_run, tmp_path):
    out = vae_inproc("eval-elbo", vq_run, "--json", "--out", tmp_path)
    doc = json.loads(out.stdout)["results"][0]
    assert doc["recon"] > 0 and doc["discrete_bound_nll"] is None and "vae train-prior" in doc["notes"][0]
    assert_error(vae_inproc("sample", vq_run, "--mode", "prior", "--out", tmp_path), 1, "no code prior",
                 "vae train-prior")


def test_sample_draws_codes_from_the_prior(with_prior, tmp_path):
    out = vae_inproc("sample", with_prior, "--mode", "prior", "--n", "6", "--temperature", "0.5", "--out", tmp_path)
    assert out.code == 0, out.stderr
    images = np.load(next(tmp_path.glob("prior-*.npy")))
    assert images.shape == (6, 8, 8, 1) and 0 <= images.min() and images.max() <= 1


def test_resume_is_bit_identical(vq_run, with_prior, tmp_path):
    path = tmp_path / "run"
    shutil.copytree(vq_run, path)
    assert vae_inproc("train-prior", path, "--set", "code_prior.epochs=1").code == 0
    assert_error(vae_inproc("train-prior", path, "--set", "code_prior.channels=4"), 2, "code_prior.epochs")
    assert vae_inproc("train-prior", path, "--set", "code_prior.epochs=2").code == 0
    assert_same_bits(_prior_state(with_prior), _prior_state(path))
    assert [r["epoch"] for r in code_prior.PriorFolder(path).records()] == [1, 2]


def test_a_time_limit_pauses_with_exit_3(vq_run, tmp_path):
    path = tmp_path / "run"
    shutil.copytree(vq_run, path)
    out = vae_inproc("train-prior", path, "--time-limit", "1s")
    assert out.code == 3 and "paused:" in out.stderr and f"vae train-prior {path}" in out.stderr
    assert json.loads((path / "prior" / "summary.json").read_text())["status"] == "paused"


@pytest.mark.parametrize("args, code, needles", [
    (["--set", "code_prior.layers=1"], 2, ("code_prior.layers", "code grid", "code_prior.layers=2")),
    (["--set", "model.latent_dim=4"], 2, ("--set model.latent_dim=4", "code_prior.*")),
    (["--time-limit", "soon"], 2, ("--time-limit soon",)),
])
def test_refusals_leave_no_prior(args, code, needles, vq_run, tmp_path):
    path = tmp_path / "run"
    shutil.copytree(vq_run, path)
    assert_error(vae_inproc("train-prior", path, *args), code, *needles)
    assert not (path / "prior").exists()


def test_a_gaussian_run_or_one_without_checkpoint_is_refused(tiny_run, vq_run, tmp_path):
    """A Gaussian run, and a VQ-VAE run with no complete checkpoint (only a save that never
    finished), are refused in a real process before JAX is imported (seconds on a busy CPU)."""
    probe = ("import sys; from vaecli.cli import app\n"
             "try:\n    app()\nexcept SystemExit as e:\n    print('jax' in sys.modules, e.code, file=sys.stderr)")

    def refused(path: Path, code: int, *needles: str) -> None:
        p = subprocess.run([sys.executable, "-c", probe, "train-prior", str(path)], cwd=ROOT, env=ENV,
                           capture_output=True, text=True, timeout=120)
        *stderr, imported = p.stderr.strip().splitlines()
        assert imported.split() == ["False", str(code)], p.stderr
        assert_error(Out(code, p.stdout, "\n".join(stderr)), code, *needles)
        assert not (path / "prior").exists()

    refused(tiny_run, 2, "model.latent=vq", "model.latent=gaussian")
    path = tmp_path / "run"
    shutil.copytree(vq_run, path)
    for step in (path / "checkpoints").iterdir():
        shutil.rmtree(step)
    (path / "checkpoints" / "40.orbax-checkpoint-tmp-1").mkdir()
    refused(path, 1, "no checkpoint", "train it first")
    shutil.rmtree(path / "checkpoints")
    assert_error(vae_inproc("train-prior", path), 1, "no checkpoint")


def test_a_prior_of_other_codes_is_refused(with_prior, tiny_cache, tmp_path):
    """A prior folder fitted to another model's codes: one line, nothing changed."""
    cfg = config.load(None, [*tiny_overrides(tiny_cache), *VQ_SETS, "model.code_dim=4", "train.epochs=1"])
    other = train.train(cfg, tmp_path, "other", argv=["pytest"], progress="none")
    shutil.copytree(with_prior / "prior", other / "prior")
    before = (other / "prior" / "prior.yaml").read_text()
    assert_error(vae_inproc("train-prior", other), 1, "move that folder away")
    assert (other / "prior" / "prior.yaml").read_text() == before
    assert_error(vae_inproc("eval-elbo", other, "--out", tmp_path), 1, "models 4 codes of 6")
