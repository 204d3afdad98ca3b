"""TensorBoard event files: a writer never truncates the file of an earlier one.

tensorboardX names its file `events.out.tfevents.<Unix second>.<host>` and opens it with
"wb". Writers of one run folder started in the same second (a short run resumed at once, a
refilled tune slot) would take the same name; the tests below make that happen on purpose
by fixing the clock tensorboardX reads, then check that every history survives and that
TensorBoard's view shows every step once.
"""
from __future__ import annotations

import json
import struct
import types
from pathlib import Path

import pytest

from vaecli import config
from vaecli.rundir import metrics
from vaecli.training import resume as resume_lib
from vaecli.training import start as train

SECOND = 1_700_000_000  # the one second every writer below starts in


@pytest.fixture
def same_second(monkeypatch):
    """The clock tensorboardX's event writer reads (its file name, its flush timer) is stopped."""
    from tensorboardX import event_file_writer

    monkeypatch.setattr(event_file_writer, "time", types.SimpleNamespace(time=lambda: SECOND + 0.25))


def event_files(run: Path) -> list[Path]:
    """In TensorBoard's order: it reads a folder's event files sorted by name."""
    return sorted(run.glob("events.out.tfevents.*"))


def events(path: Path) -> list:
    """The Event protos of one file (TFRecord framing)."""
    from tensorboardX.proto.event_pb2 import Event

    raw, at, out = path.read_bytes(), 0, []
    while at < len(raw):
        (n,) = struct.unpack("<Q", raw[at:at + 8])
        out.append(Event.FromString(raw[at + 12:at + 12 + n]))
        at += 12 + n + 4
    return out


def scalar_steps(path: Path, tag: str) -> list[int]:
    return [e.step for e in events(path) for v in e.summary.value if v.tag == tag]


def tensorboard_view(run: Path) -> tuple[dict[str, list[tuple[int, float]]], list[int]]:
    """What TensorBoard shows: the files in name order, a SessionLog START at step s dropping
    the events of steps >= s read before it. Also returns the purge steps."""
    from tensorboardX.proto.event_pb2 import SessionLog

    shown, purges = [], []
    for f in event_files(run):
        for e in events(f):
            if e.HasField("session_log") and e.session_log.status == SessionLog.START:
                purges.append(e.step)
                shown = [(tag, step, v) for tag, step, v in shown if step < e.step]
            shown += [(v.tag, e.step, v.simple_value) for v in e.summary.value]
    tags = {}
    for tag, step, v in shown:
        tags.setdefault(tag, []).append((step, v))
    return tags, purges


def log_steps(run: Path, steps, sign: float = 1.0, purge_after: int | None = None) -> None:
    with metrics.MetricsLog(run, purge_after=purge_after) as log:
        for step in steps:
            log.write({"step": step, "split": "train", "loss": sign * step})


def test_two_writers_in_the_same_second_keep_both_histories(tmp_path, same_second):
    log_steps(tmp_path, [10, 20, 30, 40, 50])
    log_steps(tmp_path, [40, 50, 60, 70, 80], sign=-1, purge_after=30)  # a resume from step 30

    files = event_files(tmp_path)
    assert len(files) == 2 and all(f".{SECOND}." in f.name for f in files)
    assert [scalar_steps(f, "train/loss") for f in files] == [[10, 20, 30, 40, 50], [40, 50, 60, 70, 80]]
    shown, purges = tensorboard_view(tmp_path)
    assert purges == [31]
    assert shown == {"train/loss": [(10, 10), (20, 20), (30, 30), (40, -40), (50, -50), (60, -60), (70, -70),
                                    (80, -80)]}
    assert [r["step"] for r in metrics.read(tmp_path)] == [10, 20, 30, 40, 50, 40, 50, 60, 70, 80]


def test_names_sort_in_writing_order_past_ten_writers_and_after_an_older_file(tmp_path, same_second):
    from tensorboardX import SummaryWriter

    with SummaryWriter(logdir=str(tmp_path)) as older:  # as vaecli named its files before
        older.add_scalar("train/loss", 0.0, global_step=0)
    for step in range(1, 13):  # each writer resumes from the step before its own
        log_steps(tmp_path, [step], purge_after=step - 1)

    files = event_files(tmp_path)
    assert len(files) == 13 and len({f.name for f in files}) == 13
    assert [scalar_steps(f, "train/loss") for f in files] == [[step] for step in range(13)]
    shown, purges = tensorboard_view(tmp_path)
    assert purges == list(range(1, 13))
    assert shown == {"train/loss": [(step, float(step)) for step in range(13)]}


def test_a_resume_in_the_same_second_keeps_the_first_process_events(tiny_config, tmp_path, same_second):
    path = train.train(config.replace(tiny_config, train={"epochs": 2}), tmp_path, "quick", argv=["pytest"])
    resume_lib.resume_run(path, ["train.epochs=3"], argv=["pytest"])

    files = event_files(path)
    assert len(files) == 2
    assert scalar_steps(files[0], "train/loss") == [20, 40]  # the first process's file, whole
    assert scalar_steps(files[1], "train/loss") == [60]
    shown, purges = tensorboard_view(path)
    assert purges == [41]
    logged = metrics.read(path)
    for split in ("train", "validation"):
        expected = [r["step"] for r in logged if r["split"] == split]
        assert expected == [20, 40, 60]
        for tag, points in shown.items():
            if tag.startswith(f"{split}/"):
                assert [step for step, _ in points] == expected, tag
    assert shown["train/loss"] == [(r["step"], pytest.approx(r["loss"])) for r in logged if r["split"] == "train"]
    assert json.loads((path / "summary.json").read_text())["status"] == "completed"
