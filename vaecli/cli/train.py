"""`vae train` and `vae tune`: new runs, resumed runs, replicas, searches."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from vaecli.cli.app import JsonOpt, app, complete_set
from vaecli.cli.process import echo, run as _run, use_compile_cache as _use_compile_cache
from vaecli.config import REPLICA_KEYS, RESUMABLE, summarize

# A constant, not an f-string in the annotation: Typer evaluates the annotations each time it
# builds the command line, and the summary walks the whole schema.
RESUME_HELP = ("Continue this run folder from its latest checkpoint, with its own config.yaml "
               f"(--set may change only {summarize(RESUMABLE)}).")


def _report(paths, distributed: bool, as_json: bool) -> None:
    """The run folders on stdout (or one JSON document), from process 0 of a job only."""
    if distributed:
        from vaecli.compiled import devices

        if not devices.is_primary():
            return
    if as_json:
        from vaecli.rundir.layout import Folder

        summaries = [{"run": str(p), "summary": Folder(p).summary() or {}} for p in paths]
        echo(json.dumps({"runs": summaries}, indent=2))
    else:
        for p in paths:
            echo(str(p))


def _data_obtainable(config: Path, overrides: list[str], name: str, runs_dir: Optional[Path], seeds: Optional[str],
                     sweeps: list[str], max_replicas: int) -> None:
    """A dataset that is neither cached nor obtainable (offline, no data.manual_dir), refused
    before JAX and TensorFlow are imported (half a minute on a busy CPU), after every mistake
    the command reports first (the config, --seeds/--sweep, trackers, --name, --runs-dir):
    those are left to the command itself, which reports them as always."""
    from vaecli import config as config_lib, data
    from vaecli.errors import VaeError
    from vaecli.rundir import layout, trackers
    from vaecli.training import replicas

    try:
        raw = config_lib.apply_overrides(config_lib.read_yaml(config), overrides)
        configs = [cfg for group in replicas.programs(raw, seeds, sweeps, name, max_replicas) for _, cfg in group]
        for cfg in configs:
            trackers.check(cfg)
        layout.check_target(runs_dir or layout.DEFAULT_RUNS_DIR, name)
    except VaeError:
        return
    data.check_obtainable(configs[0].data)


@app.command()
def train(
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="YAML config file.")] = None,
    set_: Annotated[Optional[list[str]], typer.Option(
        "--set", help="Override a config key: --set optim.lr=3e-4 (repeatable; values are YAML).",
        autocompletion=complete_set)] = None,
    name: Annotated[Optional[str], typer.Option(help="Run name (default: the config file's stem).")] = None,
    runs_dir: Annotated[Optional[Path], typer.Option("--runs-dir", help="Where run folders are created (default: runs).")] = None,
    resume: Annotated[Optional[Path], typer.Option(
        "--resume", help=RESUME_HELP)] = None,
    time_limit: Annotated[Optional[str], typer.Option(
        "--time-limit", metavar="DURATION",
        help="Stop at the last epoch boundary that fits in DURATION (9m30s, 2h, 90s; counted from the start of the "
             "process), save a checkpoint, mark the run 'paused' and exit 3; --resume continues it. "
             "Same as --set train.time_limit=DURATION.")] = None,
    seeds: Annotated[Optional[str], typer.Option(
        "--seeds", help="Train these seeds as replicas of one compiled program: 0-7, 1,3,5.")] = None,
    sweep: Annotated[Optional[list[str]], typer.Option(
        "--sweep", help="Replicas over values: --sweep optim.lr=1e-3,3e-4 (repeatable, cartesian product; "
                        f"{', '.join(REPLICA_KEYS)}).")] = None,
    max_replicas: Annotated[int, typer.Option(
        "--max-replicas-per-program", help="Split the replicas into programs of at most this many.")] = 64,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document (run folders and their "
                                                          "summaries) on stdout, nothing else.")] = False,
    distributed: Annotated[bool, typer.Option(
        "--distributed", help="Join a multi-process job (jax.distributed: Slurm/Open MPI/TPU detected, or "
                              "VAECLI_COORDINATOR, VAECLI_NUM_PROCESSES, VAECLI_PROCESS_ID); process 0 writes.")] = False,
):
    """Train a VAE (or resume one); prints the run folder(s) on stdout when done."""

    def go():
        if config is not None and resume is None:
            _data_obtainable(config, set_ or [], name or config.stem, runs_dir, seeds, sweep or [], max_replicas)
        if distributed:
            from vaecli.compiled import devices

            devices.distributed_init()  # before any other JAX call
        from vaecli import clock
        from vaecli.training.launch import train_command

        started = clock.now() - clock.process_age()  # --time-limit counts the whole command
        result = train_command(config=config, overrides=set_ or [], name=name, runs_dir=runs_dir, resume=resume,
                               seeds=seeds, sweeps=sweep or [], max_replicas=max_replicas, argv=sys.argv,
                               time_limit=time_limit, clock_start=started, before_compute=_use_compile_cache)
        if result.notice:
            typer.secho(result.notice, err=True, fg=typer.colors.YELLOW if result.exit_code else None)
        _report(result.paths, distributed, as_json)
        if result.exit_code:
            raise typer.Exit(result.exit_code)  # 3: paused by --time-limit (vaecli.training.stops.EXIT_PAUSED)

    _run(go)


@app.command()
def tune(
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="YAML config file of every trial.")] = None,
    space: Annotated[Optional[list[str]], typer.Option(
        "--space", help="A searched key (repeatable): KEY=log:LOW:HIGH (log-uniform), KEY=LOW:HIGH (uniform; "
                        f"integers for an integer key), KEY=a,b,c (one of). Keys: {', '.join(REPLICA_KEYS)}.")] = None,
    set_: Annotated[Optional[list[str]], typer.Option(
        "--set", help="Override a config key of every trial: --set train.epochs=3 (repeatable).")] = None,
    trials: Annotated[Optional[int], typer.Option(
        "--trials", help="Trials in the study (default 16; with --resume: raise the budget).")] = None,
    replicas: Annotated[int, typer.Option(
        "--replicas", help="Trials trained at once, as replicas of one compiled program.")] = 8,
    pruner: Annotated[Optional[str], typer.Option(
        "--pruner", help="Optuna pruner judging trials at each validation: median, halving or none (default: median; "
                         "none with a sample objective).")] = None,
    objective: Annotated[Optional[str], typer.Option(
        "--objective", help="What a trial is judged by: elbo (its validation ELBO, maximised; the default), or fid or kid "
                            "(its prior samples against the validation split, minimised; needs --features).")] = None,
    features: Annotated[Optional[Path], typer.Option(
        "--features", help="With --objective fid/kid: the feature file from `vae train-features`.")] = None,
    objective_n: Annotated[Optional[int], typer.Option(
        "--objective-n", help="With --objective fid/kid: prior samples, and validation images, per trial "
                              "(default: the validation split's size, at most 2000).")] = None,
    name: Annotated[Optional[str], typer.Option(help="Study name (default: <config stem>-tune).")] = None,
    runs_dir: Annotated[Optional[Path], typer.Option("--runs-dir", help="Where the study folder is created "
                                                                        "(default: runs).")] = None,
    resume: Annotated[Optional[Path], typer.Option(
        "--resume", help="Continue this study folder, or join it as one more worker while others run it: "
                         "trials left by stopped workers go on from their checkpoints, none is run twice.")] = None,
    storage: Annotated[Optional[str], typer.Option(
        "--storage", help="Where a new study's trials are recorded, shared by its workers: journal (the study "
                          "folder's journal file, default) or a database URL: sqlite:///study.db, "
                          "postgresql://user@host/db, mysql+pymysql://user@host/db.")] = None,
    as_json: JsonOpt = False,
):
    """Search hyperparameters with Optuna; trials train side by side in one compiled program.
    Prints the study folder (summary.json, search.png, trials/ of ordinary run folders)."""

    def go():
        from vaecli.tune.launch import tune_command

        summary = tune_command(config=config, overrides=set_ or [], spaces=space or [], trials=trials,
                               replicas=replicas, pruner=pruner, name=name, runs_dir=runs_dir, resume=resume,
                               storage=storage, objective=objective, features=features, objective_n=objective_n,
                               argv=sys.argv, before_compute=_use_compile_cache)
        if as_json:
            echo(json.dumps(summary, indent=2))
            return
        best = summary.get("best")
        if best:
            params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in best["params"].items())
            judged = summary["objective"]["name"]
            shown = (f"validation ELBO {best['validation_elbo']:.2f}" if judged == "elbo" else
                     f"{judged.upper()} {best[judged]:.4g} (validation split)")
            typer.echo(f"best: trial {best['trial']} {shown} ({params})", err=True)
        echo(summary["study"])

    _run(go)
