"""Typed exceptions of the library. The CLI maps each to one line and an exit code."""
import errno
import os


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


class ResourceError(VaeError):
    """A program needs more memory than its devices have (exit 1)."""


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


class OutOfTime(VaeError):
    """A computation given a deadline stopped because it could not finish by then; what it
    had not finished was not written (exit 3, as a paused training: call again with more time)."""

    exit_code = 3


class StorageError(VaeError):
    """A file or folder could not be written or read: no space, a read-only filesystem, no
    permission, a quota, a file size limit, or it was removed while the command ran (exit 1)."""


# What to do about each cause; the message names the path and the cause before it.
_ADVICE = {
    errno.ENOSPC: "free space on that filesystem",
    errno.EDQUOT: "free space or ask for a larger disk quota",
    errno.EROFS: "that filesystem is mounted read-only",
    errno.EACCES: "check its permissions",
    errno.EPERM: "check its permissions",
    errno.ENOENT: "it (or its folder) was removed or never existed: check the path",
    errno.EFBIG: "a file size limit was reached (ulimit -f): raise it",
    errno.EIO: "the disk reported an I/O error: check it",
}


def os_cause(err: int | None, strerror: str | None = None) -> str:
    """'No space left on device' (ENOSPC): the system's words and the errno's name."""
    name = errno.errorcode.get(err) if err is not None else None
    text = strerror or (os.strerror(err) if err is not None else "input/output error")
    return f"{text} ({name})" if name else text


def os_advice(err: int | None) -> str:
    return _ADVICE.get(err, "check the disk and that path")


def storage_error(e: OSError, what=None, then: str = "", verb: str | None = "write") -> StorageError:
    """One line for an OSError: `cannot write PATH: cause; what to do[; then]`. `what`
    names the file when the error does not (or names a temporary one); `verb=None` when
    it is not known whether the path was being read or written."""
    path = what if what is not None else (e.filename2 or e.filename or "a file")
    head = f"cannot {verb} {path}" if verb else str(path)
    line = f"{head}: {os_cause(e.errno, e.strerror)}; {os_advice(e.errno)}"
    if not then and e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):  # no command-specific way out
        line += ": write elsewhere" if e.errno == errno.EROFS else ", or write elsewhere"
    return StorageError(line + (f"; {then}" if then else ""))


class Paused(VaeError):
    """Training stopped at its time limit (`train.time_limit`) after saving a checkpoint:
    not a failure; `vae train` prints the run folders and exits 3 (`vaecli.training.stops.EXIT_PAUSED`)
    so a requeue script can tell "continue me" from done (0) and failed (1)."""

    exit_code = 3

    def __init__(self, message: str, paths: list):
        super().__init__(message)
        self.paths = list(paths)
