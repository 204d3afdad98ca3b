"""The only module that talks to Orbax.

A checkpoint holds the whole training state (parameters, optimizer state, step, the
run's base PRNG key data, the count of skipped updates) plus a small JSON record (epoch,
metrics at save time) and, as Orbax metrics, the validation ELBO that ranks checkpoints
for `--step best`.

Orbax writes each step into a temporary folder and renames it when complete, so a crash
(even `kill -9`) in the middle of a save leaves a `*.orbax-checkpoint-tmp-*` folder that
is never listed as a step, never loaded, and removed when the run is resumed.
"""
from __future__ import annotations

import errno
import json
import math
import os
import re
import zlib
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

from vaecli import files, finite
from vaecli.errors import RunError, StorageError, os_advice, os_cause
from vaecli.rundir.names import Folder

BEST_METRIC = "validation_elbo"


def _metric(metrics: dict) -> float:
    value = finite.number(metrics.get(BEST_METRIC))
    return -math.inf if value is None else value


class Checkpoints:
    """A CheckpointManager over `<run>/checkpoints`. Use as a context manager: every exit
    path waits for the asynchronous save in flight and closes the manager.

    Kept: the latest `keep` steps, and with `keep_best` also the step with the highest
    validation ELBO (each save passes it as the checkpoint's metric)."""

    def __init__(self, directory: Path, keep: int | None = None, keep_best: bool = True, read_only: bool = False):
        self.directory = Path(directory).absolute()  # Orbax needs absolute paths
        preserve = None
        if not read_only:
            keep_policies = [policies.LatestN(n=keep)]
            if keep_best:
                keep_policies.append(policies.BestN(get_metric_fn=_metric, n=1, keep_checkpoints_without_metrics=False))
            preserve = policies.AnyPreservationPolicy(keep_policies)
        options = ocp.CheckpointManagerOptions(
            create=not read_only, read_only=read_only, enable_async_checkpointing=not read_only,
            best_fn=_metric, best_mode="max", preservation_policy=preserve,
            cleanup_tmp_directories=not read_only)
        try:
            self.manager = ocp.CheckpointManager(self.directory, options=options, item_handlers={
                "state": ocp.StandardCheckpointHandler(), "record": ocp.JsonCheckpointHandler()})
        except Exception as e:
            raise RunError(f"cannot open checkpoints in {self.directory} ({_short(e)})") from None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        try:
            self.close()
        except Exception:
            if exc_type is None:
                raise  # else the error already on its way says it (a failed save raises once per wait)

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self.manager.close()

    def steps(self) -> list[int]:
        """Complete checkpoints only: folders still being written are not steps."""
        return sorted(self.manager.all_steps())

    def best_step(self) -> int | None:
        return self.manager.best_step()

    def saving(self) -> bool:
        return self.manager.is_saving_in_progress()

    def save(self, step: int, state, record: dict, validation_elbo: float | None = None, force: bool = False) -> None:
        """Start an asynchronous save; `state` must be a host copy the caller will not touch.

        The record carries a CRC32 of the state's bytes: Orbax stores raw array bytes without
        a checksum, so an edited or bit-rotten array would otherwise load silently."""
        self.wait()  # Orbax would wait for the save in flight anyway; a failure is then named by its step
        record = {**record, "state_crc32": checksum(state)}
        self._in_flight = step
        try:
            self.manager.save(step, args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), record=ocp.args.JsonSave(record)),
                metrics={BEST_METRIC: validation_elbo}, force=force)
        except Exception as e:
            self._in_flight = None
            raise _save_failed(e, step, self.directory) from None

    _in_flight = None

    def wait(self) -> None:
        """Wait for the save in flight; StorageError if it failed (a full disk, a read-only
        folder...), naming its step. Its half-written folder is never a step (see above)."""
        step, self._in_flight = self._in_flight, None
        try:
            self.manager.wait_until_finished()
        except Exception as e:
            raise _save_failed(e, step, self.directory) from None
        if step is not None and not (self.directory / str(step)).is_dir():
            raise StorageError(f"cannot write checkpoint step {step} in {self.directory}: Orbax did not complete "
                               f"it; check the disk and that folder")

    @property
    def _sums(self) -> Path:
        return Folder(self.directory.parent).checkpoint_sums_dir

    def seal(self, step: int) -> None:
        """After Orbax finished `step`: record the size and CRC32 of each of its files in
        `<run>/checkpoint_sums/<step>.json` (and drop the sums of steps Orbax has deleted).
        A damaged file is then found before Orbax reads it, and reported in one line."""
        folder = self.directory / str(step)
        if not folder.is_dir():
            return
        sums = {str(f.relative_to(folder)): [f.stat().st_size, zlib.crc32(f.read_bytes())]
                for f in sorted(folder.rglob("*")) if f.is_file()}
        self._sums.mkdir(exist_ok=True)
        files.write_text(self._sums / f"{step}.json", json.dumps(sums))
        kept = {str(s) for s in self.steps()}
        for old in self._sums.glob("*.json"):
            if old.stem not in kept:
                old.unlink(missing_ok=True)

    def _verify_files(self, step: int, where: str) -> None:
        path = self._sums / f"{step}.json"
        if not path.exists():  # killed before sealing: Orbax's own checks and the array CRC remain
            return
        folder = self.directory / str(step)
        for name, (size, crc) in json.loads(path.read_text()).items():
            f = folder / name
            if not f.is_file():
                raise RunError(f"{where} is damaged: {name} is missing; delete that step's folder to use an earlier one")
            data = f.read_bytes()
            if len(data) != size or zlib.crc32(data) != crc:
                what = "truncated" if len(data) < size else "altered"
                raise RunError(f"{where} is damaged: {name} is {what} since it was saved; delete that step's folder "
                               f"to use an earlier one")

    def restore(self, step: int, like):
        """(state, record) saved at `step`, checked against the pytree `like` (what the run's
        config.yaml builds): a checkpoint of another shape is refused, never reshaped."""
        where = f"checkpoint step {step} in {self.directory}"
        self._verify_files(step, where)
        try:
            saved = self.manager.item_metadata(step)["state"]
        except Exception as e:
            raise RunError(f"{where} is damaged: its metadata cannot be read ({_short(e)}); "
                           f"delete that step's folder to resume from an earlier one") from None
        _check_shapes(saved, like, where)
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        try:
            out = self.manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), record=ocp.args.JsonRestore()))
        except Exception as e:  # Orbax raises many kinds; all mean the same to the user
            raise RunError(f"{where} cannot be restored, it is damaged ({_short(e)}); "
                           f"delete that step's folder to use an earlier one") from None
        expected = out.record.get("state_crc32") if isinstance(out.record, dict) else None
        if expected is None or checksum(out.state) != expected:
            raise RunError(f"{where} is damaged: its arrays do not match the checksum written when it was saved "
                           f"(edited or corrupted on disk); delete that step's folder to use an earlier one")
        return out.state, out.record


def checksum(state) -> int:
    """CRC32 over every array's bytes, in pytree order (a few ms for a 10 MB state)."""
    crc = 0
    for leaf in jax.tree.leaves(state):
        crc = zlib.crc32(np.ascontiguousarray(np.asarray(leaf)).tobytes(), crc)
    return crc


def _save_failed(e: Exception, step: int | None, directory: Path) -> StorageError:
    """A failed save in one line: TensorStore reports the OS error inside its message
    ("... [os_error_code='28']"), Python code as an OSError."""
    what = f"checkpoint step {step} in {directory}" if step is not None else f"a checkpoint in {directory}"
    err = getattr(e, "errno", None)
    if err is None:
        found = re.search(r"os_error_code='?(\d+)", str(e))
        err = int(found[1]) if found else next((code for code, text in _OS_TEXTS if text in str(e)), None)
    if err is None:
        return StorageError(f"cannot write {what}: {_short(e)}; check the disk and that folder")
    return StorageError(f"cannot write {what}: {os_cause(err)}; {os_advice(err)}")


_OS_TEXTS = [(code, os.strerror(code)) for code in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES,
                                                    errno.ENOENT, errno.EFBIG, errno.EIO)]


def _short(e: Exception) -> str:
    text = " ".join(str(e).split()).split(" See full TensorStore details")[0]
    return f"{type(e).__name__}: {text[:160]}"


def _check_shapes(saved, like, where: str) -> None:
    """RunError naming the first array whose shape differs between checkpoint and config."""
    saved_leaves = dict(jax.tree_util.tree_flatten_with_path(saved)[0])
    like_leaves = dict(jax.tree_util.tree_flatten_with_path(like)[0])
    name = lambda path: jax.tree_util.keystr(path, simple=True, separator=".")
    if set(map(name, saved_leaves)) != set(map(name, like_leaves)):
        missing = sorted(set(map(name, like_leaves)) - set(map(name, saved_leaves)))
        extra = sorted(set(map(name, saved_leaves)) - set(map(name, like_leaves)))
        what = f"config.yaml needs {missing[0]}" if missing else f"the checkpoint has {extra[0]}"
        raise RunError(f"{where} does not match the run's config.yaml ({what}, the other does not): "
                       f"restore the config.yaml the run was trained with")
    saved_by_name = {name(p): v for p, v in saved_leaves.items()}
    for path, leaf in like_leaves.items():
        shape = tuple(getattr(saved_by_name[name(path)], "shape", ()))
        if shape != tuple(np.shape(leaf)):
            raise RunError(f"{where} does not match the run's config.yaml: {name(path)} has shape {shape} in the "
                           f"checkpoint but {tuple(np.shape(leaf))} from config.yaml; restore the config.yaml "
                           f"the run was trained with")
