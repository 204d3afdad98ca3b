"""A checkpoint under evaluation: how every command that evaluates a trained run (eval-elbo,
sample, grad-snr, eval-disentanglement) and `vaecli.load` open it.

`open_checkpoint` reads the run folder (layout.open_run: RunError for a folder that is no
run) and decides which parameters are evaluated: the run's EMA where it trained one, unless
the raw ones are asked for (state.params_kind). The chosen checkpoint is restored
(restore.load_state: `--step` latest, best or a number; none named: the run's default) on
`restore()` or the first use of `fn`, `state`, `params` or `step`, so a command checks what
it can of the run before that slow step. The object names what the command writes
(names.Output: the step, the options, `-raw` for raw parameters of a run with EMA) in `out`
or the run's own folder for the kind, and writes it atomically (vaecli.files).

A new evaluation command is: open the checkpoint, compute with `fn` and `params`, write
through `output` and `write_json` / `write_array`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from vaecli import files
from vaecli.compiled import state as state_lib
from vaecli.errors import storage_error
from vaecli.rundir import layout, restore
from vaecli.rundir.names import Output, marks_raw


def open_checkpoint(run: str | Path | layout.Run, step: str | int | None = None, raw_params: bool = False,
                    out: str | Path | None = None) -> "EvaluatedCheckpoint":
    """The run folder `run` (a path, or a Run already opened) at the checkpoint `step`
    ('latest', 'best', a step number; None: the run's default), its EMA parameters unless
    `raw_params`; its outputs go into `out` (None: the run folder's eval/, samples/...)."""
    opened = run if isinstance(run, layout.Run) else layout.open_run(run)
    return EvaluatedCheckpoint(opened, step, state_lib.params_kind(opened.config, raw_params), out)


class EvaluatedCheckpoint:
    """One run at one checkpoint, its parameters chosen (`params_kind`: "ema" or "raw")."""

    def __init__(self, run: layout.Run, step: str | int | None, params_kind: str, out: str | Path | None):
        self.run, self.params_kind = run, params_kind
        self.out = Path(out) if out is not None else None
        self._asked = step
        self._restored = None

    @property
    def config(self):
        return self.run.config

    @property
    def path(self) -> Path:
        return self.run.path

    @property
    def image_shape(self) -> tuple[int, ...]:
        return self.run.image_shape

    @property
    def raw(self) -> bool:
        """Whether the outputs are named `-raw` (the raw parameters of a run that has EMA ones)."""
        return marks_raw(self.config, self.params_kind)

    def restore(self) -> "EvaluatedCheckpoint":
        """Restore the chosen checkpoint (once); RunError / UsageError for a step the run lacks."""
        if self._restored is None:
            self._restored = restore.load_state(self.config, self.image_shape, self.run.checkpoint_dir, self._asked,
                                                raw_params=self.params_kind == "raw")
        return self

    @property
    def fn(self):
        """The model's Functional (vaecli.models.vae), to bind to `params`."""
        return self.restore()._restored[0]

    @property
    def state(self) -> dict:
        """The restored state; its "params" are the ones evaluated (the EMA where chosen)."""
        return self.restore()._restored[1]

    @property
    def params(self):
        return self.state["params"]

    @property
    def step(self) -> int:
        """The step of the checkpoint restored (what `--step` named)."""
        return self.restore()._restored[2]

    def name(self, kind: str, **options) -> Output:
        """The name of this checkpoint's `kind` output with `options` (names.Output's fields)."""
        return Output(kind, self.step, raw=self.raw, **options)

    def output(self, kind: str | Output, ext: str | None = None, **options) -> Path:
        """Where this checkpoint's `kind` output with `options` (or the Output `kind`, from
        `name`) goes, as `ext` (default: the kind's first extension)."""
        name = kind if isinstance(kind, Output) else self.name(kind, **options)
        return self.run.output(name, ext, self.out)

    def write_json(self, target: Path, doc: dict, then: str) -> dict:
        """Write `doc` to `target` atomically (its folder made): {"written_to": target}, or
        {"not_saved": the line saying why it could not be, ending with `then`, how else to keep it}."""
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            files.write_json(target, doc)
        except OSError as e:
            return {"not_saved": str(storage_error(e, target, then))}
        return {"written_to": str(target)}

    def write_array(self, target: Path, array) -> Path:
        """Write `array` to `target` as .npy atomically (its folder made); OSError as it comes."""
        return self.write_with(target, lambda f: np.save(f, array))

    @staticmethod
    def write_with(target: Path, write: Callable) -> Path:
        """Replace `target` atomically by what `write(f)` writes into a binary file (its folder
        made); OSError as it comes. For outputs no other writer here covers."""
        target.parent.mkdir(parents=True, exist_ok=True)
        return files.write_with(target, write)
