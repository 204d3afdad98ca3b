"""`vaecli.train`: `vae train` from a script, through the command's own library call
(vaecli.training.launch.train_command), so it makes the same run folders. No JAX at import:
a bad config is reported before JAX is imported, as on the command line.

(`vaecli.evaluate` needs no wrapper: it is vaecli.evaluation.elbo.evaluate itself.)
"""
from __future__ import annotations

from pathlib import Path

from vaecli.errors import Paused, UsageError


def train(config: str | Path | None = None, overrides: list[str] = (), *, name: str | None = None,
          runs_dir: str | Path | None = None, resume: str | Path | None = None, seeds: str | None = None,
          sweeps: list[str] = (), max_replicas: int = 64, time_limit: str | None = None,
          progress: str | bool = "auto") -> Path | list[Path]:
    """Train as `vae train` does with these arguments; return the run folder (a list of them
    with `seeds` or `sweeps`).

    `config`: the YAML file; `overrides`: `--set` values, e.g. ["train.epochs=2"]; `name`
    (default: the file's stem) and `runs_dir` (default: runs) place the folder; `resume`:
    continue that run folder instead (then only `overrides` the run allows, and a run with
    nothing left to train is returned as it is); `seeds` ("0-7") and `sweeps`
    (["optim.lr=1e-3,3e-4"]): replicas of one compiled program; `time_limit` ("2h"): stop
    at the last epoch boundary that fits, then raise `vaecli.Paused` (its `paths`: the run
    folders, to resume). Errors are the VaeError subclasses `vae train` reports; JAX's
    persistent compile cache is the caller's choice (vaecli.compiled.cache.enable).
    `progress`: what stderr shows of a dataset prepared on first use (vaecli.progress: "auto"
    lines, or a bar on a terminal; False nothing); the epochs follow the config's log.progress.
    """
    from vaecli import progress as progress_lib
    from vaecli.training.launch import train_command

    overrides, sweeps = _strings("overrides", overrides), _strings("sweeps", sweeps)
    with progress_lib.reporting(progress):
        result = train_command(config=None if config is None else Path(config), overrides=overrides, name=name,
                               runs_dir=None if runs_dir is None else Path(runs_dir),
                               resume=None if resume is None else Path(resume), seeds=seeds, sweeps=sweeps,
                               max_replicas=max_replicas, argv=_argv(config, overrides, name, runs_dir, resume,
                                                                      seeds, sweeps, time_limit),
                               time_limit=time_limit)
    if result.exit_code:  # paused by the time limit: not finished, and a script must not mistake it
        raise Paused((result.notice or "").removeprefix("paused: "), result.paths)
    return list(result.paths) if seeds or sweeps else result.paths[0]


def _strings(name: str, values) -> list[str]:
    if isinstance(values, str) or not all(isinstance(v, str) for v in values):
        raise UsageError(f"{name}: expected a list of KEY=VALUE strings, e.g. ['train.epochs=2'], got {values!r}")
    return list(values)


def _argv(config, overrides, name, runs_dir, resume, seeds, sweeps, time_limit) -> list[str]:
    """What meta.json records as the command: the `vae train` line these arguments spell,
    marked as a Python call."""
    argv = ["vaecli.train"]
    for flag, value in (("--config", config), ("--name", name), ("--runs-dir", runs_dir), ("--resume", resume),
                        ("--seeds", seeds), ("--time-limit", time_limit)):
        if value is not None:
            argv += [flag, str(value)]
    argv += [a for o in overrides for a in ("--set", o)] + [a for s in sweeps for a in ("--sweep", s)]
    return argv
