"""`vae train`'s arguments -> the runs to train: the one library call behind the command;
and the run `vae train-prior` fits a code prior to.

No JAX at import: bad arguments and bad configs are reported before the trainer
(vaecli.training.start, vaecli.training.prior) is imported.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from vaecli import clock, config as config_lib
from vaecli.errors import AlreadyDone, Paused, RunError, UsageError
from vaecli.rundir import trackers
from vaecli.rundir.layout import DEFAULT_RUNS_DIR, Run, open_run
from vaecli.training import replicas


@dataclass
class Result:
    paths: list[Path]
    notice: str | None = None  # e.g. "nothing to do: ..." for a completed run
    exit_code: int = 0  # 3 (vaecli.training.stops.EXIT_PAUSED) when train.time_limit paused the runs


def train_command(*, config: Path | None = None, overrides: list[str] = (), name: str | None = None,
                  runs_dir: Path | None = None, resume: Path | None = None, seeds: str | None = None,
                  sweeps: list[str] = (), max_replicas: int = 64, argv: list[str] = (),
                  time_limit: str | None = None, clock_start: float | None = None,
                  before_compute=lambda: None) -> Result:
    """What `vae train` does with its arguments: a new run, the replicas of --seeds/--sweep
    (in programs of at most `max_replicas`), or a resumed run. Config errors come before
    JAX is imported; `before_compute()` is called between the two (the CLI turns on JAX's
    compile cache there). `time_limit` (--time-limit) is `train.time_limit`, counted from
    `clock_start` (a `clock.now()` reading; default: this call); a run it pauses gives
    `exit_code` 3 and a notice, and later programs of --seeds/--sweep are not started."""
    clock_start = clock.now() if clock_start is None else clock_start
    if time_limit is not None:
        overrides = [*overrides, f"train.time_limit={json.dumps(str(time_limit))}"]
    if resume is not None:
        if config is not None or name is not None or runs_dir is not None or seeds or sweeps:
            raise UsageError("--resume RUN uses the run's own config.yaml and folder: drop --config, --name, "
                             "--runs-dir, --seeds and --sweep (change allowed keys with --set)")
        before_compute()
        from vaecli.training.resume import resume_run

        try:
            return Result([resume_run(resume, list(overrides), argv=list(argv), clock_start=clock_start)])
        except AlreadyDone as e:
            return Result([Path(resume)], notice=f"nothing to do: {e}")
        except Paused as e:
            return Result(e.paths, notice=f"paused: {e}", exit_code=e.exit_code)
    if config is None:
        raise UsageError("give --config FILE for a new run, or --resume RUN to continue one")
    raw = config_lib.apply_overrides(config_lib.read_yaml(config), list(overrides))
    groups = replicas.programs(raw, seeds, list(sweeps), name or Path(config).stem, max_replicas)
    for log_cfg in {c.log: c for group in groups for _, c in group}.values():
        trackers.check(log_cfg)  # W&B/MLflow asked for but not installed, or an unreachable URI: exit 2
    before_compute()
    from vaecli.training.start import train_replicas

    paths = []
    for i, group in enumerate(groups):
        try:
            paths += train_replicas([c for _, c in group], runs_dir or DEFAULT_RUNS_DIR, [n for n, _ in group],
                                    argv=list(argv), clock_start=clock_start)
        except Paused as e:
            later = sum(len(g) for g in groups[i + 1:])
            return Result(paths + e.paths, exit_code=e.exit_code, notice=f"paused: {e}" + (
                f"; {later} more replicas (later programs) were not started" if later else ""))
    return Result(paths)


def prior_run(path: str | Path, overrides: list[str] = (), time_limit: str | None = None) -> Run:
    """The run folder `path` opened for `vae train-prior`, which refuses here, before JAX is
    imported: a time limit that is no duration, a folder that is no run, a run that is not a
    VQ-VAE, a --set key outside code_prior, and then (a runtime error, exit 1) a run with no
    complete checkpoint yet (Orbax names each complete step's folder by its number)."""
    if time_limit is not None and not clock.is_duration(time_limit):
        raise UsageError(f"--time-limit {time_limit}: not a duration; write e.g. 9m30s, 2h or 90s")
    run = open_run(path)
    if run.config.model.latent != "vq":
        raise UsageError(f"{run.path}: vae train-prior fits the code prior of a VQ-VAE (model.latent=vq); this run "
                         f"has model.latent={run.config.model.latent}, whose prior is part of the model")
    for o in overrides:
        if not o.partition("=")[0].strip().startswith("code_prior."):
            raise UsageError(f"--set {o}: vae train-prior changes only the code_prior.* keys")
    ckpts = Path(run.checkpoint_dir)
    if not (ckpts.is_dir() and any(p.name.isdigit() and p.is_dir() for p in ckpts.iterdir())):
        raise RunError(f"no checkpoint in {ckpts} (the run saved none yet; train it first)")
    return run
