"""`vae eval-elbo`: the ELBO and the importance-sampled log p(x) of a trained run."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from vaecli import bounds, data, runs, state as state_lib
from vaecli.errors import UsageError


def evaluate(run_path: str | Path, split: str = "test", samples: int = 1000, step=None, seed: int = 0,
             batch_size: int = 100, max_rows: int | None = None, write: bool = True) -> dict:
    """Evaluate a run's checkpoint on a split; write `eval/<split>-step<S>-k<K>.json`; return it."""
    if samples < 1:
        raise UsageError(f"--samples {samples}: K must be at least 1 (K=1 is the ELBO, larger K tightens the bound)")
    if batch_size < 1:
        raise UsageError(f"--batch-size {batch_size}: must be at least 1")
    if split not in data.SPLITS:
        raise UsageError(f"--split {split!r}: choose one of {', '.join(data.SPLITS)}")
    run = runs.open_run(run_path)
    fn, state, chosen, _ = state_lib.load_state(run.config, run.image_shape, run.checkpoint_dir, step)
    images = data.load_split(run.config.data, split)

    import jax

    from vaecli import likelihoods

    autoencoder = run.config.objective.name == "ae"
    t0 = time.perf_counter()
    estimate, k_chunk = bounds.compile_estimator(fn, state["params"], images.images, images.scale,
                                                 1 if autoencoder else samples, batch_size, max_rows,
                                                 deterministic=autoencoder)
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    per = estimate(state["params"], seed)
    eval_s = time.perf_counter() - t0

    result = bounds.summarize(per, int(np.prod(images.image_shape)))
    result["notes"] = _undefined(result, autoencoder, likelihoods.DISCRETE[run.config.model.likelihood])
    result.update({
        "samples": samples,
        "protocol": {"dataset": run.config.data.dataset, "split": split, "num_examples": len(images),
                     "binarize": run.config.data.binarize, "samples": samples, "seed": seed,
                     "checkpoint_step": chosen, "estimator": "importance sampling with q(z|x) as proposal "
                     "(the K-sample IWAE bound)", "batch_size": batch_size, "sample_chunk": k_chunk},
        # JAX's default matmul precision uses TF32 on NVIDIA GPUs: on an H100, K=5000 on the
        # binarized-MNIST test split moved log p(x) by 3e-4 nats against "highest" (3.5x slower).
        "timing": {"compile_s": compile_s, "eval_s": eval_s, "device": str(jax.devices()[0]),
                   "matmul_precision": jax.config.jax_default_matmul_precision or "default"},
        "run": str(run.path),
    })
    if write:
        out = run.path / "eval" / f"{split}-step{chosen}-k{samples}.json"
        out.parent.mkdir(exist_ok=True)
        runs.write_json(out, result)
        result["written_to"] = str(out)
    return result


def _undefined(result: dict, autoencoder: bool, discrete: bool) -> list[str]:
    """Blank out (None) the figures the model does not define, and say why."""
    if autoencoder:
        for key in ("elbo", "kl", "log_likelihood", "log_likelihood_stderr", "nll", "bits_per_dim"):
            result[key] = None
        return ["objective.name=ae: a deterministic autoencoder has no prior over codes and draws no z, so it "
                "defines no density p(x) and no ELBO; only the reconstruction −log p(x|z) at z = the encoder's "
                "mean is reported (K is ignored)"]
    if not discrete:
        result["bits_per_dim"] = None
        return ["model.likelihood=gaussian is a density on [0, 1]-scaled pixels, not a probability of the "
                "discrete pixel values: log p(x) is in nats of that density and bits/dim are not defined "
                "(use model.likelihood=logistic for bits/dim)"]
    return []
