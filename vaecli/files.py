"""One atomic write for every file vaecli keeps: readers (and a later resume) see the old
file or the new one, never half of one, whenever the writer is killed. And where vaecli's
caches live (`cache_home`).

The bytes go to a hidden temporary file beside the target, which `os.replace` then puts
in its place in one step (no fsync: a crash of the machine itself may lose the newest
version, never leave a torn one).
"""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import IO, Callable


def write_with(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Atomically replace `path` by what `write(f)` writes into the binary file `f`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except OSError as e:  # a full disk, a read-only folder...: the old file stays
        if e.errno is None:
            raise
        raise OSError(e.errno, e.strerror, str(path)) from e  # name the file, not the temporary one
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
    return path


def write_bytes(path: str | Path, data: bytes) -> Path:
    return write_with(path, lambda f: f.write(data))


def write_text(path: str | Path, text: str) -> Path:
    return write_bytes(path, text.encode())


def write_json(path: str | Path, obj, indent: int | None = 2) -> Path:
    """`obj` as JSON (values JSON cannot hold written as their str), ending in a newline."""
    return write_text(path, json.dumps(obj, indent=indent, default=str) + "\n")


def cache_home() -> Path:
    """vaecli's caches (compiled programs, prepared datasets) live under this folder:
    $XDG_CACHE_HOME/vaecli, else ~/.cache/vaecli (the XDG base-directory rule, which ignores
    a relative XDG_CACHE_HOME)."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    return (Path(base) if os.path.isabs(base) else Path.home() / ".cache") / "vaecli"
