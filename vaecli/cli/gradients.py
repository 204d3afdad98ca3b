"""`vae grad-snr`: how noisy a run's gradient estimators are (vaecli.evaluation.grad_snr)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from vaecli.cli.app import JsonOpt, RawParamsOpt, StepOpt, app
from vaecli.cli.process import echo, run as _run, use_compile_cache as _use_compile_cache


@app.command("grad-snr")
def grad_snr(
    run: Annotated[Path, typer.Argument(help="Run folder written by `vae train`.")],
    samples: Annotated[str, typer.Option(
        "--samples", "-k", help="K samples of the IWAE bound, or several: 1,10,50.")] = "1,10,50",
    estimators: Annotated[str, typer.Option(
        help="Gradient estimators to compare: reparam, stl, dreg (comma-separated).")] = "reparam,dreg",
    draws: Annotated[int, typer.Option(help="Independent gradients per K and estimator.")] = 100,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Images in the one fixed batch.")] = 16,
    split: Annotated[str, typer.Option(help="Where the batch comes from: train, validation or test.")] = "test",
    step: StepOpt = None,
    seed: Annotated[int, typer.Option(help="Seed of the batch and of the draws.")] = 0,
    out: Annotated[Optional[Path], typer.Option(
        help="Folder of the JSON file (default: RUN/eval).")] = None,
    raw_params: RawParamsOpt = False,
    as_json: JsonOpt = False,
):
    """Signal-to-noise ratio of the IWAE bound's gradient, encoder and decoder, per K and estimator.

    SNR = |mean| / std of each parameter's gradient over independent draws on one batch
    (Rainforth et al. 2018), the mean over parameters; written to RUN/eval/grad-snr-step<S>.json."""

    def go():
        from vaecli.data import check_split
        from vaecli.evaluation.arguments import parse_samples
        from vaecli.rundir.layout import open_run

        parse_samples(samples)  # bad arguments and a folder that is no run, before JAX starts
        check_split(split, "--split")
        open_run(run)
        _use_compile_cache()
        from vaecli.evaluation.grad_snr import format_table, grad_snr as measure

        res = measure(run, samples=samples, estimators=estimators, draws=draws, batch_size=batch_size,
                      split=split, step=step, seed=seed, raw_params=raw_params, out=out)
        echo(json.dumps(res, indent=2) if as_json else format_table(res))
        if res.get("not_saved"):  # the results are printed; the file that was not written is an error
            from vaecli.errors import StorageError

            raise StorageError(res["not_saved"])

    _run(go)
