"""`vae eval-samples`: how a run's prior samples compare with the images of a split, through
a feature network: FID, KID and k-NN precision/recall (vaecli.evaluation.sample_metrics).

N samples are drawn from the prior in batches of SAMPLE_ROWS (batch b from
fold_in(key(seed), b); a standard-normal prior scaled by the temperature, any other prior,
VampPrior or two layers, by the model's own sampler) and decoded to their mean images
E[x|z], the pictures of `vae sample --mode prior`. N images of the split are drawn without
replacement by numpy's Generator(seed) (the whole split when N is its size), as the model
sees them (images / scale in [0, 1]). Only features are kept, never all the images, so
memory is bounded by N × the feature width.

The features are those of a feature file (`vae train-features`; its SHA-256 checked against
its record) or of any function passed from Python (Inception, DINO...), named by its
`__name__` and a fingerprint of its outputs on fixed probe images: the JSON says which, and
that a classifier-feature FID is not an Inception FID. One JSON per protocol in RUN/eval/,
`samples-<split>-step<S>-n<N>-seed<s>[-t<T>]-f<features>.json`.
"""
from __future__ import annotations

import hashlib
import math
import re
import time
from pathlib import Path
from typing import Callable

import numpy as np

import vaecli
from vaecli import registry
from vaecli.errors import RunError, UsageError
from vaecli.evaluation import feature_file, sample_metrics

SAMPLE_ROWS = 500  # prior draws decoded, and images featurised, per call
PROBE_ROWS, PROBE_SEED = 8, 0  # a feature function's fingerprint
PROBE = (f"SHA-256 of the float32 features (and their shape) of {PROBE_ROWS} images uniform in [0, 1) from "
         f"numpy's default_rng({PROBE_SEED}), of the run's image shape")
DEFAULT_N = 10000
SAMPLES = "mean images E[x|z] of prior draws z (the pictures of `vae sample --mode prior`)"


def check_arguments(n, split: str, temperature: float, k: int, kid_subsets: int, kid_subset_size: int) -> None:
    """The arguments that need neither the run nor JAX (UsageError, exit 2)."""
    from vaecli.data import check_split

    check_split(split, "--split")
    if n is not None and (isinstance(n, bool) or n < 2):
        raise UsageError(f"--n {n}: must be at least 2")
    if not temperature > 0 or not math.isfinite(temperature):
        raise UsageError(f"--temperature {temperature}: must be a finite number > 0")
    if k < 1:
        raise UsageError(f"--k {k}: must be at least 1")
    if kid_subsets < 1 or kid_subset_size < 2:
        raise UsageError("KID needs at least 1 subset of at least 2 rows")


def check_run(ckpt, temperature: float) -> None:
    """A run whose prior can be sampled at `temperature` (RunError / UsageError)."""
    cfg = ckpt.config
    objective = registry.objective(cfg)
    if not objective.defines_density:
        raise RunError(f"{ckpt.path}: objective.name={cfg.objective.name} has no prior to sample; eval-samples "
                       "compares prior samples, so it needs a VAE (any other objective)")
    if temperature != 1.0 and not registry.standard_normal_prior(cfg.model):
        raise UsageError("--temperature scales a standard-normal prior; this run's prior is not one "
                         "(VampPrior or two stochastic layers): leave it at 1")


def fingerprint(fn: Callable, image_shape) -> str:
    """SHA-256 of `fn`'s float32 outputs (and their shape) on PROBE_ROWS images of
    `image_shape` drawn uniform in [0, 1) by numpy's Generator(PROBE_SEED): two functions
    that share a name but not their features are told apart. It depends on the function's
    arithmetic, so the same function on another device or library version may give another."""
    probe = np.random.default_rng(PROBE_SEED).random((PROBE_ROWS, *image_shape), dtype=np.float32)
    out = np.ascontiguousarray(_call(fn, probe, "the fingerprint's probe images"), np.float32)
    return hashlib.sha256(repr(out.shape).encode() + out.tobytes()).hexdigest()


def _features_from(features, image_shape) -> tuple[Callable, dict, str]:
    """(function images -> features, what the JSON says of it, the tag in the file name)."""
    if callable(features):
        name = getattr(features, "__name__", "custom")
        fp = fingerprint(features, image_shape)
        tag = f"{re.sub(r'[^a-z0-9_]', '_', name.lower()) or 'custom'}_{fp[:8]}"
        return features, {"kind": "user function", "name": name, "sha256": None,
                          "fingerprint": {"sha256": fp, "probe": PROBE},
                          "note": "features passed from Python; the number is comparable only with others "
                                  "from the same function (the same fingerprint)"}, tag
    from vaecli.evaluation import feature_net

    record, params = feature_file.load(features, image_shape)
    weights, _ = feature_file.paths(features)
    info = {"kind": "classifier", "file": str(weights), "sha256": record["sha256"], "note": feature_file.KIND,
            **{k: record[k] for k in ("dataset", "label", "test_accuracy", "architecture", "feature_dim")}}
    return (lambda x: feature_net.apply(params, x)), info, record["sha256"][:12]


def _call(fn: Callable, images: np.ndarray, what: str) -> np.ndarray:
    out = np.asarray(fn(images), np.float32)
    if out.ndim != 2 or len(out) != len(images):
        raise UsageError(f"the feature function must map {len(images)} images to an array ({len(images)}, F); "
                         f"it gave {out.shape} for {what}")
    return out


def real_features(split, idx: np.ndarray, fn: Callable) -> np.ndarray:
    return np.concatenate([_call(fn, split.images[idx[i:i + SAMPLE_ROWS]].astype(np.float32) / split.scale,
                                 f"{split.name} images")
                           for i in range(0, len(idx), SAMPLE_ROWS)])


def sample_features(model, cfg, n: int, seed: int, temperature: float, fn: Callable) -> np.ndarray:
    """Features of n prior samples, drawn SAMPLE_ROWS at a time (the last batch drawn whole
    and cut, so sample i is the same whatever N)."""
    import jax

    key = jax.random.key(seed)
    normal, dim = registry.standard_normal_prior(cfg.model), registry.code_dim(cfg.model)
    out = []
    for b in range(-(-n // SAMPLE_ROWS)):
        kb = jax.random.fold_in(key, b)
        if normal:
            images = model.decode(temperature * jax.random.normal(kb, (SAMPLE_ROWS, dim)))
        else:
            images = model.generate(kb, SAMPLE_ROWS)
        out.append(_call(fn, images[: min(SAMPLE_ROWS, n - b * SAMPLE_ROWS)], "prior samples"))
    return np.concatenate(out)


def evaluate(run_path: str | Path, features=None, n: int | None = None, split: str = "test", seed: int = 0,
             temperature: float = 1.0, step=None, k: int = sample_metrics.PR_K,
             kid_subsets: int = sample_metrics.KID_SUBSETS, kid_subset_size: int = sample_metrics.KID_SUBSET_SIZE,
             raw_params: bool = False, out: str | Path | None = None, write: bool = True) -> dict:
    """FID, KID and precision/recall of `n` prior samples of the run against `n` images of
    `split` (default N: the split's size, at most DEFAULT_N), in the features of `features`:
    a feature file (`vae train-features`; None: the one in vaecli's cache for the run's
    dataset) or a function images (B, H, W, C) in [0, 1] -> features (B, F). Writes the JSON
    into `out` (default RUN/eval) and returns it with `written_to` (or `not_saved`)."""
    check_arguments(n, split, temperature, k, kid_subsets, kid_subset_size)
    from vaecli import data
    from vaecli.compiled.encode_decode import CompiledModel
    from vaecli.rundir import evaluated

    ckpt = evaluated.open_checkpoint(run_path, step, raw_params, out)
    check_run(ckpt, temperature)
    if features is None:
        features = feature_file.find_default(ckpt.config.data.dataset)
    fn, info, tag = _features_from(features, ckpt.image_shape)
    images = data.load_split(ckpt.config.data, split)
    n = min(len(images), DEFAULT_N) if n is None else n
    if n > len(images):
        raise UsageError(f"--n {n}: the {split} split of '{ckpt.config.data.dataset}' has only {len(images)} images; "
                         f"choose --n {len(images)} or fewer, or another --split")
    idx = np.arange(n) if n == len(images) else np.sort(np.random.default_rng(seed).choice(len(images), n, False))
    t0 = time.perf_counter()
    real = real_features(images, idx, fn)
    model = CompiledModel(ckpt.fn, ckpt.params, ckpt.image_shape)
    fake = sample_features(model, ckpt.config, n, seed, temperature, fn)
    features_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = sample_metrics.all_metrics(real, fake, seed, k, kid_subsets, kid_subset_size)
    doc = {**result, "run": str(ckpt.path), "checkpoint_step": ckpt.step, "params": ckpt.params_kind,
           "features": info, "protocol": _protocol(ckpt, split, n, seed, temperature, real.shape[1], k, result),
           "timing": {"features_s": features_s, "metrics_s": time.perf_counter() - t0}}
    if write:
        target = ckpt.output("samples", split=split, n=n, seed=seed, temperature=temperature, features=tag)
        doc.update(ckpt.write_json(target, doc, "write the file elsewhere with --out DIR (the results are on stdout)"))
    return doc


def _protocol(ckpt, split: str, n: int, seed: int, temperature: float, width: int, k: int, result: dict) -> dict:
    import jax

    m = ckpt.config.model
    return {"dataset": ckpt.config.data.dataset, "split": split, "n": n, "seed": seed, "temperature": temperature,
            "samples": SAMPLES, "real": f"{n} images of the {split} split, drawn without replacement with the seed",
            "feature_width": width, "fid": "float64 on the host; tr sqrt from eigh of sqrt(S1) S2 sqrt(S1)",
            "kid": f"unbiased MMD², kernel (x·y/{width} + 1)³, {result['kid']['subsets']} subsets of "
                   f"{result['kid']['subset_size']}", "precision_recall": f"k-NN balls, k={k} (Kynkäänniemi et al. 2019)",
            "model": {"kind": m.kind, "latent_dim": m.latent_dim, "prior": m.prior, "latent_dim2": m.latent_dim2,
                      "hierarchy": m.hierarchy, "flow": m.flow.kind, "objective": ckpt.config.objective.name},
            "device": str(jax.devices()[0]), "vaecli_version": vaecli.__version__}


def format_table(doc: dict) -> str:
    p, f, kd = doc["protocol"], doc["features"], doc["kid"]
    feat = (f"{f['kind']} {f.get('label', '')} {f['sha256'][:12]}" if f["sha256"] else
            f"{f['kind']} {f['name']} (fingerprint {f['fingerprint']['sha256'][:12]})")
    lines = [f"{p['dataset']} {p['split']}: {p['n']} prior samples (seed {p['seed']}, temperature {p['temperature']:g}) "
             f"vs {p['n']} images, step {doc['checkpoint_step']}, features {feat}, {doc['run']}",
             f"  FID        {doc['fid']:.4f}",
             f"  KID        {kd['mean']:.5f} ± {kd['stderr']:.5f} (standard error over {kd['subsets']} subsets "
             f"of {kd['subset_size']})",
             f"  precision  {doc['precision']:.4f}   recall {doc['recall']:.4f}   (k={doc['k']})",
             f"  time, s    {doc['timing']['features_s']:.1f} features, {doc['timing']['metrics_s']:.1f} metrics"]
    if "written_to" in doc:
        lines.append(f"written to {doc['written_to']}")
    return "\n".join(lines)
