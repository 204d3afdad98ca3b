"""`vae train-prior`: the VQ-VAE's second stage, its code prior (vaecli.training.prior)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from vaecli.cli.app import JsonOpt, app
from vaecli.cli.process import echo, run as _run, use_compile_cache as _use_compile_cache


@app.command("train-prior")
def train_prior(
    run: Annotated[Path, typer.Argument(help="Run folder of a VQ-VAE (model.latent=vq) written by `vae train`.")],
    set_: Annotated[Optional[list[str]], typer.Option(
        "--set", metavar="KEY=V", help="Change a code_prior.* key: --set code_prior.layers=6 (repeatable; "
        "resuming a prior may change only code_prior.epochs).")] = None,
    time_limit: Annotated[Optional[str], typer.Option(
        "--time-limit", metavar="DURATION", help="Stop at the last epoch boundary that fits in DURATION "
        "(9m30s, 2h), with a checkpoint, and exit 3; run the command again to continue.")] = None,
    as_json: JsonOpt = False,
):
    """Fit the autoregressive prior over a VQ-VAE's codes, in RUN/prior/ (resumes one found there).

    The codes are those of the training split at the run's latest checkpoint; the validation
    split's −log p(codes) is logged per epoch in RUN/prior/metrics.jsonl. Then `vae sample RUN
    --mode prior` draws from it and `vae eval-elbo RUN` reports −log p(x|z_q) − log p_prior(z_q)."""

    def go():
        from vaecli.training.launch import prior_run

        prior_run(run, set_ or [], time_limit)  # what can be refused without JAX, before it starts
        _use_compile_cache()
        from vaecli.errors import Paused
        from vaecli.training.prior import train_prior as fit

        try:
            summary = fit(run, set_ or [], time_limit)
        except Paused as e:  # not a failure: exit 3 says "run me again", as vae train's does
            typer.secho(f"paused: {e}", err=True)
            raise typer.Exit(e.exit_code) from None
        echo(json.dumps(summary, indent=2) if as_json else
             f"prior of {summary['codes']} codes ({'x'.join(map(str, summary['grid']))}, K={summary['codebook_size']}): "
             f"{summary['epochs']} epochs, validation −log p(codes) {summary['val_nll']:.3f} nats "
             f"({summary['val_nll_per_code']:.3f} per code); {summary['prior']}")

    _run(go)
