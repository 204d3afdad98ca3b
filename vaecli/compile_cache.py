"""JAX's persistent compilation cache: a compiled program is saved on disk and the next
process that compiles the same program (same shapes, same code, same device kind, same
JAX) loads it instead of compiling, so the second run of a sweep starts at once.

Called by the commands that compile (train, sample, eval-elbo) before they compile
anything: JAX decides once per process, at its first compilation, whether it uses a cache.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger("vaecli")

# Every program is stored. JAX's default (1 s) would skip most of ours on a CPU (an epoch
# compiles in ~0.5-4 s), and the small ones add up: a parameter init alone is some twenty
# programs of a few ms each. Measured (bmnist_mlp run, XLA defaults, warm cache, 5 rounds
# alternating): `vae sample` 4.63 -> 3.66 s, `vae eval-elbo` 5.50 -> 4.76 s with a 0.1 s
# threshold -> none; the cache grows from 7 to 29 entries (284 -> 380 KB).
MIN_COMPILE_S = 0.0


def enable(folder: str | Path | None) -> Path | None:
    """Use `folder` as the cache (created if needed); None turns caching off, JAX's own
    JAX_COMPILATION_CACHE_DIR included. Returns the folder in use, or None. A folder that
    cannot be created or written costs a warning, never the run."""
    import jax

    if folder is None:
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    path = Path(folder).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
        writable = os.access(path, os.W_OK)
    except OSError as e:
        writable, why = False, e.strerror
    else:
        why = "not writable"
    if not writable:
        log.warning(f"compile cache {path}: {why}; compiling without it (point VAECLI_COMPILE_CACHE at "
                    f"another folder, or set it to off)")
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_S)
    return path
