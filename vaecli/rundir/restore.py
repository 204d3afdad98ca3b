"""A run's checkpoints as the commands that read them see them: which step a `--step`
names, and the state restored at a step into the template the run's config.yaml builds
(`restore_at`, the one restore: evaluation, `vaecli.load` and `vae train --resume` use it).
"""
from __future__ import annotations

from pathlib import Path

from vaecli.compiled import state as state_lib
from vaecli.config import Config
from vaecli.errors import RunError, UsageError
from vaecli.rundir.checkpoints import Checkpoints
from vaecli.rundir.names import Folder


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
    return "best" if (Folder(run_dir).summary() or {}).get("stopped_early") is True else "latest"


def restore_at(ckpts: Checkpoints, step: int, cfg: Config, image_shape, train=None):
    """(Functional, optimizer, state, record): the checkpoint at `step` restored into the
    template of `cfg`'s state, checked against its shapes. `train` (the training Split, when
    training goes on) gives a staged learning-rate schedule its epoch length. state["hyper"]
    is not checkpointed (run format 2 has none): config.yaml gives it."""
    fn, tx, like = state_lib.template_state(cfg, image_shape, train=train)
    restored, record = ckpts.restore(step, state_lib.checkpointed(like))
    return fn, tx, state_lib.with_hyper(restored, cfg), record


def load_state(cfg: Config, image_shape, checkpoint_dir: Path, step=None, raw_params: bool = False):
    """Restore (Functional, state, step, record) from a run's checkpoints for evaluation. With
    EMA on (and not `raw_params`), state["params"] holds the EMA parameters (see
    `params_kind`); `step` None: the run's `default_step`."""
    if step is None:
        step = default_step(Path(checkpoint_dir).parent)
    with Checkpoints(checkpoint_dir, read_only=True) as ckpts:
        chosen = resolve_step(ckpts, step)
        fn, _, state, record = restore_at(ckpts, chosen, cfg, image_shape)
    if state_lib.params_kind(cfg, raw_params) == "ema":
        state = {**state, "params": state["ema"]}
    return fn, state, chosen, record
