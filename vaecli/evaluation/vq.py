"""A VQ-VAE (model.latent=vq) under evaluation: `vae sample --mode prior`'s draws from its code
prior (`prior_draw`), and `vae eval-elbo`'s discrete-latent bound of the VQ-VAE paper,

    −log p(x) ≤ −log p(x|z_q) − log p_prior(z_q),   z_q the nearest codes of x,

in nats and bits/dim, with p_prior the run's trained code prior (vaecli.rundir.code_prior).
It holds because q(z|x) is a point mass on z_q: log p(x) ≥ E_q[log p(x|z) + log p(z) − log q(z|x)]
with log q = 0. It is not an importance-sampled estimate, so the document's `log_likelihood`,
`nll` and `elbo` stay None and the bound has keys of its own (`discrete_bound_nll`,
`discrete_bound_bits_per_dim`): `vae runs` and any reader of log p(x) never mix the two.
Without a prior the reconstruction and the codebook's use are reported, and a note says the
prior is missing. K is ignored: there are no samples.
"""
from __future__ import annotations

import math
import time

import numpy as np

import vaecli
from vaecli import files, progress
from vaecli.compiled import code_prior as compiled_prior
from vaecli.errors import RunError, UsageError, storage_error
from vaecli.rundir import code_prior

BOUND = "discrete-latent bound −log p(x|z_q) − log p_prior(z_q) (van den Oord et al. 2017); not importance-sampled"
NO_PRIOR = ("no code prior in RUN/prior: only the reconstruction −log p(x|z_q) is reported; fit the prior with "
            "vae train-prior RUN for the discrete-latent bound")


def prior_draw(run, fn, params, image_shape):
    """draw(n, temperature, seed) -> (n, H, W, C) mean images of codes drawn from the run's code
    prior, each code from softmax(logits / temperature); RunError when it has no prior yet."""
    import jax

    prior = code_prior.load(run)
    if prior is None:
        raise RunError(f"{run.path} has no code prior yet: a VQ-VAE samples from the prior over its codes; fit it "
                       f"with vae train-prior {run.path} (or draw --mode recon / interpolate)")
    decode = jax.jit(lambda p, c: fn.bind(p).decode_codes(c))

    def draw(n: int, temperature: float, seed: int) -> np.ndarray:
        if not temperature > 0:
            raise UsageError(f"--temperature {temperature}: must be > 0")
        grids = compiled_prior.sample(prior.fn, prior.params, seed, n, temperature)
        return np.asarray(decode(params, grids)).reshape(n, *image_shape)

    return draw


def _codebook_use(codes: np.ndarray, k: int) -> dict:
    freq = np.bincount(codes.reshape(-1), minlength=k) / codes.size
    used = freq[freq > 0]
    return {"codes_used": int(len(used)), "codebook_size": k,
            "codebook_perplexity": float(np.exp(-(used * np.log(used)).sum()))}


def _checked_prior(run, k: int, length: int):
    """The run's code prior (None without one), refused if it models other codes."""
    prior = code_prior.load(run)
    if prior is not None and (prior.meta["codebook_size"], prior.meta["codes"]) != (k, length):
        raise RunError(f"the prior in {run.path / code_prior.FOLDER} models {prior.meta['codes']} codes of "
                       f"{prior.meta['codebook_size']}, this run has {length} of {k}; fit it again with "
                       "vae train-prior after moving that folder away")
    return prior


def evaluate(ckpt, images, split: str, seed: int, write: bool, npz_path, shown="auto") -> dict:
    """The report of `vaecli.evaluation.elbo.evaluate` for a VQ-VAE checkpoint (restored)."""
    run, k = ckpt.run, ckpt.config.model.codebook_size
    t0 = time.perf_counter()
    prior = _checked_prior(run, k, ckpt.fn.bind(ckpt.params).num_codes)
    prior_nll, prior_step = None, None
    with progress.reporting(shown), progress.working(f"reconstructing the {images.name} split"):
        recon, codes = compiled_prior.reconstruction(ckpt.fn, ckpt.params, images.images, images.scale)
        if prior is not None:
            prior_nll = -compiled_prior.log_prob(prior.fn, prior.params, codes)
            prior_step = (prior.step, prior.meta["vq_step"])
    pixels = int(np.prod(images.image_shape))
    doc = {"samples": 1, "params": ckpt.params_kind, "discrete_latent": True, "recon": float(recon.mean()),
           "elbo": None, "kl": None, "log_likelihood": None, "log_likelihood_stderr": None, "nll": None,
           "bits_per_dim": None, "num_examples": len(images), **_codebook_use(codes, k)}
    if prior_nll is not None:
        bound = recon + prior_nll
        doc.update({"prior_nll": float(prior_nll.mean()), "discrete_bound_nll": float(bound.mean()),
                    "discrete_bound_stderr": float(bound.std(ddof=1) / math.sqrt(len(bound))) if len(bound) > 1
                    else None,
                    "discrete_bound_bits_per_dim": float(bound.mean()) / (pixels * math.log(2)),
                    "prior_step": prior_step[0], "prior_fitted_at_step": prior_step[1], "notes": []})
        if prior_step[1] != ckpt.step:
            doc["notes"].append(f"the prior was fitted to the codes of step {prior_step[1]}, this is step "
                                f"{ckpt.step}: the bound holds, but the prior is not this checkpoint's")
    else:
        doc.update({"prior_nll": None, "discrete_bound_nll": None, "discrete_bound_bits_per_dim": None,
                    "notes": [NO_PRIOR]})
    m = run.config.model
    doc["protocol"] = {"dataset": run.config.data.dataset, "split": images.name, "num_examples": len(images),
                       "binarize": run.config.data.binarize, "samples": 1, "seed": seed,
                       "checkpoint_step": ckpt.step, "estimator": BOUND,
                       "model": {"kind": m.kind, "latent": "vq", "codebook_size": k, "code_dim": m.code_dim,
                                 "codes": int(codes.shape[1]), "likelihood": m.likelihood, "objective": "vq"},
                       "vaecli_version": vaecli.__version__}
    doc["timing"] = {"eval_s": time.perf_counter() - t0}
    doc["run"] = str(run.path)
    if write:
        saved = ckpt.write_json(ckpt.output("elbo", split=split, k=1), doc,
                                "write the files elsewhere with --out DIR (the results are on stdout)")
        doc.update(saved if "not_saved" not in saved else {})
        not_saved = saved.get("not_saved")
    else:
        not_saved = None
    report = {"run": str(run.path), "split": split, "checkpoint_step": ckpt.step, "params": ckpt.params_kind,
              "results": [doc], "per_example": None, "discrete_latent": True}
    if npz_path is not None:
        arrays = {"recon": recon, "codes": codes, "index": np.arange(len(images))}
        if prior_nll is not None:
            arrays.update({"prior_nll": prior_nll, "discrete_bound": recon + prior_nll})
        try:
            files.write_with(npz_path, lambda f: np.savez(f, **arrays))
            report["per_example"] = str(npz_path)
        except OSError as e:
            not_saved = not_saved or str(storage_error(e, npz_path, "choose another --per-example path"))
    if not_saved:
        report["not_saved"] = not_saved
    return report


def format_table(report: dict) -> str:
    r = report["results"][0]
    p = r["protocol"]
    lines = [f"{p['dataset']} {p['split']} ({p['num_examples']} images), step {p['checkpoint_step']}, {r['run']}"
             + (" (EMA params)" if r.get("params") == "ema" else ""),
             f"  VQ-VAE, {p['model']['codes']} codes of K={r['codebook_size']}: the discrete-latent bound "
             "(not importance-sampled)"]
    if r["discrete_bound_nll"] is not None:
        lines += [f"  {'−log p(x) ≤ −log p(x|z_q) − log p(z_q)':<42}{r['discrete_bound_nll']:>11.3f} nats",
                  f"  {'  standard error':<42}{r['discrete_bound_stderr']:>11.3f}",
                  f"  {'  bits/dim':<42}{r['discrete_bound_bits_per_dim']:>11.4f}",
                  f"  {'  −log p_prior(z_q), the codes':<42}{r['prior_nll']:>11.3f} nats"]
    lines.append(f"  {'reconstruction −log p(x|z_q)':<42}{r['recon']:>11.3f} nats")
    lines.append(f"  codebook: {r['codes_used']} of {r['codebook_size']} codes used, perplexity "
                 f"{r['codebook_perplexity']:.1f}")
    lines += [f"  note: {n}" for n in r["notes"]]
    if "written_to" in r:
        lines.append(f"written to {r['written_to']}")
    if report.get("per_example"):
        lines.append(f"per-example arrays in {report['per_example']}")
    return "\n".join(lines)
