"""The policy of a program's replica slots at each epoch boundary.

One compiled program advances several replicas at once (--seeds, --sweep, the trials of
`vae tune`); each slot has its occupant, a run (vaecli.training.occupants). By default
every replica trains its `train.epochs` and stops; `vae tune` (vaecli.tune) refills finished
and pruned slots with new trials, in place, without recompiling.
"""
from __future__ import annotations

from vaecli.rundir import layout
from vaecli.rundir.recorder import Recorder
from vaecli.training.records import Start

Refills = dict[int, tuple[layout.Run, Start]]  # slot -> its new occupant's run and start


class Slots:
    """Per-epoch control of a program's replica slots. This default lets every replica train
    its `train.epochs` and stop.

    Each slot's slice of the state carries its own step counter, so a slot's epoch is its
    step // steps-per-epoch: a new occupant starting at step 0 draws exactly the numbers of
    a fresh single run of its config."""

    failures_are_results = False  # True: a failed (non-finite) replica does not fail the command
    total_epochs: int | None = None  # the progress bar's length (None: train.epochs)

    def after_epoch(self, recs: list[Recorder], epoch: int) -> Refills:
        """Called at each epoch boundary once every replica is logged, validated, saved, and
        those at `train.epochs` completed. It may end active replicas (`rec.end(status)`) and
        return new occupants for slots whose recorder is no longer active: {slot: (run, start)}.
        The loop ends when no slot is active. After an epoch at which no slot validated, saved,
        failed or ended (`Occupants.quiet`) it is called while the next epoch runs, and must
        return no occupants."""
        return {}
