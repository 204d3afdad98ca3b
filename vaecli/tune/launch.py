"""`vae tune`'s arguments -> a new study or a resumed one: the one library call behind the
command. No JAX or Optuna at import: the space and the settings are checked first."""
from __future__ import annotations

from pathlib import Path

from vaecli import config as config_lib
from vaecli.errors import UsageError
from vaecli.rundir import layout
from vaecli.rundir.layout import DEFAULT_RUNS_DIR
from vaecli.tune import space as search_space, storage as storage_lib, trial_value


def tune_command(*, config: Path | None = None, overrides: list[str] = (), spaces: list[str] = (),
                 trials: int | None = None, replicas: int = 8, pruner: str | None = None, name: str | None = None,
                 runs_dir: Path | None = None, resume: Path | None = None, storage: str | None = None,
                 objective: str | None = None, features: Path | None = None, objective_n: int | None = None,
                 argv: list[str] = (), before_compute=lambda: None) -> dict:
    """What `vae tune` does: a new study (its space checked before JAX or Optuna is
    imported) or a resumed one; returns the study's summary (with its folder). `--resume`
    of a study that another worker is running joins it: `storage` (vaecli.tune.storage)
    is how the workers share it. `objective`: what a trial is judged by (vaecli.tune.trial_value;
    `pruner` None: median for the ELBO, none for a sample metric)."""
    if resume is not None:
        if (config is not None or name is not None or runs_dir is not None or spaces or overrides or storage
                or pruner is not None or objective is not None or features is not None or objective_n is not None):
            raise UsageError("--resume STUDY continues the study with its own settings: drop --config, --set, "
                             "--space, --name, --runs-dir, --storage, --pruner, --objective, --features and "
                             "--objective-n (--trials N may raise the budget)")
        if not (Path(resume) / "study.json").is_file():
            raise UsageError(f"--resume {resume}: not a study folder (no study.json written by vae tune)")
        if trials is not None:
            search_space.check_args(trials, 1, "none")
        before_compute()
        from vaecli.tune import study

        return study.run(Path(resume), list(argv), trials=trials)
    if config is None:
        raise UsageError("give --config FILE and --space KEY=SPEC for a new study, or --resume STUDY")
    raw = config_lib.apply_overrides(config_lib.read_yaml(config), list(overrides))
    config_lib.from_dict(raw)
    objective = objective or "elbo"
    pruner = pruner or trial_value.default_pruner(objective)
    search_space.parse_all(list(spaces), raw)  # every refusal before JAX and Optuna are imported
    search_space.check_args(16 if trials is None else trials, replicas, pruner)
    trial_value.check_args(objective, features, objective_n, pruner)
    storage = storage_lib.check(storage)
    layout.check_target(runs_dir or DEFAULT_RUNS_DIR, name or f"{Path(config).stem}-tune")
    before_compute()
    from vaecli.tune import study

    study_dir = study.create(raw, list(spaces), 16 if trials is None else trials, replicas, pruner,
                            runs_dir or DEFAULT_RUNS_DIR, name or f"{Path(config).stem}-tune", list(argv), storage,
                            objective, features, objective_n)
    return study.run(study_dir, list(argv))
