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
