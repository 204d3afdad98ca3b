"""`vae eval-elbo`: the ELBO, the importance-sampled log p(x), KL and active units of a trained run.

Several K in one call: one compiled program per K (`estimator.compile_estimator`), one JSON
per K in `RUN/eval/`, one table. The samples are drawn per (example, sample index), so the
K=50 estimate of a `--samples 1,50,5000` call is the one `--samples 50` gives alone.
"""
from __future__ import annotations

import math
import os
import time
from pathlib import Path

import numpy as np

import vaecli
from vaecli import data, files, progress, registry
from vaecli.compiled import estimator, summaries
from vaecli.errors import OutOfTime, UsageError, storage_error
from vaecli.evaluation import vq as vq_eval
from vaecli.evaluation.arguments import parse_samples
from vaecli.rundir import evaluated

ESTIMATOR = "importance sampling with q(z|x) as proposal (the K-sample IWAE bound)"


def _npz_target(path: str | Path | None) -> Path | None:
    if path is None:
        return None
    p = Path(path)
    p = p if p.suffix == ".npz" else p.with_name(p.name + ".npz")
    if not p.parent.is_dir():
        raise UsageError(f"--per-example {path}: folder {p.parent} does not exist; create it or choose another path")
    if not os.access(p.parent, os.W_OK):
        raise UsageError(f"--per-example {path}: folder {p.parent} is not writable")
    return p


def evaluate(run_path: str | Path, split: str = "test", samples=1000, step=None, seed: int = 0,
             batch_size: int = 100, kl_mc_samples: int = 100, per_example: str | Path | None = None,
             max_rows: int | None = None, write: bool = True, out: str | Path | None = None,
             raw_params: bool = False, progress: str | bool | None = "auto", deadline: float | None = None) -> dict:
    """Evaluate a run's checkpoint on a split for each K in `samples`.

    Writes `<split>-step<S>-k<K>.json` per K into `out` (default RUN/eval) (and the
    per-example arrays to `per_example`, an .npz) and returns {"run", "split",
    "checkpoint_step", "params", "results": [one document per K, as written], "per_example"}.
    A run trained with EMA is evaluated with its EMA parameters ("params": "ema") unless
    `raw_params` (then the files end in -raw). A file that cannot be written (a read-only
    run folder, a full disk) does not lose the results: the report then has "not_saved",
    the one line saying which file and why. `progress`: what stderr shows of a long
    compilation or K (vaecli.progress: "auto" a bar on a terminal, lines elsewhere; "none"
    or False nothing). `deadline` (a `vaecli.clock.now()` time): a K whose importance
    sampling, timed as it goes, would end past it stops and raises OutOfTime; the Ks before
    it are written, nothing of it is (a VQ-VAE's one pass is not bounded)."""
    ks = parse_samples(samples)
    if batch_size < 1:
        raise UsageError(f"--batch-size {batch_size}: must be at least 1")
    if kl_mc_samples < 0:
        raise UsageError(f"--kl-mc-samples {kl_mc_samples}: must be 0 (off) or more")
    data.check_split(split, "--split")
    npz_path = _npz_target(per_example)
    ckpt = evaluated.open_checkpoint(run_path, step, raw_params, out).restore()
    run, chosen = ckpt.run, ckpt.step
    images = data.load_model_split(run.config, split)
    if run.config.model.latent == "vq":  # discrete codes: a bound of their own, never importance-sampled
        return vq_eval.evaluate(ckpt, images, split, seed, write, npz_path, progress)
    if not registry.objective(run.config).draws_samples:  # one deterministic pass, whatever K was asked for
        ks, kl_mc_samples = [1], 0
    results, arrays, not_saved = [], {}, None
    for k in ks:
        doc, per = _estimate(run, ckpt.fn, ckpt.params, images, k, seed, batch_size, max_rows, kl_mc_samples,
                             chosen, ckpt.params_kind, progress, deadline)
        if write and not_saved is None:
            saved = ckpt.write_json(ckpt.output("elbo", split=split, k=k), doc,
                                    "write the files elsewhere with --out DIR (the results are on stdout)")
            not_saved = saved.get("not_saved")
            doc.update(saved if not_saved is None else {})
        results.append(doc)
        arrays.update({f"log_likelihood_k{k}": per["log_likelihood"], f"elbo_k{k}": -(per["recon"] + per["kl"]),
                       f"recon_k{k}": per["recon"]})
        arrays.update({name: per[name] for name in ("kl", "kl_mc") if name in per})
    if npz_path is not None:
        arrays.update({"index": np.arange(len(images)), "samples": np.asarray(ks), "seed": np.asarray(seed),
                       "checkpoint_step": np.asarray(chosen)})
        try:
            files.write_with(npz_path, lambda f: np.savez(f, **arrays))  # readers never see half a file
        except OSError as e:
            not_saved = not_saved or str(storage_error(e, npz_path, "choose another --per-example path"))
            npz_path = None
    report = {"run": str(run.path), "split": split, "checkpoint_step": chosen, "params": ckpt.params_kind,
              "results": results, "per_example": str(npz_path) if npz_path else None,
              **({"not_saved": not_saved} if not_saved else {})}
    if write:  # the run's experiment trackers (log.wandb / log.mlflow), when it has any
        from vaecli.rundir import trackers

        trackers.log_eval(run, report)
    return report


def _estimate(run, fn, params, images, k: int, seed: int, batch_size: int, max_rows, kl_mc_samples: int,
              chosen: int, which: str, shown: str | bool | None = None,
              deadline: float | None = None) -> tuple[dict, dict]:
    """One K: the compiled estimator over the split, its summary document and per-example
    arrays; its compilation and progress on stderr as `shown` says (vaecli.progress)."""
    import jax

    from vaecli.compiled import devices

    objective = registry.objective(run.config)
    mesh = devices.make_mesh(0)  # every local device: the examples of each batch are split over them
    t0 = time.perf_counter()
    with progress.reporting(shown), progress.working(f"compiling the K={k} estimator"):
        estimate, plan = estimator.compile_estimator(fn, params, images.flat, images.scale, k, batch_size,
                                                     max_rows, kl_mc_samples, deterministic=not objective.draws_samples,
                                                     mesh=mesh)
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    with progress.reporting(shown), progress.Task(f"K={k} on the {images.name} split", len(images), " images") as task:
        try:
            per = estimate(params, seed, task.update, deadline)
        except OutOfTime as e:
            raise OutOfTime(f"K={k} on the {images.name} split at step {chosen} would not finish in time, "
                            f"nothing of it was written ({e}); give it more time") from None
    eval_s = time.perf_counter() - t0
    doc = summaries.summarize(per, int(np.prod(images.image_shape)))
    doc.update(summaries.latent_units(per))
    doc["notes"] = _undefined(doc, objective, run.config.model.likelihood)
    m = run.config.model
    doc.update({
        "samples": k, "params": which,
        "protocol": {"dataset": data.dataset_name(run.config.data), "split": images.name, "num_examples": len(images),
                     "binarize": run.config.data.binarize, "samples": k, "seed": seed,
                     "checkpoint_step": chosen, "estimator": ESTIMATOR,
                     # a conditional model's bound and estimate are of log p(x|y), y the image's label
                     "log_likelihood": "log p(x|y)" if m.conditional else "log p(x)",
                     "elbo": "-(recon + kl): recon averaged over the same K draws of q, kl analytic",
                     "kl_mc_samples": kl_mc_samples,
                     "active_unit": f"Var_x(E_q[z_d|x]) > {summaries.ACTIVE_UNIT_THRESHOLD}",
                     "model": {"kind": m.kind, "latent_dim": m.latent_dim, "likelihood": m.likelihood,
                               "prior": m.prior, "latent_dim2": m.latent_dim2, "hierarchy": m.hierarchy,
                               "objective": run.config.objective.name, "train_precision": run.config.train.precision},
                     "batch_size": plan["batch_size"], "sample_chunk": plan["sample_chunk"],
                     "devices": plan["devices"], "vaecli_version": vaecli.__version__},
        # JAX's default matmul precision uses TF32 on NVIDIA GPUs, which moves log p(x) a little
        # against "highest" (docs/performance.md): the record says which precision was in force.
        "timing": {"compile_s": compile_s, "eval_s": eval_s, "device": str(jax.devices()[0]),
                   "matmul_precision": jax.config.jax_default_matmul_precision or "default",
                   "scratch_bytes": plan["scratch_bytes"]},
        "run": str(run.path),
    })
    return doc, per


def _fmt(value: float | None, width: int = 11) -> str:
    if value is None:
        return f"{'n/a':>{width}}"
    return f"{value:>{width}.3f}" if math.isfinite(value) else f"{'—':>{width}}"


def format_table(report: dict) -> str:
    """The terminal table: one column per K, then the K-independent KL and latent-unit figures."""
    if report.get("discrete_latent"):
        return vq_eval.format_table(report)
    res = report["results"]
    first, p = res[0], res[0]["protocol"]
    lines = [f"{p['dataset']} {p['split']} ({p['num_examples']} images), step {p['checkpoint_step']}, "
             f"seed {p['seed']}, {first['run']}" + (" (EMA params)" if first.get("params") == "ema" else "")]
    lines.append(f"  {'':<32}" + "".join(f"{'K=' + str(r['samples']):>11}" for r in res))
    given = "|y" if p.get("log_likelihood") == "log p(x|y)" else ""  # a conditional model's
    rows = [(f"log p(x{given}) ≈ log p̂_K(x{given})", "log_likelihood"), ("  standard error", "log_likelihood_stderr"),
            ("NLL", "nll"), ("bits/dim", "bits_per_dim"), ("ELBO", "elbo"),
            ("  reconstruction −E[log p(x|z)]", "recon")]
    for label, key in rows:
        lines.append(f"  {label:<32}" + "".join(_fmt(r[key]) for r in res))
    lines.append(f"  {'time (after compile), s':<32}" + "".join(f"{r['timing']['eval_s']:>11.2f}" for r in res))
    lines.append(f"  {'compile, s':<32}" + "".join(f"{r['timing']['compile_s']:>11.2f}" for r in res))
    if first["kl_per_dim"] is not None:
        lines.append(f"  KL(q‖p) analytic {first['kl']:.3f}" + (
            f"   Monte Carlo ({p['kl_mc_samples']} draws) {first['kl_mc']:.3f} ± {first['kl_mc_stderr']:.3f}"
            if "kl_mc" in first else ""))
    elif first["kl"] is not None:  # no closed form (VampPrior, two layers): the mean of log q − log p over the K draws
        lines.append(f"  {'KL(q‖p), Monte Carlo over the K draws':<32}" + "".join(_fmt(r["kl"]) for r in res))
    lines.append(f"  active units: {first['active_units']} of {first['latent_dim']} "
                 f"(Var_x E[z_d|x] > {first['active_unit_threshold']})")
    if first["kl_per_dim"] is not None:
        order = np.argsort(first["kl_per_dim"], kind="stable")[::-1]
        shown = order if len(order) <= 40 else order[:20]  # a wide latent space: its top 20 (all in the JSON)
        cells = [f"{'z' + str(d) + ('*' if first['active'][d] else ''):<6}{first['kl_per_dim'][d]:6.3f}" for d in shown]
        lines.append(f"  KL per dimension, largest first (* active){'' if len(shown) == len(order) else ', top 20'}:")
        lines += ["    " + "  ".join(cells[i:i + 5]) for i in range(0, len(cells), 5)]
    for note in first.get("notes", []):
        lines.append(f"  note: {note}")
    for r in res:
        if "written_to" in r:
            lines.append(f"written to {r['written_to']}")
    if report.get("per_example"):
        lines.append(f"per-example arrays in {report['per_example']}")
    return "\n".join(lines)


def _undefined(result: dict, objective: registry.Objective, likelihood: str) -> list[str]:
    """Blank out (None) the figures the model does not define, and say why."""
    if not objective.defines_density:  # only the reconstruction is reported
        for key in ("elbo", "kl", "log_likelihood", "log_likelihood_stderr", "nll", "bits_per_dim"):
            result[key] = None
        return [objective.no_density_note]
    if not registry.LIKELIHOODS[likelihood].discrete:
        result["bits_per_dim"] = None
        return [f"model.likelihood={likelihood} is a density on [0, 1]-scaled pixels, not a probability of the "
                "discrete pixel values: log p(x) is in nats of that density and bits/dim are not defined "
                "(use model.likelihood=logistic for bits/dim)"]
    return []
