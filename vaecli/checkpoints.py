"""The only module that talks to Orbax.

A checkpoint holds the whole training state (parameters, optimizer state, step, the
run's base PRNG key data) plus a small JSON record (epoch, metrics at save time). Orbax
writes each step into a temporary folder and renames it when complete, so a crash in
the middle of a save leaves no checkpoint that could be mistaken for a complete one.
"""
from __future__ import annotations

from pathlib import Path

import jax
import orbax.checkpoint as ocp

from vaecli.errors import RunError


class Checkpoints:
    """A CheckpointManager over `<run>/checkpoints`. Use as a context manager: every exit
    path waits for the asynchronous save in flight and closes the manager."""

    def __init__(self, directory: Path, keep: int | None = None, read_only: bool = False):
        self.directory = Path(directory).absolute()  # Orbax needs absolute paths
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=not read_only, read_only=read_only,
            enable_async_checkpointing=not read_only)
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()

    def steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def save(self, step: int, state, record: dict, force: bool = False) -> None:
        """Start an asynchronous save; the arrays are copied before this returns."""
        self.manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), record=ocp.args.JsonSave(record)), force=force)

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def restore(self, step: int, like):
        """The state saved at `step`, shaped like the pytree `like` (arrays or ShapeDtypeStructs)."""
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        try:
            out = self.manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), record=ocp.args.JsonRestore()))
        except Exception as e:  # Orbax raises many kinds; all mean the same to the user
            msg = " ".join(str(e).split())[:300]
            raise RunError(f"checkpoint step {step} in {self.directory} cannot be restored "
                           f"({type(e).__name__}: {msg})") from None
        return out.state, out.record
