"""The `vae` Typer app: its top-level options and the options several commands share. The
commands are declared in the modules beside this one (train, inspect, gradients, runs,
data), one per command group.

No ML code lives here, and nothing heavy is imported at module level, so `vae --help`
answers at once. Errors: one line on stderr, exit 2 for usage/config, 1 at run time
(an I/O fault included: the path, the cause, what to do), 130 on Ctrl-C; `--debug` shows
the traceback instead.
"""
from __future__ import annotations

from typing import Annotated, Optional

import typer

import vaecli
from vaecli.cli.process import STATE

app = typer.Typer(
    help="Train, sample and evaluate variational autoencoders; every run lives in its own folder.",
    no_args_is_help=True, pretty_exceptions_enable=False)


# Shell completion (`vae --install-completion`): the shell runs `vae` on every TAB, so these
# import vaecli.cli.completion (no JAX) only when asked.
def complete_set(incomplete: str) -> list[str]:
    from vaecli.cli.completion import complete_set

    return complete_set(incomplete)


def complete_mode(incomplete: str) -> list[str]:
    from vaecli.cli.completion import complete_mode

    return complete_mode(incomplete)


def _version(value: bool):
    if value:
        typer.echo(f"vaecli {vaecli.__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[Optional[bool], typer.Option("--version", callback=_version, is_eager=True,
                                                    help="Print the version and exit.")] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show Python tracebacks on errors.")] = False,
    compile_cache: Annotated[Optional[str], typer.Option(
        "--compile-cache", envvar="VAECLI_COMPILE_CACHE", show_envvar=True, metavar="DIR|off",
        help="Folder of JAX's persistent compilation cache (default: $XDG_CACHE_HOME/vaecli/jax, "
             "i.e. ~/.cache/vaecli/jax), or 'off'.")] = None,
):
    STATE["debug"] = debug
    STATE["compile_cache"] = compile_cache


StepOpt = Annotated[Optional[str], typer.Option(
    "--step", help="Checkpoint: 'latest', 'best' (highest validation ELBO) or a step number "
                   "[default: best on a run that stopped early (train.patience), else latest].")]
RawParamsOpt = Annotated[bool, typer.Option(
    "--raw-params", help="A run trained with train.ema_decay > 0: use the raw parameters, not their EMA.")]


JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout, nothing else.")]
