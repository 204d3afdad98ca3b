"""`vae show`: the dry run. Parameter counts and XLA's FLOPs per step checked against counts
made by hand for the MLP; nothing is trained or written; bad targets fail in one line."""
from __future__ import annotations

import json
import os

from helpers import CONFIG, assert_error, sets, tiny_overrides, vae_inproc

from vaecli.training import dry_run as show

# The tiny MLP: 8x8x1 images (D = 64), hidden [32], latent 4, batch 32.
D, H, Z, B = 64, 32, 4, 32


def tiny_params() -> dict:
    dense = lambda a, b: a * b + b
    return {"encoder": dense(D, H) + 2 * dense(H, Z),  # trunk, then mean and log-variance heads
            "decoder": dense(Z, H) + dense(H, D)}


def hand_flops_per_step() -> tuple[float, float]:
    """(3 x forward matmul FLOPs, the exact matmul FLOPs of forward + backward) per step.

    Forward: 2·a·b FLOPs per example for each dense a -> b. The usual estimate of a training
    step is 3x that (forward, and a backward pass that costs two matmuls per layer: gradient
    of the weights and of the input). The exact matmul count is lower by one matmul: no
    gradient flows into the images, so the first layer's input gradient is never computed.
    XLA also counts the elementwise work (activations, the Bernoulli log-likelihood, the
    KL, Adam's update of every parameter), which adds a little on top of the matmuls."""
    forward = 2 * B * (D * H + 2 * H * Z + Z * H + H * D)
    return 3 * forward, 3 * forward - 2 * B * D * H


def test_show_tiny_config_against_hand_counts(tiny_cache, tmp_path):
    before = sorted(p.name for p in tiny_cache.rglob("*"))
    cwd = os.getcwd()
    os.chdir(tmp_path)  # a run folder, had one been written, would land under ./runs
    try:
        out = vae_inproc("show", CONFIG, *sets(tiny_overrides(tiny_cache)), "--json")
    finally:
        os.chdir(cwd)
    assert out.code == 0, out.stderr
    res = json.loads(out.stdout)
    expected = tiny_params()
    assert res["params_by_module"] == expected and res["params"] == sum(expected.values())
    assert res["params_by_layer"]["encoder.trunk.dense0"] == D * H + H

    estimate, matmuls = hand_flops_per_step()
    # At least the exact matmul count; at most the 3x estimate plus the elementwise work,
    # which in a model this small is a fifth of the total (Adam alone touches each of the
    # 4,616 parameters a few dozen times). Dividing the epoch's cost by its 20 steps would
    # fall 20x below. test_show_run_folder_matches_its_config pins the per-example part.
    assert matmuls <= res["flops_per_step"] <= 1.5 * estimate, (res["flops_per_step"], matmuls, estimate)
    assert res["steps_per_epoch"] == 640 // B
    assert res["flops_per_epoch"] == res["flops_per_step"] * res["steps_per_epoch"]
    assert res["bytes_per_step"] > 4 * res["params"]  # at least every parameter read once
    # The epoch holds the training split (uint8) and the state: parameters and Adam's two moments.
    assert res["memory_bytes"] >= 640 * D + 3 * 4 * res["params"]
    assert res["data"]["image_shape"] == [8, 8, 1] and "data cache" in res["data"]["source"]
    assert res["config"]["model"]["hidden"] == [H]
    assert res["devices"]["count"] >= 1

    text = show.format_report(res)
    assert f"parameters: {res['params']:,}" in text and "encoder.trunk.dense0" in text and "MFLOP" in text
    assert sorted(p.name for p in tiny_cache.rglob("*")) == before  # nothing written
    assert list(tmp_path.iterdir()) == []


def test_show_run_folder_matches_its_config(tiny_run, tiny_cache):
    files = sorted(str(p) for p in tiny_run.rglob("*"))
    out = vae_inproc("show", tiny_run, "--json")
    assert out.code == 0, out.stderr
    res = json.loads(out.stdout)
    assert res["params"] == sum(tiny_params().values())
    assert "meta.json" in res["data"]["source"]
    # --set changes what is shown (a what-if), not the run. Doubling the batch adds the
    # per-example work of 32 more examples and nothing else (Adam's update is per parameter,
    # not per example): that difference lies between the exact matmul count and the 3x
    # estimate, the rest being the per-example elementwise work.
    wider = json.loads(vae_inproc("show", tiny_run, "--set", "train.batch_size=64", "--json").stdout)
    estimate, matmuls = hand_flops_per_step()
    assert matmuls <= wider["flops_per_step"] - res["flops_per_step"] <= estimate
    assert sorted(str(p) for p in tiny_run.rglob("*")) == files


def test_show_bad_targets(tmp_path, tiny_cache):
    assert_error(vae_inproc("show", tmp_path), 1, "not a run folder")
    assert_error(vae_inproc("show", tmp_path / "nope.yaml"), 2, "nope.yaml", "no such config file or run folder")
    assert_error(vae_inproc("show", CONFIG, "--set", "optim.lrr=1"), 2, "optim.lrr")
    assert_error(vae_inproc("show", CONFIG, "--set", "data.dataset=no_such_set", "--set",
                            f"data.cache_dir={tmp_path / 'c'}"), 1, "no_such_set", "vae data prepare")
    assert_error(vae_inproc("show", CONFIG, *sets(tiny_overrides(tiny_cache)), "--set", "train.batch_size=100000"),
                 1, "train.batch_size")
    assert list(tmp_path.iterdir()) == []
