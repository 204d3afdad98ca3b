"""The run folder: creating one, opening one (`open_run`: its config and meta checked), the
training lock and the environment record. What its files and folders are called, and the
names of the outputs the commands write into it, is vaecli.rundir.names (re-exported here).

`meta.json` records RUN_FORMAT: a folder written by a newer vaecli with a newer layout
is refused instead of misread.
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path

from vaecli import clock, config as config_lib
from vaecli.errors import ConfigError, RunError, UsageError
from vaecli.rundir.names import (  # noqa: F401 (re-exported: the run folder's names)
    CHECKPOINT_SUMS, CHECKPOINTS, CONFIG, EVAL, EVENTS, LOCK, META, METRICS, OUTPUT_KINDS, PLOTS, SAMPLES, SUMMARY,
    Folder, Output, is_run, marks_raw, read_json)

# Bump when the run folder layout or the checkpointed state changes. 2 (vaecli 0.2): the
# state gained the skipped-update counter and the weight-decay stage; 1 (0.1) had no field.
RUN_FORMAT = 2
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
DEFAULT_RUNS_DIR = Path("runs")


def check_target(runs_dir: str | Path, name: str) -> None:
    """UsageError unless `name` can start a run folder's name and `runs_dir` can hold one.

    Called before any data work, so these mistakes are reported at once."""
    if not _NAME.match(name):
        raise UsageError(f"--name {name!r}: use letters, digits and . _ + - (no slashes or spaces)")
    root = Path(runs_dir)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"--runs-dir {root}: cannot create it ({e.strerror})") from None
    if not os.access(root, os.W_OK):
        raise UsageError(f"--runs-dir {root}: not writable; choose another folder")


def create(runs_dir: str | Path, name: str) -> Path:
    """Make a fresh, never-shared folder `<runs_dir>/<name>-<UTC timestamp>[-N]`."""
    check_target(runs_dir, name)
    root = Path(runs_dir)
    base = f"{name}-{clock.utc_now():%Y%m%dT%H%M%SZ}"
    for i in range(1, 1000):
        path = root / (base if i == 1 else f"{base}-{i}")
        try:
            path.mkdir()  # atomic: two processes can never get the same folder
            return path
        except FileExistsError:
            continue
    raise RunError(f"could not create a run folder under {root}")


@dataclass(frozen=True)
class Run(Folder):
    """An opened run folder (`open_run`): its paths, its config.yaml and meta.json."""

    config: config_lib.Config
    meta: dict

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.meta["data"]["image_shape"])


def open_run(path: str | Path) -> Run:
    """A run folder written by `vae train`, or RunError saying what is wrong with it."""
    p = Path(path)
    if not p.exists():
        raise RunError(f"run folder not found: {p}")
    folder = Folder(p)
    if not p.is_dir() or not folder.config_file.is_file() or not folder.meta_file.is_file():
        raise RunError(f"{p} is not a run folder (it has no config.yaml and meta.json written by vae train)")
    try:
        cfg = config_lib.load(folder.config_file)
    except ConfigError as e:
        raise RunError(f"{p}/config.yaml is not a valid vaecli config: {e}") from None
    try:
        meta = json.loads(folder.meta_file.read_text())
        meta["data"]["image_shape"]
    except (ValueError, KeyError, TypeError) as e:
        raise RunError(f"{p}/meta.json is damaged ({e.__class__.__name__}: {e})") from None
    fmt = meta.get("run_format", 1)
    if not isinstance(fmt, int) or fmt > RUN_FORMAT:
        raise RunError(f"{p} was written by vaecli {meta.get('vaecli_version', '?')} (run format {fmt}); this "
                       f"vaecli {_own_version()} reads run format {RUN_FORMAT}: upgrade vaecli")
    if fmt < RUN_FORMAT:
        raise RunError(f"{p} was written by vaecli {meta.get('vaecli_version', '?')} (run format {fmt}), whose "
                       f"checkpoints this vaecli {_own_version()} (format {RUN_FORMAT}) cannot read: use "
                       f"vaecli {meta.get('vaecli_version', '?')} for it, or train it again")
    return Run(p, cfg, meta)


def _own_version() -> str:
    import vaecli

    return vaecli.__version__


class Lock:
    """`<run>/train.lock`: one training process per run folder.

    An advisory `flock` on the file, which the kernel releases when the holder exits in
    any way (`kill -9` included), so a lock left by a dead process is never mistaken for a
    live one. The file's text (pid, host, start time) only serves the error message."""

    def __init__(self, run_dir: Path):
        self.path = Folder(run_dir).lock_file
        self._fd = None

    def acquire(self) -> "Lock":
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 4096).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise RunError(f"{self.path.parent} is being trained by {holder}; wait for it to finish or stop it "
                           f"(Ctrl-C / kill PID), then resume") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since {clock.utc_now():%Y-%m-%d %H:%M:%SZ}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def environment_meta(argv: list[str]) -> dict:
    import flax
    import jax
    import optax
    import orbax.checkpoint

    import vaecli

    return {
        "vaecli_version": vaecli.__version__,
        "run_format": RUN_FORMAT,
        "versions": {"jax": jax.__version__, "flax": flax.__version__, "optax": optax.__version__,
                     "orbax_checkpoint": getattr(orbax.checkpoint, "__version__", "?")},
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "argv": list(argv),
        "start_time": clock.utc_now().isoformat(timespec="seconds"),
    }
