"""Replicas: several seeds / learning rates / weight decays trained by one compiled program,
each written as an ordinary run folder that equals the single run of the same config."""
from __future__ import annotations

import json

import jax
import numpy as np
import pytest
from helpers import assert_error, built_once, vae_inproc

from vaecli import config
from vaecli.errors import RunError, UsageError
from vaecli.rundir import layout as runs
from vaecli.rundir import metrics, restore
from vaecli.training import replicas as sweep
from vaecli.training import resume as resume_lib
from vaecli.training import start as train


def final(run_path):
    run = runs.open_run(run_path)
    _, state, step, _ = restore.load_state(run.config, run.image_shape, run.checkpoint_dir)
    return state, step


def assert_close(a, b, rtol=2e-5, atol=2e-6):
    """Same tree structure (a leaf missing on one side fails), then each leaf to tolerance."""
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


def test_seed_and_sweep_parsing():
    assert sweep.parse_seeds("0-3,8") == [0, 1, 2, 3, 8]
    assert sweep.parse_seeds("5") == [5]
    for bad in ("3-1", "a", "1,,2", "1,1"):
        with pytest.raises(UsageError, match="--seeds"):
            sweep.parse_seeds(bad)
    assert sweep.parse_sweep("optim.lr=1e-3, 3e-4") == ("optim.lr", ["1e-3", "3e-4"])
    items = sweep.expand({"optim": {"lr": 0.1}}, [0, 1], ["optim.lr=1e-3,3e-4"], "x")
    assert [n for n, _ in items] == ["x-seed0-lr1e-3", "x-seed0-lr3e-4", "x-seed1-lr1e-3", "x-seed1-lr3e-4"]
    assert [(c.seed, c.optim.lr) for _, c in items] == [(0, 1e-3), (0, 3e-4), (1, 1e-3), (1, 3e-4)]
    assert [len(g) for g in sweep.groups(items, 3)] == [3, 1]


@pytest.mark.parametrize("key", ["model.latent_dim", "model.hidden", "model.kind", "train.batch_size"])
def test_sweep_refuses_keys_that_change_shapes_or_code(key, tiny_cache, tmp_path):
    out = vae_inproc("train", "--config", "configs/bmnist_mlp.yaml", "--sweep", f"{key}=1,2",
                     "--runs-dir", tmp_path / "runs")
    assert_error(out, 2, f"--sweep {key}", "loop in the shell", "--set")
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())


@pytest.fixture(scope="module")
def replica_runs(tiny_config, tmp_path_factory):
    base = config.replace(tiny_config, train={"epochs": 2})
    items = sweep.expand(config.to_dict(base), [0, 1], ["optim.lr=1e-3,3e-3", "optim.weight_decay=0,1e-3"], "rep")
    paths = built_once(tmp_path_factory, "replicas", lambda root: train.train_replicas(
        [c for _, c in items], root, [n for n, _ in items], argv=["pytest"]))[1]
    return list(zip(paths, [c for _, c in items]))


def test_each_replica_equals_its_single_run(replica_runs, tmp_path):
    assert len(replica_runs) == 8
    for path, cfg in replica_runs[::3]:  # four of the eight, to keep the suite short
        single = train.train(cfg, tmp_path, "single", argv=["pytest"])
        (a, sa), (b, sb) = final(path), final(single)
        assert sa == sb == 40
        assert_close(a, b)
        ma = [r["loss"] for r in metrics.read(path)]
        mb = [r["loss"] for r in metrics.read(single)]
        np.testing.assert_allclose(ma, mb, rtol=1e-5)


def test_replica_folders_are_ordinary_runs(replica_runs):
    lrs, decays, seeds = set(), set(), set()
    for i, (path, cfg) in enumerate(replica_runs):
        run = runs.open_run(path)
        assert run.config == cfg  # its own resolved config
        meta = json.loads((path / "meta.json").read_text())
        assert meta["replica"]["index"] == i and meta["replica"]["count"] == 8
        summary = json.loads((path / "summary.json").read_text())
        assert summary["status"] == "completed" and summary["replicas_in_program"] == 8
        state, _ = final(path)
        lr = float(np.asarray(state["opt_state"][-1].hyperparams["learning_rate"]))
        assert lr == pytest.approx(cfg.optim.lr)
        lrs.add(cfg.optim.lr), decays.add(cfg.optim.weight_decay), seeds.add(cfg.seed)
        assert list((path / "samples").glob("prior-step*.png"))
    assert lrs == {1e-3, 3e-3} and decays == {0.0, 1e-3} and seeds == {0, 1}
    # the commands work on a replica folder unchanged
    path = replica_runs[0][0]
    out = vae_inproc("eval-elbo", path, "--samples", "2", "--json")
    assert out.code == 0, out.stderr
    assert json.loads(out.stdout)["checkpoint_step"] == 40


def test_resume_a_replica_as_a_single_run(replica_runs, tiny_config, tmp_path):
    path, cfg = replica_runs[5]
    copy = tmp_path / path.name
    import shutil

    shutil.copytree(path, copy)
    resume_lib.resume_run(copy, ["train.epochs=3"], argv=["pytest"])
    assert final(copy)[1] == 60
    assert json.loads((copy / "summary.json").read_text())["status"] == "completed"
    # it continues as the single run of its config would: 3 epochs of that run, to float tolerance
    single = train.train(config.replace(cfg, train={"epochs": 3}), tmp_path / "single", "single", argv=["pytest"])
    assert_close(final(copy)[0], final(single)[0])
    np.testing.assert_allclose([r["loss"] for r in metrics.read(copy)], [r["loss"] for r in metrics.read(single)],
                               rtol=1e-5)


def test_a_diverging_replica_fails_alone(tiny_config, tmp_path):
    base = config.replace(tiny_config, train={"epochs": 2}, optim={"name": "sgd", "lr": 0.05})
    items = sweep.expand(config.to_dict(base), None, ["optim.lr=0.05,1e10"], "div")
    with pytest.raises(RunError, match=r"1 of 2 replicas failed .*div-lr1e10"):
        train.train_replicas([c for _, c in items], tmp_path, [n for n, _ in items], argv=["pytest"])
    good, bad = sorted(tmp_path.iterdir())  # "div-lr0.05..." sorts before "div-lr1e10..."
    assert json.loads((good / "summary.json").read_text())["status"] == "completed"
    summary = json.loads((bad / "summary.json").read_text())
    assert summary["status"] == "failed" and "non-finite" in summary["error"]
    assert len([r for r in metrics.read(good) if r["split"] == "train"]) == 2
    assert len([r for r in metrics.read(bad) if r["split"] == "train"]) == 1
