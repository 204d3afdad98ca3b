"""Time of each disentanglement metric at disentanglement_lib's default sample sizes.

    python benchmarks/disentanglement_time.py [--latents 10] [--repeats 2] [--images]
    python benchmarks/disentanglement_time.py --run RUN [--sizes dlib]

Without --run, the code is a fixed random linear map of toy_sprites' factors (sizes 3, 3, 6,
8, 8) to `--latents` dimensions plus Gaussian noise, so the time is the metric's own; with
`--images` represent() draws the sprites and projects their pixels instead (the cost of
drawing and reading almost a million images for FactorVAE and BetaVAE). Each metric runs
`--repeats` times with the same seed: the first includes compiling its programs, the others
do not. With --run, `vae eval-disentanglement`'s own path on a trained run (its compiled
encoder over drawn or looked-up images), once, nothing written.
Prints one line per metric and a JSON line at the end; nothing is asserted.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from vaecli.data import toy_sprites
from vaecli.evaluation.disentanglement import METRICS


def make_represent(latents: int, images: bool):
    rng = np.random.default_rng(0)
    if images:
        proj = rng.normal(size=(64 * 64, latents)).astype(np.float32) / 64.0
        return lambda f, r: toy_sprites.draw(f).reshape(len(f), -1).astype(np.float32) @ proj
    lin = rng.normal(size=(len(toy_sprites.FACTOR_SIZES), latents))
    return lambda f, r: f @ lin + 0.1 * r.normal(size=(len(f), latents))


def time_run(run: str, sizes: str) -> None:
    from vaecli.evaluation.disentanglement import run as run_lib

    t = time.perf_counter()
    report = run_lib.evaluate(run, "all", sizes=sizes, write=False)
    for name, r in report["metrics"].items():
        print(f"{name:12s} {r['seconds']:8.1f}s  {r['images_encoded']:>9d} images   score {r['score']:.3f}", flush=True)
    print(json.dumps({"run": run, "sizes": sizes, "total_s": time.perf_counter() - t,
                      "compile_s": report["protocol"]["compile_s"], "model": report["protocol"]["model"],
                      "seconds": {n: r["seconds"] for n, r in report["metrics"].items()},
                      "images": {n: r["images_encoded"] for n, r in report["metrics"].items()}}))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--latents", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--images", action="store_true")
    ap.add_argument("--run", help="a run folder trained on a dataset with factors")
    ap.add_argument("--sizes", default="dlib")
    args = ap.parse_args()
    if args.run:
        return time_run(args.run, args.sizes)
    represent = make_represent(args.latents, args.images)
    t = time.perf_counter()
    toy_sprites.dataset()
    rows = {"toy_sprites.dataset": [time.perf_counter() - t]}
    for name, metric in METRICS.items():
        rows[name] = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            result = metric.run(represent, toy_sprites.FACTOR_SIZES, seed=0)
            rows[name].append(time.perf_counter() - t)
        print(f"{name:20s} " + "  ".join(f"{s:6.2f}s" for s in rows[name]) + f"   score {result['score']:.3f}", flush=True)
    print(json.dumps({"latents": args.latents, "images": args.images, "seconds": rows}))


if __name__ == "__main__":
    main()
