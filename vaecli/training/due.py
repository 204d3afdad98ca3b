"""What is due at the end of an epoch, by one rule.

An action set to run every `n` epochs (validation and its pictures: `eval.every_epochs`;
a checkpoint save: `checkpoint.every_epochs`) is due at each multiple of `n` of a run's own
epoch count, and at its last epoch (`train.epochs`) whatever `n` is; the run's end is the
action with no period. Every epoch logs its training record. The rule is asked both before
the bookkeeping (may the log point of this epoch wait for the next one?) and in it (what
does each slot do?), so the two can never disagree.

Not on this schedule, because they are events rather than epochs: a signal (save, then
stop), early stopping (save the new best, end), a non-finite step (fail), and the time limit
(vaecli.training.stops.TimeBudget: a pause before an epoch that would not fit).
"""
from __future__ import annotations

from typing import NamedTuple

from vaecli.config import Config


def itstime(epoch: int, every: int | None, last: int) -> bool:
    """Whether an action run every `every` epochs (None: only at the end) is due after
    `epoch`, in a run of `last` epochs. Past `last` counts as the end (a run resumed
    with fewer `train.epochs` ends at once)."""
    return epoch >= last or (every is not None and epoch % every == 0)


class Due(NamedTuple):
    """What a slot does at the end of one of its epochs, by the schedule alone."""
    validate: bool
    pictures: bool  # drawn from the parameters validated, so with each validation
    save: bool
    end: bool

    @classmethod
    def at(cls, cfg: Config, epoch: int) -> Due:
        last = cfg.train.epochs
        validate = itstime(epoch, cfg.eval.every_epochs, last)
        return cls(validate=validate, pictures=validate, save=itstime(epoch, cfg.checkpoint.every_epochs, last),
                   end=itstime(epoch, None, last))
