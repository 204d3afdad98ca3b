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
    import jax.numpy as jnp

    batches, n = bounds.batch_split(images.images, batch_size)
    k_chunk = bounds.chunk_size(samples, batches.shape[1], max_rows or bounds.default_max_rows())
    compiled_fn = bounds.make_bounds_fn(fn, samples, k_chunk, images.scale)
    batches = jax.device_put(batches)
    t0 = time.perf_counter()
    compiled = compiled_fn.lower(state["params"], batches, jax.random.key(seed)).compile()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    per = bounds.run(compiled, state["params"], batches, n, seed)
    eval_s = time.perf_counter() - t0

    result = bounds.summarize(per, int(np.prod(images.image_shape)))
    result.update({
        "samples": samples,
        "protocol": {"dataset": run.config.data.dataset, "split": split, "num_examples": n,
                     "binarize": run.config.data.binarize, "samples": samples, "seed": seed,
                     "checkpoint_step": chosen, "estimator": "importance sampling with q(z|x) as proposal "
                     "(the K-sample IWAE bound)", "batch_size": batch_size, "sample_chunk": k_chunk},
        "timing": {"compile_s": compile_s, "eval_s": eval_s, "device": str(jax.devices()[0])},
        "run": str(run.path),
    })
    if write:
        out = run.path / "eval" / f"{split}-step{chosen}-k{samples}.json"
        out.parent.mkdir(exist_ok=True)
        runs.write_json(out, result)
        result["written_to"] = str(out)
    return result
