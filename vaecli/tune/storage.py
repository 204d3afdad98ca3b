"""Where a `vae tune` study's trials are recorded, and the lock its workers take turns with.

Several `vae tune` processes (on one machine, or the tasks of a Slurm array) may work on one
study folder at once: each trains its own trials, and they share the Optuna study through its
storage, either the journal file in the study folder (the default; it locks with a symlink,
which works on NFS too) or a database URL (SQLite for one machine, PostgreSQL or MySQL for a
cluster). The study folder itself must be on a filesystem every worker sees: the trials' run
folders live there.

Which worker trains which trial is decided by the trial's run-folder lock (an flock, released
by the kernel when its holder dies in any way): a RUNNING trial whose folder is locked belongs
to a live worker and is left alone; one whose folder is free was left by a worker that stopped
or died, and the next worker to start continues it from its checkpoint. Asking Optuna for a
trial and locking its new folder happen under the study's own lock, so that no worker ever sees
a live worker's trial without its folder lock. No Optuna here at import.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from vaecli.errors import RunError, UsageError

JOURNAL, LOCK = "journal.log", "study.lock"
_SCHEMES = ("sqlite", "postgresql", "mysql")
_DRIVERS = {"postgresql": "psycopg2-binary", "mysql": "pymysql (and a URL mysql+pymysql://...)"}


def check(url: str | None) -> str:
    """`--storage` as the study keeps it: "journal", or a database URL (a relative SQLite path
    made absolute, so that workers started from other folders find the same file)."""
    if url is None or url == "journal":
        return "journal"
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.split("+")[0] not in _SCHEMES:
        raise UsageError(f"--storage {url}: expected 'journal' (the study folder's journal file) or a database URL: "
                         f"sqlite:///study.db, postgresql://user@host/db or mysql+pymysql://user@host/db")
    if scheme == "sqlite":
        if not rest.startswith("/") or rest == "/":
            raise UsageError(f"--storage {url}: a SQLite URL names a file: sqlite:///study.db (relative) "
                             f"or sqlite:////abs/path/study.db")
        return f"sqlite:///{Path(rest[1:]).expanduser().resolve()}"
    return url


def shown(url: str) -> str:
    """The URL without its password, for messages."""
    head, at, tail = url.rpartition("@")
    if not at or ":" not in head.partition("://")[2]:
        return url
    scheme, _, user = head.partition("://")
    return f"{scheme}://{user.split(':')[0]}:***@{tail}"


def open_storage(optuna, study_dir: Path, url: str):
    """The study's Optuna storage; a missing driver or an unreachable database is one line."""
    if url == "journal":
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(study_dir / JOURNAL)))
    try:
        # SQLite: wait for a lock held by another worker instead of failing at once
        kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
        return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
    except ImportError:  # Optuna's own ImportError when the URL's driver is missing
        scheme = url.partition("://")[0]
        driver = _DRIVERS.get(scheme.split("+")[0], "the driver its SQLAlchemy dialect names")
        raise UsageError(f"--storage {shown(url)}: the database driver for {scheme} is not installed; "
                         f"pip install {driver}") from None
    except Exception as e:  # noqa: BLE001 - SQLAlchemy's connection errors, whatever the driver
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RunError(f"--storage {shown(url)}: cannot open the study's database ({first}); "
                       f"check the URL, the server and its credentials") from None


@contextlib.contextmanager
def study_lock(study_dir: Path):
    """The study folder's lock, held briefly (asking for a trial, adopting left trials,
    writing the summary); a waiting worker blocks until it is free."""
    fd = os.open(Path(study_dir) / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the flock
