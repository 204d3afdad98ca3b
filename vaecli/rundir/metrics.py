"""metrics.jsonl and TensorBoard event writing (the same numbers in both)."""
from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from vaecli import finite
from vaecli.rundir.names import Folder

log = logging.getLogger("vaecli")

_NOT_SCALARS = {"step", "epoch", "split"}


def _writer_suffix(run_dir: Path) -> str:
    """`.0001`, `.0002`...: one more than the highest writer number of the folder's event files.

    tensorboardX names its file after the second it starts and opens it with "wb": a second
    writer started in that second (a short run resumed at once) would truncate the first
    one's file. The number makes each name new; padded, it makes names of one second sort in
    writing order, the order TensorBoard reads them in. Writers of one folder take turns
    (train.lock), so the highest number on disk is the last one taken; a file from before
    the numbers whose host name ends in digits only raises the next number."""
    taken = (re.search(r"\.(\d+)$", p.name) for p in Folder(run_dir).event_files())
    return f".{max((int(m[1]) for m in taken if m), default=0) + 1:04d}"


class MetricsLog:
    """Appends one JSON object per log point; mirrors numeric fields to TensorBoard as
    `<split>/<name>` scalars when tensorboardX is available."""

    def __init__(self, run_dir: Path, tensorboard: bool = True, purge_after: int | None = None):
        """`purge_after`: on resume, the checkpoint step; TensorBoard then discards the events
        an earlier process wrote after it (metrics.jsonl is truncated by the caller)."""
        self.path = Folder(run_dir).metrics_file
        self._file = open(self.path, "a", buffering=1)
        self._tb = None
        if tensorboard:
            try:
                from tensorboardX import SummaryWriter
            except ImportError:
                log.warning("tensorboardX is not installed: TensorBoard events are not written "
                            "(metrics.jsonl has the same numbers)")
            else:
                purge = None if purge_after is None else purge_after + 1
                try:
                    self._tb = SummaryWriter(logdir=str(run_dir), flush_secs=30, purge_step=purge,
                                             filename_suffix=_writer_suffix(run_dir))
                except OSError as e:
                    self._tb_failed(e)
                else:
                    self._guard_tensorboard()

    # TensorBoard events only mirror metrics.jsonl: an event file that cannot be written is a
    # warning, and the run goes on without it. tensorboardX writes from a thread of its own,
    # which an OSError would end with a traceback, after which its bounded queue blocks the
    # trainer for good: its writes are wrapped so that the error is kept and read here.
    _tb_error = None
    failed = False  # a metrics line could not be written

    def _guard_tensorboard(self) -> None:
        writer = getattr(getattr(getattr(self._tb, "file_writer", None), "event_writer", None), "_ev_writer", None)
        for name in ("write_event", "flush", "close"):
            inner = getattr(writer, name, None)
            if inner is not None:
                setattr(writer, name, self._guarded(inner))

    def _guarded(self, inner):
        def call(*args):
            if self._tb_error is None:
                try:
                    return inner(*args)
                except OSError as e:
                    self._tb_error = e
        return call

    def _tb_failed(self, e: OSError) -> None:
        from vaecli.errors import storage_error

        log.warning(f"{storage_error(e, f'TensorBoard events in {self.path.parent}')}; training goes on without them "
                    f"(metrics.jsonl has the same numbers)")
        self._tb = None

    def write(self, record: dict) -> None:
        clean = {k: (None if isinstance(v, float) and finite.number(v) is None else v) for k, v in record.items()}
        try:
            self._file.write(json.dumps(clean) + "\n")
        except OSError:
            self.failed = True
            raise
        if self._tb is not None and self._tb_error is not None:
            self._close_tensorboard()
        if self._tb is not None:
            split = record.get("split", "train")
            for k, v in record.items():
                if k not in _NOT_SCALARS and isinstance(v, (int, float)) and not isinstance(v, bool):
                    self._tb.add_scalar(f"{split}/{k}", v, global_step=record.get("step", 0))

    def _close_tensorboard(self) -> None:
        tb, self._tb = self._tb, None
        try:
            tb.close()
        except OSError as e:
            self._tb_error = self._tb_error or e
        if self._tb_error is not None:
            self._tb_failed(self._tb_error)

    def close(self) -> None:
        try:
            self._file.close()
        except OSError:
            if not self.failed:  # else the failed line still in the buffer fails again: already reported
                raise
        finally:
            if self._tb is not None:
                self._close_tensorboard()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _lines(run_dir: Path, split: str | None = None):
    """(line, record) for each log point of `<run_dir>/metrics.jsonl`, in file order.

    The one policy for a damaged line: a line that is not a complete JSON object (only a
    writer killed in the middle of a line leaves one) is skipped, never an error. With
    `split`, lines of other splits are skipped unparsed (most lines are training records).
    A missing file has no log points."""
    try:
        text = Folder(run_dir).metrics_file.read_text()
    except FileNotFoundError:
        return
    needle = f'"split": "{split}"' if split else None
    for line in text.splitlines():
        if not line.strip() or (needle and needle not in line):
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and (split is None or record.get("split") == split):
            yield line, record


def read(run_dir: Path, split: str | None = None) -> list[dict]:
    """The log points of a run (of one split), skipping a damaged line (see `_lines`)."""
    return [record for _, record in _lines(run_dir, split)]


def truncate(run_dir: Path, last_step: int) -> int:
    """Keep the log points up to `last_step` (the checkpoint a resumed run restarts from),
    atomically, byte for byte; return how many lines were dropped (damaged ones included)."""
    from vaecli.files import write_text

    path = Folder(run_dir).metrics_file
    if not path.exists():
        return 0
    total = sum(1 for line in path.read_text().splitlines() if line.strip())
    kept = [line + "\n" for line, record in _lines(run_dir) if isinstance(record.get("step"), int)
            and record["step"] <= last_step]
    write_text(path, "".join(kept))
    return total - len(kept)
