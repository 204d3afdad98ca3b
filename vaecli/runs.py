"""The run folder: the contract between `vae train`, `vae sample` and `vae eval-elbo`.

    runs/<name>-<UTC timestamp>/
      config.yaml      resolved config (overrides applied), written before step 0
      meta.json        versions, devices, argv, start time, data shapes
      metrics.jsonl    one JSON object per log point
      events.*         TensorBoard scalars (same numbers as metrics.jsonl)
      checkpoints/     Orbax checkpoints, one folder per step
      samples/         PNG grids written at each evaluation
      eval/            one JSON per `vae eval-elbo` protocol
      summary.json     status, final metrics, timings
"""
from __future__ import annotations

import datetime as dt
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from vaecli import config as config_lib
from vaecli.errors import ConfigError, RunError, UsageError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def write_json(path: Path, obj) -> None:
    """Write JSON atomically: readers see the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    os.replace(tmp, path)


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
    base = f"{name}-{utc_now():%Y%m%dT%H%M%SZ}"
    for i in range(1, 1000):
        path = root / (base if i == 1 else f"{base}-{i}")
        try:
            path.mkdir()  # atomic: two processes can never get the same folder
            return path
        except FileExistsError:
            continue
    raise RunError(f"could not create a run folder under {root}")


@dataclass(frozen=True)
class Run:
    path: Path
    config: config_lib.Config
    meta: dict

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.meta["data"]["image_shape"])


def write_start(path: Path, cfg: config_lib.Config, meta: dict) -> Run:
    (path / "config.yaml").write_text(config_lib.dump_yaml(cfg))
    write_json(path / "meta.json", meta)
    return Run(path, cfg, meta)


def open_run(path: str | Path) -> Run:
    """A run folder written by `vae train`, or RunError saying what is wrong with it."""
    p = Path(path)
    if not p.exists():
        raise RunError(f"run folder not found: {p}")
    if not p.is_dir() or not (p / "config.yaml").is_file() or not (p / "meta.json").is_file():
        raise RunError(f"{p} is not a run folder (it has no config.yaml and meta.json written by vae train)")
    try:
        cfg = config_lib.load(p / "config.yaml")
    except ConfigError as e:
        raise RunError(f"{p}/config.yaml is not a valid vaecli config: {e}") from None
    try:
        meta = json.loads((p / "meta.json").read_text())
        meta["data"]["image_shape"]
    except (ValueError, KeyError, TypeError) as e:
        raise RunError(f"{p}/meta.json is damaged ({e.__class__.__name__}: {e})") from None
    return Run(p, cfg, meta)


def environment_meta(argv: list[str]) -> dict:
    import flax
    import jax
    import optax
    import orbax.checkpoint

    import vaecli

    return {
        "vaecli_version": vaecli.__version__,
        "versions": {"jax": jax.__version__, "flax": flax.__version__, "optax": optax.__version__,
                     "orbax_checkpoint": getattr(orbax.checkpoint, "__version__", "?")},
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "argv": list(argv),
        "start_time": utc_now().isoformat(timespec="seconds"),
    }
