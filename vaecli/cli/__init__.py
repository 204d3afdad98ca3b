"""The `vae` command: one module per command group, the error edge in `process`.

    app         the Typer app, its top-level options (--version, --debug, --compile-cache)
    train       vae train, vae tune
    prior       vae train-prior (a VQ-VAE's code prior)
    inspect     vae sample, vae eval-elbo, vae plot, vae show
    disentanglement  vae eval-disentanglement
    samples          vae train-features, vae eval-samples
    gradients        vae grad-snr
    runs        vae runs
    data        vae data prepare, vae data list
    process     the process around a command: compile cache, quiet libraries, errors -> one line + exit code
    completion  shell completion of option values (no JAX)
"""
from __future__ import annotations

import gc
import sys

from vaecli.cli import train, prior, inspect, disentanglement, samples, gradients, runs, data  # noqa: F401,I001  (each declares its commands on the app, in this order)
from vaecli.cli.app import app
from vaecli.cli.process import STATE, spread_replicas_over_cores

__all__ = ["app", "main_process"]


def main_process() -> None:
    """The `vae` program: the app, in a process of its own (unlike in-process tests)."""
    STATE["own_process"] = True
    # Importing, tracing and lowering allocate millions of objects that live until the process
    # ends, and Python's default trigger (a collection every 700 net allocations) walks them
    # hundreds of times in a tiny `vae train`, for nothing (docs/performance.md, "Measurements
    # behind code choices"). Cycles are still collected, less often.
    gc.set_threshold(50_000)
    spread_replicas_over_cores(sys.argv)
    app()
