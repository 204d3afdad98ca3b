"""Cost per training step of the VQ-VAE next to the Gaussian VAE of the same network.

configs/vqvae_bmnist.yaml (784-500 MLP, 16 codes of 8 numbers, K=128, moving-average codebook,
dead-code restarts) against configs/bmnist_mlp.yaml (784-500 MLP, 20 Gaussian latents), both
at batch 128, trained through vaecli's own compiled epoch (state.init_state +
epoch.make_epoch_fn) on random binary images; one measurement is one epoch call of `--steps`
steps. Compilation and a warm-up call are excluded; the two are timed in alternating rounds,
and the ratio printed is the median of the per-round ratios, which cancels most of the load
other processes put on a shared machine.

    python benchmarks/vq_step.py [--steps 100] [--rounds 5]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import jax
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vaecli import config  # noqa: E402
from vaecli.compiled import epoch, state as state_lib  # noqa: E402

CONFIGS = {"gaussian": ROOT / "configs" / "bmnist_mlp.yaml", "vq": ROOT / "configs" / "vqvae_bmnist.yaml"}


def compiled(path: Path, steps: int):
    cfg = config.load(path)
    n = steps * cfg.train.batch_size
    images = jax.device_put(np.random.default_rng(0).integers(0, 2, (n, 784), dtype=np.uint8))
    fn, tx, state = state_lib.init_state(cfg, (28, 28, 1))
    run = epoch.make_epoch_fn(fn, tx, cfg, n, 1)
    state, _ = run(state, images)  # compile and warm up
    jax.block_until_ready(state)
    box = {"state": state}

    def once() -> float:
        t0 = time.perf_counter()
        box["state"], metrics = run(box["state"], images)
        jax.block_until_ready(metrics)
        return (time.perf_counter() - t0) / steps * 1e3

    return once


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    runs = {name: compiled(path, args.steps) for name, path in CONFIGS.items()}
    times = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, once in runs.items():
            times[name].append(once())
    ratios = [v / g for v, g in zip(times["vq"], times["gaussian"])]
    for name, ms in times.items():
        print(f"{name:>9}: {statistics.median(ms):.2f} ms/step (range {min(ms):.2f}-{max(ms):.2f})")
    print(f"vq / gaussian: {statistics.median(ratios):.2f} (median of {args.rounds} paired rounds; "
          f"{jax.devices()[0].platform}, {args.steps} steps a call)")


if __name__ == "__main__":
    main()
