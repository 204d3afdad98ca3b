"""A run's checkpoints as the commands that read them see them: which step a `--step`
names, and the state restored at it into the shapes the run's config.yaml builds.
"""
from __future__ import annotations

from pathlib import Path

from vaecli.compiled import state as state_lib
from vaecli.config import Config
from vaecli.errors import RunError, UsageError
from vaecli.rundir.checkpoints import Checkpoints
from vaecli.rundir.layout import read_json


def resolve_step(ckpts: Checkpoints, step: str | int | None) -> int:
    """The checkpoint step `--step` names: 'latest' (None), 'best' or a step number."""
    steps = ckpts.steps()
    if not steps:
        raise RunError(f"no checkpoint in {ckpts.directory} (the run saved none yet; train it first)")
    if step is None or step == "latest":
        return steps[-1]
    if step == "best":
        best = ckpts.best_step()
        if best is None or best not in steps:
            raise RunError(f"--step best: no checkpoint carries a validation ELBO in {ckpts.directory}; "
                           f"use --step latest or one of {_list(steps)}")
        return best
    try:
        wanted = int(step)
    except (TypeError, ValueError):
        # a malformed argument is a usage error (exit 2); a well-formed step the run lacks is not
        raise UsageError(f"--step {step!r}: expected 'best', 'latest' or a step number ({_list(steps)})") from None
    if wanted not in steps:
        raise RunError(f"--step {wanted}: no checkpoint at that step (available: {_list(steps)})")
    return wanted


def _list(steps) -> str:
    return ", ".join(str(s) for s in steps)


def default_step(run_dir: Path) -> str:
    """The checkpoint a command uses when none is named: 'best' on a run that stopped early
    (the point of early stopping is the model at the best validation), else 'latest'."""
    return "best" if (read_json(Path(run_dir) / "summary.json") or {}).get("stopped_early") is True else "latest"


def load_state(cfg: Config, image_shape, checkpoint_dir: Path, step=None, raw_params: bool = False):
    """Restore (Functional, state, step, record) from a run's checkpoints. With EMA on (and
    not `raw_params`), state["params"] holds the EMA parameters (see `params_kind`); `step`
    None: the run's `default_step`."""
    if step is None:
        step = default_step(Path(checkpoint_dir).parent)
    fn, _, like = state_lib.template_state(cfg, image_shape)
    with Checkpoints(checkpoint_dir, read_only=True) as ckpts:
        chosen = resolve_step(ckpts, step)
        state, record = ckpts.restore(chosen, state_lib.checkpointed(like))
    state = state_lib.with_hyper(state, cfg)
    if state_lib.params_kind(cfg, raw_params) == "ema":
        state = {**state, "params": state["ema"]}
    return fn, state, chosen, record
