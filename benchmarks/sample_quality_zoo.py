"""Sample quality beside log p(x): the zoo on toy_sprites, same network, size and epochs.

    python benchmarks/sample_quality_zoo.py [--epochs 20] [--hidden 256] [--latent 10] [--k 5000]
        [--feature-epochs 10] [--n N] [--root runs/sample_quality_zoo] [--timing-n 10000]

Trains toy_sprites' shape classifier (`vae train-features`), then each model of the zoo
(ELBO, β=4, IWAE K=5, VampPrior, an IAF flow posterior) with the same MLP, latent size,
epochs and seed, and evaluates each: test NLL by importance sampling with K samples
(`vaecli.evaluate`), and FID, KID and precision/recall of N prior samples against the test
split in the classifier's features (`vaecli.sample_quality`). Prints a markdown table
(docs/sample-quality.md holds one, with its command), and with --timing-n the time of
`vae eval-samples` for that N on binarized MNIST (see `timing`).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ZOO = {
    "ELBO": [],
    "β-VAE, β=4": ["objective.beta=4"],
    "IWAE, K=5": ["objective.name=iwae", "objective.samples=5"],
    "VampPrior": ["model.prior=vamp", "model.pseudo_inputs=100", "objective.kl=mc"],
    "IAF flow (2 steps)": ["model.flow.kind=iaf", "model.flow.steps=2", "model.flow.hidden=[64]", "objective.kl=mc"],
}


def common(args) -> list[str]:
    return ["data.dataset=toy_sprites", f"data.cache_dir={args.root / 'cache'}", f"model.hidden=[{args.hidden}]",
            f"model.latent_dim={args.latent}", f"train.epochs={args.epochs}", "train.batch_size=64",
            f"eval.every_epochs={args.epochs}", f"checkpoint.every_epochs={args.epochs}", "log.progress=none",
            "log.tensorboard=false"]


def zoo(args) -> list[dict]:
    import vaecli

    t0 = time.perf_counter()
    kept = args.root / "toy_sprites-shape.json"  # a later call with --models reuses the classifier
    if kept.exists() and json.loads(kept.read_text())["epochs"] == args.feature_epochs:
        features = {**json.loads(kept.read_text()), "written_to": str(kept.with_suffix(".npz"))}
    else:
        features = vaecli.train_features("toy_sprites", "shape", overrides=[f"data.cache_dir={args.root / 'cache'}"],
                                         epochs=args.feature_epochs, out=args.root / "toy_sprites-shape.npz")
    print(f"shape classifier: test accuracy {features['test_accuracy']:.4f}, {time.perf_counter() - t0:.0f} s",
          file=sys.stderr)
    rows = []
    for name, extra in ZOO.items():
        if args.models and name.split(",")[0].split(" ")[0] not in args.models.split(","):
            continue
        t0 = time.perf_counter()
        run = vaecli.train(ROOT / "configs" / "bmnist_mlp.yaml", common(args) + extra, name="zoo",
                           runs_dir=args.root / "runs", progress=False)
        train_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        elbo = vaecli.evaluate(run, split="test", samples=[1, args.k], progress=False)["results"]
        nll_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        sq = vaecli.sample_quality(run, features=features["written_to"], n=args.n)
        sq_s = time.perf_counter() - t0
        rows.append({"model": name, "run": str(run), "elbo": elbo[0]["elbo"], "nll": elbo[-1]["nll"], "k": args.k,
                     "fid": sq["fid"], "kid": sq["kid"]["mean"], "kid_se": sq["kid"]["stderr"],
                     "precision": sq["precision"], "recall": sq["recall"], "n": sq["protocol"]["n"],
                     "train_s": train_s, "nll_s": nll_s, "samples_s": sq_s})
        print(json.dumps(rows[-1]), file=sys.stderr)
    return rows, features


def table(rows: list[dict], features: dict) -> str:
    k, n = rows[0]["k"], rows[0]["n"]
    lines = [f"| model | test ELBO | test NLL (K={k}) | FID | KID ×10³ (± s.e.) | precision | recall |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['model']} | {-r['elbo']:.2f} | {r['nll']:.2f} | {r['fid']:.3f} | "
                     f"{1e3 * r['kid']:.2f} ± {1e3 * r['kid_se']:.2f} | {r['precision']:.3f} | {r['recall']:.3f} |")
    lines.append(f"\nFeatures: toy_sprites shape classifier, test accuracy {features['test_accuracy']:.4f}, sha256 "
                 f"{features['sha256'][:12]}; N = {n} prior samples against the {n} test images; ELBO column: −ELBO.")
    return "\n".join(lines)


def sanity(args, features: dict) -> str:
    """The floor and the ceiling in the same features: the test split against as many training
    images, two disjoint halves of the training split, binary noise (10% of pixels on)."""
    from vaecli import config, data
    from vaecli.evaluation import feature_file, feature_net
    from vaecli.evaluation import sample_metrics as sm

    cfg = config.load(None, ["data.dataset=toy_sprites", f"data.cache_dir={args.root / 'cache'}"]).data
    _, params = feature_file.load(features["written_to"], (64, 64, 1))
    train, test = data.load_split(cfg, "train"), data.load_split(cfg, "test")
    n = len(test)
    # Not seed 0: toy_sprites' validation and test splits are the first two blocks of
    # permutation(0) of train (vaecli.data.factors.SPLIT_SEED), and the halves must be other images.
    perm = np.random.default_rng(12345).permutation(len(train))
    f = lambda x: feature_net.apply(params, x.astype(np.float32))  # noqa: E731
    ref, other = f(train.images[perm[:n]]), f(train.images[perm[n:2 * n]])
    pairs = {"test split vs train": f(test.images), "train half vs other half": other,
             "noise images vs train": f((np.random.default_rng(1).random((n, 64, 64, 1)) < 0.1))}
    lines = ["| pair (N = %d each) | FID | KID ×10³ | precision | recall |" % n, "| --- | ---: | ---: | ---: | ---: |"]
    for name, fake in pairs.items():
        m = sm.all_metrics(ref, fake)
        lines.append(f"| {name} | {m['fid']:.3f} | {1e3 * m['kid']['mean']:.2f} | {m['precision']:.3f} | "
                     f"{m['recall']:.3f} |")
    return "\n".join(lines)


def timing(args) -> dict:
    """`vae eval-samples --n N` on a binarized-MNIST run, timed as a command (a fresh process:
    start-up, restore, compilation, N samples and N images through the features, the metrics).
    binarized_mnist has no labels, so the classifier is trained on 10 pseudo-labels (the
    k-means clusters of the images): the features' quality does not change the time."""
    import vaecli
    from vaecli import config, data

    cfg = config.load(ROOT / "configs" / "bmnist_mlp.yaml", [f"data.cache_dir={args.bmnist_cache}"])
    named = args.root / "cache" / "bmnist_clusters"
    if not (named / "index.json").exists():
        splits = {s: data.load_split(cfg.data, s) for s in ("train", "test")}
        centres = splits["train"].flat[:10].astype(np.float32)
        for _ in range(5):  # a few Lloyd steps: labels, not a clustering anyone keeps
            lab = _nearest(splits["train"].flat, centres)
            centres = np.stack([splits["train"].flat[lab == c].mean(0) for c in range(10)]).astype(np.float32)
        data.write_cache(named, {s: {"images": v.images, "labels": _nearest(v.flat, centres)}
                                 for s, v in splits.items()})
    feats = vaecli.train_features("bmnist_clusters", "label", overrides=[f"data.cache_dir={args.root / 'cache'}"],
                                  epochs=1, out=args.root / "bmnist_clusters.npz")
    run = vaecli.train(ROOT / "configs" / "bmnist_mlp.yaml", [f"data.cache_dir={args.bmnist_cache}", "train.epochs=1",
                                                              "log.progress=none", "log.tensorboard=false"],
                       name="bmnist_timing", runs_dir=args.root / "runs", progress=False)
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "vaecli.cli", "eval-samples", str(run), "--features",
                          feats["written_to"], "--n", str(args.timing_n), "--json"], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    doc = json.loads(out.stdout)
    return {"n": args.timing_n, "wall_s": wall, **doc["timing"], "fid": doc["fid"]}


def _nearest(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32)
    d = (x * x).sum(1)[:, None] - 2 * x @ centres.T + (centres * centres).sum(1)[None, :]
    return d.argmin(1).astype(np.int64)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--latent", type=int, default=10)
    p.add_argument("--k", type=int, default=5000, help="importance samples of the test NLL")
    p.add_argument("--n", type=int, default=None, help="prior samples (default: the test split, 864)")
    p.add_argument("--feature-epochs", type=int, default=10)
    p.add_argument("--root", type=Path, default=ROOT / "runs" / "sample_quality_zoo")
    p.add_argument("--timing-n", type=int, default=0, help="also time eval-samples at this N on binarized MNIST")
    p.add_argument("--bmnist-cache", type=Path, default=None, help="data.cache_dir holding binarized_mnist")
    p.add_argument("--skip-zoo", action="store_true")
    p.add_argument("--sanity", action="store_true", help="also the split-against-split figures")
    p.add_argument("--models", default="", help="only these (first word of the name): ELBO,β-VAE,IWAE,VampPrior,IAF")
    args = p.parse_args()
    args.root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if not args.skip_zoo:
        rows, features = zoo(args)
        print(table(rows, features))
        print(f"\n{args.epochs} epochs, MLP [{args.hidden}], latent {args.latent}; total "
              f"{time.perf_counter() - t0:.0f} s")
    if args.sanity:
        kept = args.root / "toy_sprites-shape.json"
        print("\n" + sanity(args, {"written_to": str(kept.with_suffix(".npz"))}))
    if args.timing_n:
        print(f"\neval-samples timing: {json.dumps(timing(args))}")


if __name__ == "__main__":
    main()
