"""Cost per training step of each objective, gradient estimator and flow, next to IWAE K=50.

Each choice is a config (the base network and batch plus its `--set` overrides) trained
through vaecli's own compiled epoch (state.init_state + epoch.make_epoch_fn: the loss, the
estimator, adam, the finiteness checks, what `vae train` runs), on random binary images; a
measurement is one epoch call of `--steps` steps. Compilation and one warm-up call are
excluded; then the choices are timed in alternating rounds, so drift in a shared machine's
load falls on all of them alike. Printed per choice: the median wall time per step, its
range, its ratio to IWAE K=50 with the plain reparameterized gradient (the median of the
per-round paired ratios, which cancels most of the load other processes add), and the same
two for this process's CPU time (all threads), which other processes disturb less.

    python benchmarks/gradient_estimators.py [--steps 50] [--rounds 5] [--only NAME,...]
        [--set KEY=VALUE ...]   (the base: 784-200-50 MLP, batch 20, Bernoulli pixels)
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vaecli import config  # noqa: E402
from vaecli.compiled import epoch, state as state_lib  # noqa: E402

BASE = ["model.hidden=[200]", "model.latent_dim=50", "train.batch_size=20"]
IWAE50 = ["objective.name=iwae", "objective.samples=50"]
BASELINE = "iwae K=50"
CHOICES = {  # name -> overrides on the base
    BASELINE: IWAE50,
    "iwae K=50 stl": [*IWAE50, "objective.gradient=stl"],
    "iwae K=50 dreg": [*IWAE50, "objective.gradient=dreg"],
    "miwae M=5 K=10": ["objective.name=miwae", "objective.groups=5", "objective.samples=10"],
    "miwae M=5 K=10 dreg": ["objective.name=miwae", "objective.groups=5", "objective.samples=10",
                            "objective.gradient=dreg"],
    "piwae M=5 K=10": ["objective.name=piwae", "objective.groups=5", "objective.samples=10"],
    "piwae M=5 K=10 dreg": ["objective.name=piwae", "objective.groups=5", "objective.samples=10",
                            "objective.gradient=dreg"],
    "ciwae K=50 beta=0.5": ["objective.name=ciwae", "objective.samples=50", "objective.beta=0.5"],
    "vr K=50 alpha=0.5": ["objective.name=vr", "objective.samples=50", "objective.alpha=0.5"],
    "vr K=50 alpha=0.5 dreg": ["objective.name=vr", "objective.samples=50", "objective.alpha=0.5",
                               "objective.gradient=dreg"],
    "iwae K=50 planar x4": [*IWAE50, "model.flow.kind=planar", "model.flow.steps=4"],
    "iwae K=50 iaf x4": [*IWAE50, "model.flow.kind=iaf", "model.flow.steps=4", "model.flow.hidden=[64]"],
    "elbo K=1": [],
    "elbo K=1 stl": ["objective.kl=mc", "objective.gradient=stl"],
    "btcvae": ["objective.name=btcvae", "objective.beta=6.0"],
    "factorvae": ["objective.name=factorvae", "objective.beta=10.0"],
    "elbo capacity": ["objective.capacity=25", "objective.capacity_epochs=20", "objective.beta=1000"],
    "elbo K=1 iaf x4": ["objective.kl=mc", "model.flow.kind=iaf", "model.flow.steps=4", "model.flow.hidden=[64]"],
}


def build(overrides: list[str], steps: int):
    """(compiled epoch, its state, the images on the device) for one choice."""
    cfg = config.load(None, [*BASE, *overrides])
    n = steps * cfg.train.batch_size
    images = jax.device_put((np.random.default_rng(0).random((n, 784)) < 0.3).astype(np.uint8))
    fn, tx, state = state_lib.init_state(cfg, (28, 28, 1))
    run = epoch.make_epoch_fn(fn, tx, cfg, n, 1)
    state, _ = jax.block_until_ready(run(state, images))  # compiles, and warms up
    return run, state, images


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--only", default=None, help="comma-separated choice names (the baseline is always run)")
    ap.add_argument("--set", action="append", default=[], dest="overrides", help="a base override, as vae's")
    args = ap.parse_args()
    BASE.extend(args.overrides)
    names = [BASELINE] + [n for n in CHOICES if n != BASELINE and (args.only is None or n in args.only.split(","))]
    built = {name: list(build(CHOICES[name], args.steps)) for name in names}
    wall: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(args.rounds):
        for name in names:
            run, state, images = built[name]
            start, start_cpu = time.perf_counter(), time.process_time()
            state, _ = jax.block_until_ready(run(state, images))
            wall[name].append((time.perf_counter() - start) / args.steps)
            cpu[name].append((time.process_time() - start_cpu) / args.steps)
            built[name][1] = state
    print(f"{jax.default_backend()}, {jax.device_count()} device(s), base {' '.join(BASE)}, "
          f"{args.steps} steps x {args.rounds} rounds, alternating (median; min-max; paired ratio to {BASELINE})")
    print(f"{'choice':<26}{'wall ms/step':>13}{'range':>16}{'ratio':>8}{'CPU ms/step':>13}{'ratio':>8}")
    rows = []
    for name in names:
        ts, cs = wall[name], cpu[name]
        ratio = statistics.median(t / b for t, b in zip(ts, wall[BASELINE]))
        cpu_ratio = statistics.median(t / b for t, b in zip(cs, cpu[BASELINE]))
        med, cpu_med = statistics.median(ts), statistics.median(cs)
        print(f"{name:<26}{1e3 * med:>13.2f}{f'{1e3 * min(ts):.2f}-{1e3 * max(ts):.2f}':>16}{ratio:>7.2f}x"
              f"{1e3 * cpu_med:>13.2f}{cpu_ratio:>7.2f}x")
        rows.append({"choice": name, "overrides": CHOICES[name], "wall_ms_per_step": 1e3 * med, "wall_ratio": ratio,
                     "cpu_ms_per_step": 1e3 * cpu_med, "cpu_ratio": cpu_ratio})
    print(json.dumps({"base": BASE, "steps": args.steps, "rounds": args.rounds, "rows": rows}))


if __name__ == "__main__":
    main()
