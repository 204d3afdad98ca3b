"""The `vae` command: parse arguments, call the library, map its errors to exit codes.

No ML code lives here, and nothing heavy is imported at module level, so `vae --help`
answers at once. Errors: one line on stderr, exit 2 for usage/config, 1 at run time,
130 on Ctrl-C; `--debug` shows the traceback instead.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

import vaecli

app = typer.Typer(
    help="Train, sample and evaluate variational autoencoders; every run lives in its own folder.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

_STATE = {"debug": False}


def _version(value: bool):
    if value:
        typer.echo(f"vaecli {vaecli.__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[Optional[bool], typer.Option("--version", callback=_version, is_eager=True,
                                                    help="Print the version and exit.")] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show Python tracebacks on errors.")] = False,
):
    _STATE["debug"] = debug


def _quiet_libraries() -> None:
    # TensorFlow (used only to prepare TFDS data) and absl are chatty on import.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import logging

    logging.getLogger("absl").setLevel(logging.ERROR)  # Orbax logs routine notes as warnings
    logging.getLogger("jax._src.xla_bridge").setLevel(logging.ERROR)
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s")


def _run(fn):
    """Call fn(); turn library errors into one line and an exit code."""
    from vaecli.errors import Interrupted, VaeError

    _quiet_libraries()
    try:
        return fn()
    except Interrupted as e:
        typer.secho(f"interrupted: {e}", err=True, fg=typer.colors.YELLOW)
        raise typer.Exit(e.exit_code)
    except VaeError as e:
        if _STATE["debug"]:
            raise
        typer.secho(f"error: {e}", err=True, fg=typer.colors.RED)
        raise typer.Exit(e.exit_code)
    except KeyboardInterrupt:
        if _STATE["debug"]:
            raise
        typer.secho("interrupted", err=True, fg=typer.colors.RED)
        raise typer.Exit(130)


StepOpt = Annotated[str, typer.Option("--step", help="Checkpoint step: a number or 'latest'.")]


@app.command()
def train(
    config: Annotated[Path, typer.Option("--config", "-c", help="YAML config file.")],
    set_: Annotated[Optional[list[str]], typer.Option(
        "--set", help="Override a config key: --set optim.lr=3e-4 (repeatable; values are YAML).")] = None,
    name: Annotated[Optional[str], typer.Option(help="Run name (default: the config file's stem).")] = None,
    runs_dir: Annotated[Path, typer.Option("--runs-dir", help="Where run folders are created.")] = Path("runs"),
):
    """Train a VAE; prints the run folder on stdout when done."""

    def go():
        from vaecli import config as config_lib

        cfg = config_lib.load(config, set_ or [])  # config errors come before JAX is imported
        from vaecli.train import train as train_fn

        path = train_fn(cfg, runs_dir, name or config.stem, argv=sys.argv, progress=cfg.log.progress)
        typer.echo(str(path))

    _run(go)


@app.command()
def sample(
    run: Annotated[Path, typer.Argument(help="Run folder written by `vae train`.")],
    n: Annotated[int, typer.Option("--n", help="Number of samples.")] = 64,
    seed: Annotated[int, typer.Option(help="Seed of the prior draws.")] = 0,
    step: StepOpt = "latest",
    out: Annotated[Optional[Path], typer.Option(help="Output folder (default: RUN/samples).")] = None,
):
    """Decode samples from the prior: a PNG grid and the .npy array of mean images."""

    def go():
        from vaecli.sample import sample as sample_fn

        res = sample_fn(run, n=n, seed=seed, step=step, out=out)
        typer.echo(res["png"])
        typer.echo(res["npy"])

    _run(go)


@app.command("eval-elbo")
def eval_elbo(
    run: Annotated[Path, typer.Argument(help="Run folder written by `vae train`.")],
    split: Annotated[str, typer.Option(help="train, validation or test.")] = "test",
    samples: Annotated[int, typer.Option("--samples", "-k", help="K importance samples per example.")] = 1000,
    step: StepOpt = "latest",
    seed: Annotated[int, typer.Option(help="Seed of the importance samples.")] = 0,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Examples per compiled batch.")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout, nothing else.")] = False,
):
    """ELBO, reconstruction, KL and the K-sample importance-sampled log p(x) on a split."""

    def go():
        from vaecli.evaluate import evaluate

        res = evaluate(run, split=split, samples=samples, step=step, seed=seed, batch_size=batch_size)
        if as_json:
            typer.echo(json.dumps(res, indent=2))
            return
        p = res["protocol"]
        typer.echo(f"{p['dataset']} {split} ({p['num_examples']} images), step {p['checkpoint_step']}, "
                   f"K={samples}, seed {seed}")
        rows = [("ELBO", res["elbo"]), ("  reconstruction −E[log p(x|z)]", res["recon"]), ("  KL(q‖p)", res["kl"]),
                (f"log p(x) (K={samples})", res["log_likelihood"]),
                ("  standard error", res["log_likelihood_stderr"]), ("NLL", res["nll"]),
                ("bits/dim", res["bits_per_dim"])]
        for label, value in rows:
            typer.echo(f"  {label:<34} {'n/a' if value is None else format(value, '.3f'):>10}")
        for note in res.get("notes", []):
            typer.echo(f"  note: {note}")
        typer.echo(f"  {'time (after compile)':<34} {res['timing']['eval_s']:>9.2f}s")
        typer.echo(f"written to {res['written_to']}")

    _run(go)


if __name__ == "__main__":
    app()
