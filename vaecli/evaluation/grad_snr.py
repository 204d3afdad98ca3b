"""`vae grad-snr`: the signal-to-noise ratio of gradient estimators at a trained run's checkpoint.

For each K and estimator, `draws` independent gradients of the K-sample IWAE bound (the
registered loss, vaecli.models.objectives, objective.name=iwae, objective.gradient=the
estimator) on one fixed batch; per parameter, SNR = |mean| / standard deviation over the
draws (Rainforth et al. 2018, eq. 11), summarised over the parameters of each side: the
inference side (vaecli.models.gradients.ENCODER_SIDE: encoder, q2, flow) and the generative
side (the rest). Rainforth et al.: the reparameterized encoder SNR falls like 1/√K; DReG's
does not (Tucker et al. 2019). Draw d uses the key fold_in(seed, d) for every K and
estimator, so the estimators are compared on the same noise.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from vaecli import data, registry, streams
from vaecli.errors import UsageError
from vaecli.evaluation.elbo import parse_samples
from vaecli.rundir import evaluated

BOUND = "iwae"  # the bound whose gradient is measured, as in Rainforth et al.
SIDES = ("encoder", "decoder")  # the inference side and the generative side of the parameters


def parse_estimators(text: str | list, flow: str | None = None) -> list[str]:
    """'reparam,dreg' -> ['reparam', 'dreg'] (in the order given); UsageError on anything else."""
    items = text if isinstance(text, (list, tuple)) else str(text).split(",")
    names = [str(e).strip() for e in items]
    known = registry.OBJECTIVES[BOUND].gradients
    for name in names:
        if name not in known:
            raise UsageError(f"--estimators {text}: '{name}' is not an estimator of the IWAE bound "
                             f"(choose from {', '.join(known)})")
        if name != "reparam" and flow is not None:
            raise UsageError(f"--estimators {name}: this run's posterior is a flow (model.flow.kind={flow}); "
                             f"{name} would {registry.NO_FLOW_ESTIMATOR}; use --estimators reparam")
    if not names or len(set(names)) != len(names):
        raise UsageError(f"--estimators {text}: list each estimator once, e.g. reparam,dreg")
    return names


def _check(draws: int, batch_size: int, split: str) -> None:
    if draws < 2:
        raise UsageError(f"--draws {draws}: a standard deviation needs at least 2 draws (e.g. 100)")
    if batch_size < 1:
        raise UsageError(f"--batch-size {batch_size}: must be at least 1")
    data.check_split(split, "--split")


def grad_snr(run_path: str | Path, samples="1,10,50", estimators="reparam,dreg", draws: int = 100,
             batch_size: int = 16, split: str = "test", step=None, seed: int = 0, raw_params: bool = False,
             out: str | Path | None = None, write: bool = True) -> dict:
    """Measure the SNR of each estimator at each K; write `grad-snr-step<S>.json` into `out`
    (default RUN/eval) and return the report (as written; "not_saved" says why it was not)."""
    ks = parse_samples(samples)
    _check(draws, batch_size, split)
    ckpt = evaluated.open_checkpoint(run_path, step, raw_params, out)
    run = ckpt.run
    if not registry.objective(run.config).draws_samples:
        raise UsageError(f"{run.path}: objective.name={run.config.objective.name} draws no z, so it has no "
                         "gradient estimator to measure")
    names = parse_estimators(estimators, run.config.model.flow.kind)
    if registry.is_hvae(run.config.model) and names != ["reparam"]:
        raise UsageError(f"--estimators {estimators}: the estimators other than reparam would "
                         f"{registry.NO_HVAE_ESTIMATOR}; use --estimators reparam")
    ckpt.restore()
    images = data.load_split(run.config.data, split)
    if batch_size > len(images):
        raise UsageError(f"--batch-size {batch_size}: the {split} split has only {len(images)} images")
    x = _batch(images, batch_size, seed, run.config.data.binarize == "dynamic")
    results = []
    for k in ks:
        for name in names:
            t0 = time.perf_counter()
            summary = _measure(ckpt.fn, ckpt.params, x, k, name, draws, seed)
            results.append({"samples": k, "estimator": name, **summary, "time_s": time.perf_counter() - t0})
    report = {"run": str(run.path), "split": split, "checkpoint_step": ckpt.step, "params": ckpt.params_kind,
              "bound": BOUND, "batch_size": batch_size, "draws": draws, "seed": seed, "results": results,
              "snr": "per parameter |mean| / std over the draws; mean and median over the parameters whose "
                     "gradient varies"}
    if write:
        report.update(ckpt.write_json(ckpt.output("grad-snr"), report,
                                      "write it elsewhere with --out DIR (the results are on stdout)"))
    return report


def _batch(images, batch_size: int, seed: int, dynamic: bool):
    """`batch_size` images of the split picked with `seed`, as the trainer feeds them (a fixed
    Bernoulli draw of the intensities with dynamic binarization)."""
    import jax
    import jax.numpy as jnp

    from vaecli.compiled.epoch import to_inputs

    idx = np.sort(np.random.default_rng(seed).choice(len(images), batch_size, replace=False))
    flat = jnp.asarray(images.flat[idx])
    return to_inputs(flat, jax.random.fold_in(jax.random.key(seed), streams.GRAD_SNR_BATCH), images.scale, dynamic)


def _measure(fn, params, x, k: int, estimator: str, draws: int, seed: int) -> dict:
    import jax

    mean, std = jax.device_get(_program(fn, k, estimator, draws)(params, x, jax.random.key(seed)))
    out = {}
    for side, m, s in zip(SIDES, mean, std):
        m, s = np.asarray(m, np.float64), np.asarray(s, np.float64)
        live = s > 0
        snr = np.abs(m[live]) / s[live]
        out[side] = {"snr_mean": float(snr.mean()) if live.any() else math.nan,
                     "snr_median": float(np.median(snr)) if live.any() else math.nan,
                     "parameters": int(m.size), "live_parameters": int(live.sum()),
                     "mean_gradient_norm": float(np.linalg.norm(m))}
    return out


def _program(fn, k: int, estimator: str, draws: int):
    """Compiled f(params, x, key) -> per side (mean, std) over `draws` gradients: a scan with
    Welford's running moments, so one gradient at a time is alive whatever `draws` is."""
    import jax
    import jax.numpy as jnp

    from vaecli.config import ObjectiveConfig
    from vaecli.models import gradients, objectives

    oc = ObjectiveConfig(name=BOUND, samples=k, gradient=estimator)

    def sides(params, x, key):
        grad = jax.grad(lambda p: objectives.training_loss(fn.bind(p), x, key, oc)[0])(params)
        return tuple(jnp.concatenate([jnp.ravel(a) for a in jax.tree.leaves(part)] or [jnp.zeros(0)])
                     for part in gradients.split_params(grad))

    def run(params, x, key):
        zeros = tuple(jnp.zeros_like(g) for g in jax.eval_shape(sides, params, x, key))

        def body(carry, d):
            n, mean, m2 = carry
            g = sides(params, x, jax.random.fold_in(key, d))
            n = n + 1.0
            delta = tuple(gi - mi for gi, mi in zip(g, mean))
            mean = tuple(mi + di / n for mi, di in zip(mean, delta))
            m2 = tuple(si + di * (gi - mi) for si, di, gi, mi in zip(m2, delta, g, mean))
            return (n, mean, m2), None

        (n, mean, m2), _ = jax.lax.scan(body, (jnp.zeros(()), zeros, zeros), jnp.arange(draws))
        return mean, tuple(jnp.sqrt(s / (n - 1.0)) for s in m2)

    return jax.jit(run)


def format_table(report: dict) -> str:
    """One row per K, one column pair (encoder, decoder SNR: mean over parameters) per estimator."""
    names = list(dict.fromkeys(r["estimator"] for r in report["results"]))
    lines = [f"gradient SNR of the K-sample IWAE bound, {report['split']} batch of {report['batch_size']}, "
             f"{report['draws']} draws, step {report['checkpoint_step']}, {report['run']}",
             f"  {'K':>5}" + "".join(f"{name + ' enc':>14}{name + ' dec':>14}" for name in names)]
    by_k: dict[int, dict] = {}
    for r in report["results"]:
        by_k.setdefault(r["samples"], {})[r["estimator"]] = r
    for k, row in by_k.items():
        cells = [f"{row[n][side]['snr_mean']:>14.3f}" for n in names for side in SIDES]
        lines.append(f"  {k:>5}" + "".join(cells))
    lines.append("  SNR: per parameter |mean| / std over the draws, the mean over parameters (medians in the JSON)")
    if report.get("written_to"):
        lines.append(f"written to {report['written_to']}")
    return "\n".join(lines)
