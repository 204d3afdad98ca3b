"""`vae train`'s arguments -> the runs to train: the one library call behind the command.

No JAX at import: bad arguments and bad configs are reported before the trainer
(vaecli.train) is imported.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vaecli import config as config_lib, sweep, trackers
from vaecli.errors import AlreadyDone, UsageError

DEFAULT_RUNS_DIR = Path("runs")


@dataclass
class Result:
    paths: list[Path]
    notice: str | None = None  # e.g. "nothing to do: ..." for a completed run


def train_command(*, config: Path | None = None, overrides: list[str] = (), name: str | None = None,
                  runs_dir: Path | None = None, resume: Path | None = None, seeds: str | None = None,
                  sweeps: list[str] = (), max_replicas: int = 64, argv: list[str] = (),
                  before_compute=lambda: None) -> Result:
    """What `vae train` does with its arguments: a new run, the replicas of --seeds/--sweep
    (in programs of at most `max_replicas`), or a resumed run. Config errors come before
    JAX is imported; `before_compute()` is called between the two (the CLI turns on JAX's
    compile cache there)."""
    if resume is not None:
        if config is not None or name is not None or runs_dir is not None or seeds or sweeps:
            raise UsageError("--resume RUN uses the run's own config.yaml and folder: drop --config, --name, "
                             "--runs-dir, --seeds and --sweep (change allowed keys with --set)")
        before_compute()
        from vaecli.train import resume_run

        try:
            return Result([resume_run(resume, list(overrides), argv=list(argv))])
        except AlreadyDone as e:
            return Result([Path(resume)], notice=f"nothing to do: {e}")
    if config is None:
        raise UsageError("give --config FILE for a new run, or --resume RUN to continue one")
    raw = config_lib.apply_overrides(config_lib.read_yaml(config), list(overrides))
    groups = sweep.programs(raw, seeds, list(sweeps), name or Path(config).stem, max_replicas)
    for log_cfg in {c.log: c for group in groups for _, c in group}.values():
        trackers.check(log_cfg)  # W&B/MLflow asked for but not installed, or an unreachable URI: exit 2
    before_compute()
    from vaecli.train import train_replicas

    paths = []
    for group in groups:
        paths += train_replicas([c for _, c in group], runs_dir or DEFAULT_RUNS_DIR, [n for n, _ in group],
                                argv=list(argv))
    return Result(paths)


