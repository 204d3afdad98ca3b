"""`vae runs`: one table over many run folders."""
from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from vaecli.cli.app import app
from vaecli.cli.process import echo, run as _run


class TableFormat(str, enum.Enum):
    table = "table"
    csv = "csv"
    json = "json"


@app.command("runs")
def runs_table(
    folder: Annotated[Path, typer.Argument(help="Folder searched (recursively) for run folders.")] = Path("runs"),
    sort: Annotated[Optional[str], typer.Option(
        help="Sort by a column or a dotted config key (numbers numerically; missing values last).")] = None,
    reverse: Annotated[bool, typer.Option("--reverse", help="Sort in descending order.")] = False,
    filter_: Annotated[Optional[list[str]], typer.Option(
        "--filter", help="Keep runs whose column or config key equals a YAML value: --filter optim.lr=3e-4, "
                         "--filter status=completed, --filter 'name=tiny-*' (repeatable: all must hold).")] = None,
    group_by: Annotated[Optional[str], typer.Option(
        "--group-by", help="One row per group of runs with equal values of these keys (comma-separated): "
                           "count, and mean ± standard deviation of the numeric columns.")] = None,
    fmt: Annotated[TableFormat, typer.Option("--format", help="Output: aligned text, CSV, or one JSON list.")] = TableFormat.table,
    as_json: Annotated[bool, typer.Option("--json", help="The same as --format json.")] = False,
):
    """Compare runs: one row per run folder under FOLDER (or per group of runs).

    Columns: name, status, the config keys that differ between the listed runs, epochs,
    best validation ELBO, the latest test log p(x) with its K, wall time."""

    def go():
        from vaecli.rundir import table, table_format

        columns, rows = table.table(folder, sort=sort, reverse=reverse, filters=filter_ or [], group_by=group_by)
        form = TableFormat.json if as_json else fmt
        if not rows and form is TableFormat.table:
            typer.echo(f"no runs under {folder}" + (" match the filters" if filter_ else ""), err=True)
            return
        echo(table_format.render(columns, rows, form.value, grouped=group_by is not None))

    _run(go)
