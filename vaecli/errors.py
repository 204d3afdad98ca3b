"""Typed exceptions of the library. The CLI maps each to one line and an exit code."""


class VaeError(Exception):
    """Base class: a problem the user can fix, reported without a traceback."""

    exit_code = 1


class ConfigError(VaeError):
    """Bad config file, bad override, impossible value (exit 2)."""

    exit_code = 2


class UsageError(VaeError):
    """Bad command-line arguments (exit 2)."""

    exit_code = 2


class DataError(VaeError):
    """Dataset cannot be found, prepared or read (exit 1)."""


class RunError(VaeError):
    """A run folder is missing, malformed, or lacks what the command needs (exit 1)."""


class Interrupted(VaeError):
    """Training stopped on SIGINT/SIGTERM after saving a checkpoint (exit 130 / 143)."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class AlreadyDone(VaeError):
    """`--resume` of a run that has nothing left to train: not an error (exit 0), so requeue
    scripts can always call it."""

    exit_code = 0


class Paused(VaeError):
    """Training stopped at its time limit (`train.time_limit`) after saving a checkpoint:
    not a failure; `vae train` prints the run folders and exits 3 (`vaecli.stops.EXIT_PAUSED`)
    so a requeue script can tell "continue me" from done (0) and failed (1)."""

    exit_code = 3

    def __init__(self, message: str, paths: list):
        super().__init__(message)
        self.paths = list(paths)
