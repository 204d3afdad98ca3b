"""Per-step cost of the IWAE gradient estimators (reparam, STL, DReG) of vaecli.models.bounds.

A 784-200-50 MLP VAE (vaecli.models, Bernoulli likelihood) on random binary images, K
samples per example: each estimator's training step (value_and_grad of the batch-mean
surrogate + optax.adam) runs `steps` times in one compiled lax.scan; the estimators are
timed in alternating rounds, so drift in a shared machine's load falls on all of them alike.

    python benchmarks/gradient_estimators.py [--k 50] [--batch 20] [--steps 200] [--rounds 5]
"""
from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from vaecli.models import bounds as vb
from vaecli.models import vae as models
from vaecli.config import ModelConfig


def make_run(fn, images, k: int, batch: int, steps: int, estimator: str):
    tx = optax.adam(1e-3)
    bound = vb.make_bound("iwae")

    def loss_fn(params, x, eps):
        surrogate, log_w = vb.objective(fn.bind(params), x, eps, bound, estimator)
        return -jnp.mean(surrogate), jnp.mean(bound(log_w))

    def step(carry, key):
        params, opt_state = carry
        k_x, k_eps = jax.random.split(key)
        x = images[jax.random.randint(k_x, (batch,), 0, images.shape[0])]
        eps = jax.random.normal(k_eps, (k, batch, 50))
        (_, logged), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, x, eps)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), logged

    @jax.jit
    def run(params, key):
        (params, _), logged = jax.lax.scan(step, (params, tx.init(params)), jax.random.split(key, steps))
        return params, logged[-1]

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, default=50)
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    fn = models.functional(ModelConfig(latent_dim=50, hidden=(200,)), (28, 28, 1), seed=0)
    images = jnp.asarray((np.random.default_rng(0).random((1000, 784)) < 0.3).astype(np.float32))
    runs = {e: make_run(fn, images, args.k, args.batch, args.steps, e) for e in vb.ESTIMATORS}
    for e, run in runs.items():  # compile and warm up outside the timed rounds
        jax.block_until_ready(run(fn.params, jax.random.key(0)))
    times: dict[str, list[float]] = {e: [] for e in runs}
    for r in range(args.rounds):
        for e, run in runs.items():
            start = time.perf_counter()
            jax.block_until_ready(run(fn.params, jax.random.key(r + 1)))
            times[e].append((time.perf_counter() - start) / args.steps)
    base = statistics.median(times["reparam"])
    print(f"{jax.default_backend()}, IWAE K={args.k}, batch {args.batch}, 784-200-50 MLP, "
          f"{args.steps} steps x {args.rounds} rounds (median; min-max)")
    print(f"{'estimator':<10}{'ms/step':>10}{'range':>16}{'vs reparam':>12}")
    for e, ts in times.items():
        med = statistics.median(ts)
        print(f"{e:<10}{1e3 * med:>10.2f}{f'{1e3 * min(ts):.2f}-{1e3 * max(ts):.2f}':>16}{med / base:>11.2f}x")


if __name__ == "__main__":
    main()
