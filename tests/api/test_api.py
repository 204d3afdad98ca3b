"""vaecli from Python (vaecli/__init__.py, vaecli.api): the numbers are the CLI's, each method
compiles once per input shape, errors are the CLI's lines, `import vaecli` imports no JAX,
and docs/python.md and examples/explore_run.py run as written, on the tiny trained run."""
from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys

import jax.monitoring
import numpy as np
import pytest
from helpers import (
    CONFIG,
    ENV,
    ROOT,
    assert_same_bits,
    final_state,
    sets,
    summary,
    tiny_overrides,
    vae_inproc,
)

import vaecli
from vaecli import config
from vaecli.compiled import cache as programs
from vaecli.compiled import estimator
from vaecli.errors import RunError, UsageError
from vaecli.evaluation import elbo as eval_elbo
from vaecli.evaluation.sample import sample
from vaecli.rundir import metrics

PLACEHOLDER = "runs/bmnist_mlp-20261202T101500Z"  # the run folder docs/python.md names


@pytest.fixture(scope="module")
def run_path(tiny_run, tmp_path_factory):
    """A copy of the tiny run of this module's own (evaluations write into it)."""
    path = tmp_path_factory.mktemp("api") / tiny_run.name
    shutil.copytree(tiny_run, path, symlinks=True)
    return path


@pytest.fixture(scope="module")
def run(run_path):
    return vaecli.load(run_path)


def test_import_vaecli_imports_no_jax_and_names_its_api():
    code = ("import sys, vaecli\n"
            "names = [(n, getattr(vaecli, n)) for n in vaecli.__all__ if n not in ('load', 'evaluate')]\n"
            "print('jax' in sys.modules, 'tensorflow' in sys.modules, vaecli.__version__)")
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["False", "False", vaecli.__version__]
    for name in vaecli.__all__:
        value = getattr(vaecli, name)
        assert name == "__version__" or (value.__doc__ or "").strip(), name
    assert {"load", "train", "evaluate", "Run", "VaeError"} <= set(vaecli.__all__) <= set(dir(vaecli))
    assert vaecli.evaluate is eval_elbo.evaluate  # one implementation behind `vae eval-elbo` and the API
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        vaecli.nope  # noqa: B018


def test_log_likelihood_and_elbo_are_eval_elbo_per_example_bit_for_bit(run, run_path, tmp_path):
    npz = tmp_path / "per.npz"
    out = vae_inproc("eval-elbo", run_path, "--samples", "1,50", "--seed", "3", "--per-example", npz,
                     "--out", tmp_path / "eval", "--json")
    assert out.code == 0, out.stderr
    cli = np.load(npz)
    x = run.images("test")
    for k in (1, 50):
        ll = run.log_likelihood(x, k=k, seed=3)
        print(f"K={k}: API mean {ll.mean():.6f}, CLI mean {cli[f'log_likelihood_k{k}'].mean():.6f}, "
              f"first three API {ll[:3].tolist()} CLI {cli[f'log_likelihood_k{k}'][:3].tolist()}")
        assert ll.dtype == cli[f"log_likelihood_k{k}"].dtype and ll.shape == (len(x),)
        assert ll.tobytes() == cli[f"log_likelihood_k{k}"].tobytes()
    terms = run.elbo(x, seed=3)
    for name, key in (("elbo", "elbo_k1"), ("recon", "recon_k1"), ("kl", "kl")):
        assert terms[name].tobytes() == cli[key].tobytes(), name
    print(f"ELBO: API {terms['elbo'].mean():.6f}, CLI {cli['elbo_k1'].mean():.6f}; "
          f"the CLI's summary {json.loads(out.stdout)['results'][0]['elbo']:.6f}")
    # as uint8 0..255 the same values: the same numbers
    assert run.log_likelihood((x * 255).astype(np.uint8), k=50, seed=3).tobytes() == cli["log_likelihood_k50"].tobytes()
    # the draws follow the position in the given array: a prefix gets the same ones, another place others
    ll = cli["log_likelihood_k50"]
    np.testing.assert_allclose(run.log_likelihood(x[:10], k=50, seed=3), ll[:10], rtol=1e-5)
    single = run.log_likelihood(x[5], k=50, seed=3)
    assert single.shape == () and np.isfinite(single) and single != ll[5]
    assert single == run.log_likelihood(x[5:6], k=50, seed=3)[0] == run.log_likelihood(x[5:7], k=50, seed=3)[0]


def test_encode_decode_generate_are_the_pictures_programs(run, tmp_path):
    x = run.images("test")
    mean, std = run.encode(x)
    assert mean.shape == std.shape == (len(x), run.latent_dim) and np.all(std > 0)
    one_mean, one_std = run.encode(x[7, ..., 0])  # (H, W): one image, no batch axis back
    np.testing.assert_allclose(one_mean, mean[7], rtol=1e-5, atol=1e-6)
    assert one_std.shape == (run.latent_dim,)
    images = run.decode(mean[:6].reshape(2, 3, -1))
    assert images.shape == (2, 3, *run.image_shape) and 0 <= images.min() and images.max() <= 1
    prior = sample(run.path, mode="prior", n=16, seed=2, out=tmp_path, temperature=0.5)
    assert run.generate(16, seed=2, temperature=0.5).tobytes() == np.load(prior["npy"]).tobytes()
    assert (run.step, run.params_kind, run.config.model.latent_dim) == (prior["step"], prior["params"], 4)
    assert_same_bits(run.params, final_state(run.path)[0]["params"])  # the raw parameters: the run has no EMA


def test_each_method_compiles_once_per_input_shape(run_path):
    """Counted by JAX itself (a trace, a lowering and a compile are each reported) and by the
    estimator's trace counter: a second call of the same shapes compiles nothing, also for
    another seed and another Run of the same model; a new shape compiles once."""
    programs.clear()
    events = []
    listener = lambda name, *args, **kwargs: events.append(name) if name.startswith("/jax/core/compile") else None
    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        run, other = vaecli.load(run_path), vaecli.load(run_path)
        x = run.images("test")
        calls = {"encode": lambda r, n, seed: r.encode(x[:n]), "decode": lambda r, n, seed: r.decode(np.full((n, 4), seed)),
                 "generate": lambda r, n, seed: r.generate(n, seed=seed),
                 "log_likelihood": lambda r, n, seed: r.log_likelihood(x[:n], k=5, seed=seed),
                 "elbo": lambda r, n, seed: r.elbo(x[:n], seed=seed)}
        for name, call in calls.items():
            traces = estimator.TRACES["estimator"]
            # a new shape: compiled once more (sizes no other test uses: JAX keeps the programs
            # other tests of this process compiled, which programs.clear() does not reach)
            for n, first_seed in ((61, 0), (29, 3)):
                events.clear()
                call(run, n, first_seed)
                assert events, (name, n)
                for seed, same_model in ((first_seed, run), (first_seed + 1, run), (first_seed + 2, other)):
                    events.clear()
                    call(same_model, n, seed)
                    assert events == [], (name, n, seed)
            assert estimator.TRACES["estimator"] - traces == (2 if name in ("log_likelihood", "elbo") else 0), name
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


def test_ten_thousand_images_take_the_memory_of_a_thousand(run, monkeypatch):
    """log p(x) of 10,000 images runs the chunked estimator: its scratch memory (XLA's own
    account) is that of 1,000 images; the encoder takes them 1000 at a time."""
    plans, real = [], estimator.compile_estimator

    def spy(*args, **kwargs):
        estimate, plan = real(*args, **kwargs)
        plans.append(plan)
        return estimate, plan

    monkeypatch.setattr(estimator, "compile_estimator", spy)
    x = run.images("test")
    many = np.concatenate([x] * 79)[:10_000]
    ll = run.log_likelihood(many, k=2, seed=0)
    np.testing.assert_allclose(run.log_likelihood(many[:1000], k=2, seed=0), ll[:1000], rtol=1e-6)
    assert ll.shape == (10_000,) and np.all(np.isfinite(ll))
    print("scratch bytes, 10,000 and 1,000 images:", [p["scratch_bytes"] for p in plans])
    assert plans[0]["batch_size"] == plans[1]["batch_size"] == 100
    assert plans[0]["scratch_bytes"] < 1.01 * plans[1]["scratch_bytes"]  # a few loop counters apart
    assert run.encode(many)[0].shape == (10_000, run.latent_dim)


def test_errors_are_the_lines_the_cli_prints(run, run_path, tmp_path):
    (tmp_path / "empty").mkdir()
    for folder, args in ((tmp_path / "missing", []), (tmp_path / "empty", []), (run_path, ["--step", "7"]),
                         (run_path, ["--step", "soon"])):
        out = vae_inproc("eval-elbo", folder, *args)
        line = out.stderr.strip().removeprefix("error: ")
        with pytest.raises((RunError, UsageError)) as err:
            vaecli.load(folder, **({"step": args[1]} if args else {}))
        assert str(err.value) == line and err.value.exit_code == out.code, (line, err.value)
    expected = "images: expected (N, 8, 8[, 1]) or (8, 8[, 1]) uint8 in 0..255 or floats in [0, 1], got"
    for bad, got in ((np.zeros((3, 7, 8)), "(3, 7, 8)"), (np.zeros((3, 8, 9, 1)), "(3, 8, 9, 1)"),
                     (np.zeros((3, 8, 8, 1), np.int64), "int64 (3, 8, 8, 1)"),
                     (np.full((8, 8), 1.5), "floats in [1.5, 1.5]"),
                     (np.full((8, 8), np.nan), "floats that are not all finite (NaN or infinity)"),
                     (np.ones((2, 8, 8, 1), np.uint8), "uint8 in 0..1 (pass binary images as floats, or as 0 and 255)"),
                     (np.zeros((0, 8, 8, 1)), "(0, 8, 8, 1), no images")):
        for method in (run.encode, run.log_likelihood, run.elbo):
            with pytest.raises(UsageError) as err:
                method(bad)
            assert str(err.value) == f"{expected} {got}"
    with pytest.raises(UsageError, match=re.escape("z: expected (..., 4) floats (Run.latent_dim: the dimension of the code the run decodes), "
                                                   "got (3, 5)")):
        run.decode(np.zeros((3, 5)))
    for call, message in ((lambda: run.log_likelihood(np.zeros((8, 8)), k=0), "k=0: must be a whole number"),
                          (lambda: run.generate(0), "n=0: must be"), (lambda: run.generate(2, temperature=0), "temperature=0"),
                          (lambda: vaecli.load(run_path, params="best"), "params='best': choose 'ema'"),
                          (lambda: run.elbo(np.zeros((8, 8)), seed=1.5), "seed=1.5: must be a whole number")):
        with pytest.raises(UsageError, match=re.escape(message)):
            call()


def test_grayscale_batches_come_with_or_without_the_channel_axis(run):
    x = run.images("test")[:5].astype(np.float32)
    assert x.shape == (5, 8, 8, 1)
    np.testing.assert_array_equal(run.encode(x[..., 0])[0], run.encode(x)[0])
    np.testing.assert_array_equal(run.elbo(x[..., 0], seed=3)["elbo"], run.elbo(x, seed=3)["elbo"])


def test_a_model_without_a_density_has_no_log_likelihood(run):
    ae = copy.copy(run)
    ae.config = config.replace(run.config, objective={"name": "ae"})  # the estimator as eval-elbo runs it for ae
    with pytest.raises(RunError, match=r"^log_likelihood: objective.name=ae: .* run.elbo\(images\)\['recon'\] gives it$"):
        ae.log_likelihood(np.zeros((8, 8)))
    terms = ae.elbo(run.images("test")[:4], seed=0, k=7)  # k is ignored: one deterministic pass
    assert np.all(terms["kl"] == 0) and np.all(np.isfinite(terms["recon"])) and np.all(terms["elbo"] == -terms["recon"])


def test_load_names_its_checkpoint(run_path):
    latest, first = vaecli.load(run_path, step="latest"), vaecli.load(run_path, step=20)
    assert (first.step, latest.step, vaecli.load(run_path).step) == (20, 60, 60)
    assert not np.array_equal(first.encode(np.zeros((8, 8)))[0], latest.encode(np.zeros((8, 8)))[0])
    assert vaecli.load(run_path, params="raw").params_kind == "raw" and "step 60" in repr(latest)


def test_train_makes_the_run_folder_vae_train_makes(tiny_cache, tmp_path):
    overrides = [*tiny_overrides(tiny_cache), "train.epochs=1"]
    path = vaecli.train(CONFIG, overrides=overrides, runs_dir=tmp_path / "api", name="same")
    out = vae_inproc("train", "--config", CONFIG, *sets(overrides), "--runs-dir", tmp_path / "cli", "--name", "same")
    assert out.code == 0, out.stderr
    cli = next((tmp_path / "cli").iterdir())
    # Orbax names its data files by content hashes, TensorBoard its event files by the clock
    listing = lambda p: sorted(str(f.relative_to(p)) for f in [*p.iterdir(), *(p / "checkpoints").iterdir(),
                                                               *(p / "samples").iterdir()] if "events.out" not in f.name)
    assert path.parent == tmp_path / "api" and path.name.startswith("same-") and listing(path) == listing(cli)
    assert (path / "config.yaml").read_text() == (cli / "config.yaml").read_text()
    untimed = lambda p: [{k: v for k, v in r.items() if not k.endswith("_s")} for r in metrics.read(p)]
    assert untimed(path) == untimed(cli) and summary(path)["status"] == summary(cli)["status"] == "completed"
    assert_same_bits(final_state(path)[0], final_state(cli)[0])
    assert json.loads((path / "meta.json").read_text())["argv"][:3] == ["vaecli.train", "--config", str(CONFIG)]
    with pytest.raises(UsageError, match="overrides: expected a list"):
        vaecli.train(CONFIG, overrides="train.epochs=1")
    report = vaecli.evaluate(path, split="test", samples=[1, 5], write=False)
    shown = json.loads(vae_inproc("eval-elbo", cli, "--samples", "1,5", "--json", "--out", tmp_path / "e").stdout)
    assert report.keys() == shown.keys() and [r["log_likelihood"] for r in report["results"]] == [
        r["log_likelihood"] for r in shown["results"]]


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE)


def test_docs_python_md_runs_as_written(run_path, tiny_cache, tmp_path, monkeypatch):
    """Every ```python block of docs/python.md, in order, in one namespace, on the tiny run:
    the run folder, the training config's data and the runs folder put in for the doc's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    text = (ROOT / "docs" / "python.md").read_text()
    blocks = python_blocks(text)
    assert len(blocks) >= 6
    tiny = ", ".join(json.dumps(o) for o in [*tiny_overrides(tiny_cache), "train.epochs=1"])
    swaps = {PLACEHOLDER: str(run_path), 'overrides=["train.epochs=2"]': f"overrides=[{tiny}]",
             'runs_dir="runs"': f'runs_dir="{tmp_path / "runs"}"', '"configs/bmnist_mlp.yaml"': f'"{CONFIG}"'}
    for old in swaps:
        assert old in text, old
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    try:
        for i, block in enumerate(blocks):
            for old, new in swaps.items():
                block = block.replace(old, new)
            exec(compile(block, f"docs/python.md, python block {i + 1}", "exec"), namespace)
    finally:
        plt.close("all")
    assert namespace["run"].path == run_path and namespace["means"].shape == (128, 4)
    assert (tmp_path / "per-example.npz").exists() and [r["samples"] for r in namespace["report"]["results"]] == [1, 5000]


def test_example_explore_run_runs_on_a_run_folder(run_path):
    text = (ROOT / "examples" / "explore_run.py").read_text()
    assert text.count("# %%") >= 6  # percent cells: a notebook in Jupyter (jupytext) or VS Code
    p = subprocess.run([sys.executable, "examples/explore_run.py", str(run_path)], cwd=ROOT, env=ENV,
                       capture_output=True, text=True, timeout=300)
    print(p.stdout)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(f"{run_path.name}: step 60 (raw params)")
    for needle in ("active units", "log p(x) ~", "hand-drawn 1: posterior mean", "explore-prior.png"):
        assert needle in p.stdout, needle
    assert (run_path / "samples" / "explore-interpolation.png").stat().st_size > 0
    unset = subprocess.run([sys.executable, "examples/explore_run.py"], cwd=ROOT,
                           env={k: v for k, v in ENV.items() if k != "VAECLI_RUN"}, capture_output=True, text=True,
                           timeout=300)
    assert unset.returncode == 1 and "usage: python examples/explore_run.py RUN_FOLDER" in unset.stderr
