"""`vae sample`: a PNG grid of prior samples (mean images of p(x|z)) and the raw array as .npy."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from vaecli import pictures, runs, state as state_lib
from vaecli.errors import UsageError


def sample(run_path: str | Path, n: int = 64, seed: int = 0, step=None, out: str | Path | None = None) -> dict:
    if n < 1:
        raise UsageError(f"--n {n}: must be at least 1")
    run = runs.open_run(run_path)
    fn, state, chosen, _ = state_lib.load_state(run.config, run.image_shape, run.checkpoint_dir, step)

    import jax

    generate = jax.jit(lambda params, key: fn.bind(params).generate(key, n))
    means = np.asarray(jax.device_get(generate(state["params"], jax.random.key(seed)))).reshape(n, *run.image_shape)

    out_dir = Path(out) if out is not None else run.path / "samples"
    stem = f"sample-step{chosen}-seed{seed}-n{n}"
    png = pictures.save_grid(means, out_dir / f"{stem}.png", f"{run.path.name} step {chosen} prior samples")
    npy = out_dir / f"{stem}.npy"
    np.save(npy, means)
    return {"png": str(png), "npy": str(npy), "step": chosen, "n": n, "seed": seed}
