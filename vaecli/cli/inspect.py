"""`vae sample`, `vae eval-elbo`, `vae plot` and `vae show`: looking at a run (or a config)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from vaecli.cli.app import JsonOpt, RawParamsOpt, StepOpt, app, complete_mode, complete_set
from vaecli.cli.process import echo, run as _run, use_compile_cache as _use_compile_cache
from vaecli.evaluation import modes as sample_modes  # the mode registry, for the help (imports no JAX)

def _refuse_early(run: Path, split: str) -> None:
    """A folder that is no run, or a split that does not exist, refused before JAX is imported
    (seconds on a busy CPU): the library call checks them again, in no time."""
    from vaecli.data import check_split
    from vaecli.rundir.layout import open_run

    check_split(split, "--split")
    open_run(run)


@app.command()
def sample(
    run: Annotated[Path, typer.Argument(help="Run folder written by `vae train`.")],
    mode: Annotated[str, typer.Option(help=sample_modes.help_mode(), autocompletion=complete_mode)] = "prior",
    n: Annotated[Optional[int], typer.Option("--n", help=sample_modes.help_n())] = None,
    steps: Annotated[Optional[int], typer.Option(help=sample_modes.help_steps())] = None,
    temperature: Annotated[float, typer.Option(help="prior: z ~ N(0, T²I).")] = 1.0,
    split: Annotated[str, typer.Option(help="Where test images come from (recon, interpolate, traverse, "
                                            "latents).")] = "test",
    seed: Annotated[int, typer.Option(help="Seed of the prior draws and of the images picked.")] = 0,
    step: StepOpt = None,
    out: Annotated[Optional[Path], typer.Option(help="Output folder (default: RUN/samples).")] = None,
    raw_params: RawParamsOpt = False,
    gif: Annotated[bool, typer.Option(
        "--gif", help="traverse: also an animated GIF beside the PNG (one frame per point, a tile per "
                      "dimension).")] = False,
    label: Annotated[Optional[int], typer.Option(
        "--label", help="A conditional run's class for --mode prior (default: a row per class).")] = None,
    as_json: JsonOpt = False,
):
    """Pictures of a trained model: a PNG (title: run, step, mode) and its array as .npy."""

    def go():
        from vaecli.evaluation.sample import check_arguments

        check_arguments(mode, n, steps, temperature, gif)
        _refuse_early(run, split)
        _use_compile_cache()
        from vaecli.evaluation.sample import sample as sample_fn

        res = sample_fn(run, mode=mode, n=n, seed=seed, step=step, out=out, temperature=temperature,
                        split=split, steps=steps, raw_params=raw_params, gif=gif, label=label)
        if as_json:
            echo(json.dumps(res, indent=2, default=str))
            return
        for key in ("png", "npy", "gif", "labels_npy"):
            if key in res:
                echo(res[key])

    _run(go)


@app.command("eval-elbo")
def eval_elbo(
    run: Annotated[Path, typer.Argument(help="Run folder written by `vae train`.")],
    split: Annotated[str, typer.Option(help="train, validation or test.")] = "test",
    samples: Annotated[str, typer.Option(
        "--samples", "-k", help="K importance samples per example, or several: 1,50,5000.")] = "1000",
    step: StepOpt = None,
    seed: Annotated[int, typer.Option(help="Seed of the importance samples.")] = 0,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Examples per compiled batch.")] = 100,
    kl_mc_samples: Annotated[int, typer.Option(
        "--kl-mc-samples", help="Draws per example of the Monte Carlo KL shown beside the analytic one (0: off).")] = 100,
    per_example: Annotated[Optional[Path], typer.Option(
        "--per-example", help="Also write per-image ELBO, log p̂(x), recon and KL to this .npz.")] = None,
    out: Annotated[Optional[Path], typer.Option(
        help="Folder of the per-K JSON files (default: RUN/eval); e.g. for a run on read-only storage.")] = None,
    raw_params: RawParamsOpt = False,
    time_limit: Annotated[Optional[str], typer.Option(
        "--time-limit", metavar="DURATION", help="Give up on a K as soon as its pace says it would end past DURATION "
        "(9m30s, 2h) from the command's start, and exit 3; the Ks finished before it are written.")] = None,
    as_json: JsonOpt = False,
):
    """ELBO, log p(x) by importance sampling for each K, KL (analytic and Monte Carlo), active units."""

    def go():
        from vaecli import clock
        from vaecli.evaluation.arguments import parse_samples

        started = clock.now() - clock.process_age()  # --time-limit counts the whole command
        parse_samples(samples)
        deadline = None if time_limit is None else started + clock.parse_duration_option(time_limit)
        _refuse_early(run, split)
        _use_compile_cache()
        from vaecli.evaluation.elbo import evaluate, format_table

        res = evaluate(run, split=split, samples=samples, step=step, seed=seed, batch_size=batch_size,
                       kl_mc_samples=kl_mc_samples, per_example=per_example, out=out, raw_params=raw_params,
                       deadline=deadline)
        echo(json.dumps(res, indent=2) if as_json else format_table(res))
        if res.get("not_saved"):  # the results are printed; the file that was not written is an error
            from vaecli.errors import StorageError

            raise StorageError(res["not_saved"])

    _run(go)


@app.command()
def plot(
    runs: Annotated[list[Path], typer.Argument(help="One or more run folders.")],
    out: Annotated[Optional[Path], typer.Option(
        help="PNG to write (default with one run: RUN/plots/curves-step<S>.png; required with several).")] = None,
    as_json: JsonOpt = False,
):
    """Training and validation curves (loss, recon, KL, examples/s) of one or more runs, as a PNG."""

    def go():
        from vaecli.evaluation.curves import plot_curves

        res = plot_curves(runs, out)
        if as_json:
            echo(json.dumps(res, indent=2, default=str))
            return
        echo(res["png"])
        echo(res["npy"])

    _run(go)


@app.command()
def show(
    target: Annotated[Path, typer.Argument(metavar="CONFIG_OR_RUN", help="A YAML config or a run folder.")],
    set_: Annotated[Optional[list[str]], typer.Option(
        "--set", help="Override a config key (as for train).", autocompletion=complete_set)] = None,
    as_json: JsonOpt = False,
):
    """Dry run: config, parameters, FLOPs, bytes and device memory of a training step.

    The training epoch is compiled from abstract shapes and measured by XLA's own cost and
    memory analysis; nothing is trained and nothing is written."""

    def go():
        from vaecli.training import dry_run as show_lib

        resolved = show_lib.resolve(target, set_ or [])  # config and data errors before JAX starts
        _use_compile_cache()
        res = show_lib.analyse(*resolved)
        echo(json.dumps(res, indent=2) if as_json else show_lib.format_report(res))

    _run(go)
