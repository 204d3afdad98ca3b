"""`vae eval-disentanglement`: a run's encoder scored by disentanglement metrics (MIG,
FactorVAE, DCI, SAP, BetaVAE, modularity) on a dataset with known factors."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from vaecli.cli.app import JsonOpt, RawParamsOpt, StepOpt, app
from vaecli.cli.process import echo, run as _run, use_compile_cache as _use_compile_cache
from vaecli.evaluation import disentanglement as metrics_lib  # the registry, for the help (imports no JAX)

_METRICS_HELP = "Comma-separated, or all: " + "; ".join(f"{n}: {m.help}" for n, m in metrics_lib.METRICS.items()) + "."


@app.command("eval-disentanglement")
def eval_disentanglement(
    run: Annotated[Path, typer.Argument(help="Run folder written by `vae train` on a dataset with factors "
                                             "(toy_sprites, dsprites, shapes3d).")],
    metrics: Annotated[str, typer.Option("--metrics", help=_METRICS_HELP)] = "all",
    seed: Annotated[int, typer.Option(help="Seed of the factor draws of every metric.")] = 0,
    step: StepOpt = None,
    sizes: Annotated[str, typer.Option(
        help="Sample sizes: dlib (disentanglement_lib's, in each metric's help) or small (a tenth or less, "
             "for a quick look).")] = "dlib",
    train_size: Annotated[Optional[int], typer.Option(
        "--train-size", help="Points each metric fits on (codes; FactorVAE/BetaVAE: batches of 64).")] = None,
    eval_size: Annotated[Optional[int], typer.Option(
        "--eval-size", help="Points each metric scores on (its test or eval sample; MIG has none).")] = None,
    dci_regressor: Annotated[str, typer.Option(
        "--dci-regressor", help="DCI's importance regressor: lasso, or gbt (disentanglement_lib's gradient-boosted "
                                "trees; needs pip install 'vaecli[disentanglement]').")] = "lasso",
    out: Annotated[Optional[Path], typer.Option(help="Folder of the JSON file (default: RUN/eval).")] = None,
    raw_params: RawParamsOpt = False,
    as_json: JsonOpt = False,
):
    """Disentanglement metrics of the encoder mean: a table, and RUN/eval/disentanglement-step<S>.json."""

    def go():
        from vaecli.evaluation.disentanglement import run as run_lib

        from vaecli.rundir.layout import open_run

        run_lib.plan(metrics, sizes, train_size, eval_size, dci_regressor)  # bad arguments before JAX starts
        open_run(run)
        _use_compile_cache()
        res = run_lib.evaluate(run, metrics=metrics, seed=seed, step=step, sizes=sizes, train_size=train_size,
                               eval_size=eval_size, dci_regressor=dci_regressor, out=out, raw_params=raw_params)
        echo(json.dumps(res, indent=2) if as_json else run_lib.format_table(res))
        if res.get("not_saved"):  # the results are printed; the file that was not written is an error
            from vaecli.errors import StorageError

            raise StorageError(res["not_saved"])

    _run(go)
