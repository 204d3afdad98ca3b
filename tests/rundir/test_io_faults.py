"""I/O faults (a full disk, a read-only folder, a file size limit, no permission) in every
command: one line naming the path, the cause and what to do, exit 1, no traceback; a
training run's summary.json names only complete checkpoints, and `--resume` once the fault
is gone ends with the bits of an uninterrupted run (`tiny_run`, same config, 3 epochs).

The faults are simulated below the code under test, without root or special mounts: a
real file size limit (RLIMIT_FSIZE) in a subprocess for Orbax's writes, and Python-level
writes patched to fail with the errno the OS would give.
"""
from __future__ import annotations

import errno
import json
import logging
import os
import pathlib
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import (
    ENV,
    ROOT,
    assert_error,
    assert_same_bits,
    final_state,
    summary,
    train_records,
    vae_inproc,
)

from vaecli import config, files, progress
from vaecli.rundir import layout as runs
from vaecli.rundir import metrics
from vaecli.rundir import table as runs_table
from vaecli.rundir.checkpoints import Checkpoints
from vaecli.training import resume as resume_lib


def os_error(code: int, path) -> OSError:
    return OSError(code, os.strerror(code), str(path))


def fail_writes(monkeypatch, match: str, code: int = errno.ENOSPC, after: int = 0) -> None:
    """The one atomic write (vaecli.files.write_with, which every JSON, YAML and PNG file of
    a run goes through) fails for paths containing `match` from its (after+1)-th call on,
    as the OS would when writing the temporary file: the disk stays full."""
    real, calls = files.write_with, []

    def write_with(path, write):
        if match in str(path):
            calls.append(path)
            if len(calls) > after:
                raise os_error(code, path)
        return real(path, write)

    monkeypatch.setattr(files, "write_with", write_with)


@pytest.fixture(scope="module")
def config_file(tiny_config, tmp_path_factory) -> Path:
    """tiny_run's config as a file, so that a run started by the CLI is tiny_run's twin."""
    path = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    path.write_text(config.dump_yaml(tiny_config))
    return path


def only_run(runs_dir: Path) -> Path:
    (run,) = list(runs_dir.iterdir())
    return run


def complete_steps(run: Path) -> list[int]:
    with Checkpoints(run / "checkpoints", read_only=True) as ck:
        return ck.steps()


def assert_resumes_to(run: Path, reference: Path) -> None:
    """--resume (the fault gone) ends bit-identical to the uninterrupted reference."""
    resume_lib.resume_run(run, [], argv=["pytest"])
    assert summary(run)["status"] == "completed"
    assert_same_bits(final_state(reference)[0], final_state(run)[0])
    assert train_records(run) == train_records(reference)


# ------------------------------------------------------------------------ vae train


FILL_AT_STEP_40 = """
import resource, signal
from vaecli.rundir import checkpoints
from vaecli.cli import app

real = checkpoints.Checkpoints.save

def save(self, step, *args, **kwargs):
    if step == 40:  # the disk fills up: from now on no file may grow past 12 kB (Orbax writes more)
        resource.setrlimit(resource.RLIMIT_FSIZE, (12000, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    return real(self, step, *args, **kwargs)

checkpoints.Checkpoints.save = save
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of killing the process
app(prog_name="vae")
"""


def test_a_checkpoint_that_cannot_be_written_stops_the_run_honestly(config_file, tiny_run, tmp_path):
    """A real process, a real OS refusal inside Orbax's background save (EFBIG)."""
    driver = tmp_path / "fill.py"
    driver.write_text(textwrap.dedent(FILL_AT_STEP_40))
    runs_dir = tmp_path / "runs"
    p = subprocess.run([sys.executable, driver, "train", "--config", config_file, "--runs-dir", runs_dir,
                        "--name", "full"], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    run = only_run(runs_dir)
    assert p.returncode == 1, p.stderr
    assert "Traceback" not in p.stderr and p.stdout == ""
    (line,) = p.stderr.strip().splitlines()
    assert line.startswith(f"error: cannot write checkpoint step 40 in {run / 'checkpoints'}: File too large (EFBIG)")
    assert "the last complete checkpoint is step 20" in line and f"vae train --resume {run}" in line

    s = summary(run)
    assert s["status"] == "failed" and s["last_checkpoint_step"] == 20 and s["error"] == line[len("error: "):]
    assert complete_steps(run) == [20]  # the earlier checkpoint is intact, the failed one is no step
    assert all(r["step"] <= 60 for r in metrics.read(run))
    assert_resumes_to(run, tiny_run)


def test_a_summary_that_cannot_be_written_leaves_a_truthful_run(config_file, tiny_run, tmp_path, monkeypatch):
    fail_writes(monkeypatch, "summary.json", after=2)  # the start and epoch 1 are written, then the disk is full
    out = vae_inproc("train", "--config", config_file, "--runs-dir", tmp_path, "--name", "nosummary")
    run = only_run(tmp_path)
    assert_error(out, 1, f"cannot write {run / 'summary.json'}: No space left on device (ENOSPC)",
                 "free space", f"vae train --resume {run}", only_line=False)
    monkeypatch.undo()

    s = summary(run)  # the last one written: epoch 1, naming no checkpoint that is not complete
    assert s["status"] == "running" and s["epochs_done"] == 1
    assert s["last_checkpoint_step"] is None or s["last_checkpoint_step"] in complete_steps(run)
    assert not [f for f in os.listdir(run) if f.endswith(".tmp")]  # no temporary file left behind
    assert runs_table.read_run(run, tmp_path)["status"] == "died"  # the lock is free: the truth
    assert_resumes_to(run, tiny_run)


class _FullDisk:
    """A file whose `fail_at`-th write writes half of its text, then fails (ENOSPC), as do
    the writes after it."""

    def __init__(self, f, fail_at: int):
        self._f, self._left = f, fail_at

    def write(self, text: str) -> int:
        self._left -= 1
        if self._left <= 0:
            if self._left == 0:
                self._f.write(text[:len(text) // 2])
                self._f.flush()
            raise os_error(errno.ENOSPC, self._f.name)
        return self._f.write(text)

    def __getattr__(self, name):
        return getattr(self._f, name)


def test_a_metrics_line_that_cannot_be_written_stops_the_run(config_file, tiny_run, tmp_path, monkeypatch):
    monkeypatch.setattr(metrics, "open", lambda *a, **k: _FullDisk(open(*a, **k), fail_at=3), raising=False)
    out = vae_inproc("train", "--config", config_file, "--runs-dir", tmp_path, "--name", "nometrics")
    run = only_run(tmp_path)
    assert_error(out, 1, f"cannot write {run / 'metrics.jsonl'}: No space left on device (ENOSPC)",
                 "no checkpoint is saved after a lost log line", "the last complete checkpoint is step 20",
                 only_line=False)
    monkeypatch.undo()

    s = summary(run)
    assert s["status"] == "failed" and s["last_checkpoint_step"] == 20
    assert complete_steps(run) == [20]  # no checkpoint after the lost line of step 40
    assert [(r["step"], r["split"]) for r in metrics.read(run)] == [(20, "train"), (20, "validation")]
    assert not (run / "metrics.jsonl").read_text().endswith("\n")  # the half line the full disk left
    assert_resumes_to(run, tiny_run)  # which --resume drops, and the file ends as the reference's


def test_pictures_and_tensorboard_that_cannot_be_written_are_warnings(config_file, tiny_run, tmp_path, monkeypatch,
                                                                      caplog):
    from PIL import Image
    from tensorboardX import record_writer

    def refuse(self, *args, **kwargs):
        raise os_error(errno.ENOSPC, args[0] if args and isinstance(args[0], (str, Path)) else "?")

    monkeypatch.setattr(Image.Image, "save", refuse)
    monkeypatch.setattr(record_writer.RecordWriter, "write", refuse)
    with caplog.at_level(logging.WARNING, logger="vaecli"):
        out = vae_inproc("train", "--config", config_file, "--runs-dir", tmp_path, "--name", "nopictures")
    assert out.code == 0, (out.stderr, out.exception)
    run = only_run(tmp_path)
    warnings = [r.getMessage() for r in caplog.records if r.name == "vaecli"]
    assert len(warnings) == 2, warnings  # one each, not one per epoch
    assert any(w.startswith(f"cannot write {run / 'samples'}") and "No space left on device (ENOSPC)" in w
               and "training goes on without pictures" in w for w in warnings), warnings
    assert any(w.startswith(f"cannot write TensorBoard events in {run}: No space left on device (ENOSPC)")
               and "training goes on without them" in w for w in warnings), warnings
    assert not (run / "samples").exists() or not list((run / "samples").iterdir())  # no half-written PNG
    assert summary(run)["status"] == "completed" and summary(run)["last_checkpoint_step"] == 60
    assert train_records(run) == train_records(tiny_run)


def test_resume_on_a_read_only_run_changes_nothing(tiny_run, monkeypatch):
    before = {name: (tiny_run / name).read_bytes() for name in ("summary.json", "metrics.jsonl", "meta.json")}
    fail_writes(monkeypatch, str(tiny_run), code=errno.EROFS)
    out = vae_inproc("train", "--resume", tiny_run, "--set", "train.epochs=4")
    assert_error(out, 1, f"cannot write {tiny_run / 'metrics.jsonl'}: Read-only file system (EROFS)", "read-only",
                 "resume it again", "copy", only_line=False)
    assert {name: (tiny_run / name).read_bytes() for name in before} == before

    debug = vae_inproc("--debug", "train", "--resume", tiny_run, "--set", "train.epochs=4")
    # --debug: the traceback, down to where the OS refused; the exit code stays the error's
    assert debug.code == 1 and "OSError: [Errno 30] Read-only file system" in debug.stderr, debug.stderr[-2000:]


# ------------------------------------------------------------- the other commands


def test_eval_elbo_on_a_read_only_run_prints_its_results_and_says_what_was_not_saved(tiny_run, tmp_path,
                                                                                     monkeypatch):
    fail_writes(monkeypatch, str(tiny_run), code=errno.EROFS)
    # stderr is read for the error line alone: no progress line, however long the estimator's
    # compilation takes on a busy machine (they appear after progress.QUIET_S)
    monkeypatch.setattr(progress, "QUIET_S", 1e6)  # longer than any test; threading.Event.wait refuses inf
    out = vae_inproc("eval-elbo", tiny_run, "-k", "1,5", "--kl-mc-samples", "0", "--json")
    assert out.code == 1 and "Traceback" not in out.stderr
    doc = json.loads(out.stdout)  # the whole document, on stdout
    assert [r["samples"] for r in doc["results"]] == [1, 5] and all("written_to" not in r for r in doc["results"])
    (line,) = out.stderr.strip().splitlines()
    assert line == f"error: {doc['not_saved']}"
    assert line.startswith(f"error: cannot write {tiny_run / 'eval' / 'test-step60-k1.json'}: "
                           f"Read-only file system (EROFS)") and "--out DIR" in line

    table = vae_inproc("eval-elbo", tiny_run, "-k", "1", "--kl-mc-samples", "0")
    assert table.code == 1 and "log p(x)" in table.stdout and "--out DIR" in table.stderr

    elsewhere = vae_inproc("eval-elbo", tiny_run, "-k", "1,5", "--kl-mc-samples", "0", "--out", tmp_path / "ev")
    assert elsewhere.code == 0, elsewhere.stderr
    assert sorted(os.listdir(tmp_path / "ev")) == ["test-step60-k1.json", "test-step60-k5.json"]
    assert f"written to {tmp_path / 'ev' / 'test-step60-k5.json'}" in elsewhere.stdout


def test_sample_and_plot_into_a_read_only_folder_point_at_out(tiny_run, monkeypatch):
    from matplotlib.figure import Figure
    from PIL import Image

    def refuse(self, path, *args, **kwargs):
        raise os_error(errno.EROFS, path)

    monkeypatch.setattr(Image.Image, "save", refuse)
    monkeypatch.setattr(Figure, "savefig", refuse)
    out = vae_inproc("sample", tiny_run, "--n", "4")
    assert_error(out, 1, f"cannot write {tiny_run / 'samples' / 'prior-step60-seed0-n4.png'}: "
                         f"Read-only file system (EROFS)", "with --out DIR")
    out = vae_inproc("plot", tiny_run)
    assert_error(out, 1, f"cannot write {tiny_run / 'plots' / 'curves-step60.png'}: Read-only file system (EROFS)",
                 "with --out FILE.png")


def test_runs_lists_a_run_it_cannot_read(tiny_run, monkeypatch):
    real = pathlib.Path.read_text

    def read_text(self, *args, **kwargs):
        if self.name == "metrics.jsonl":
            raise os_error(errno.EACCES, self)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "read_text", read_text)
    out = vae_inproc("runs", tiny_run, "--json")
    assert out.code == 0, out.stderr
    (row,) = json.loads(out.stdout)
    assert row["status"] == "unreadable"


def test_an_unexpected_os_error_is_one_line_naming_path_and_cause(tiny_run, monkeypatch):
    """The central mapping in the CLI, for a fault no command has its own words for."""
    real = runs.open_run

    def vanished(path):
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(Path(path) / "meta.json"))

    monkeypatch.setattr(runs, "open_run", vanished)
    out = vae_inproc("sample", tiny_run)
    assert_error(out, 1, f"{tiny_run / 'meta.json'}: No such file or directory (ENOENT)", "was removed")
    monkeypatch.setattr(runs, "open_run", real)
