"""Several `vae tune` workers on one study: they share it through its storage (the journal
file, a SQLite database), no trial is run twice, and a live worker's trial is never taken
over; a trial left by a stopped worker is continued by the next one."""
from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from helpers import CONFIG, ENV, ROOT, assert_error, sets, tiny_overrides, vae_inproc, vae_popen

from vaecli import config
from vaecli.errors import Interrupted
from vaecli.rundir import layout as runs
from vaecli.rundir import metrics
from vaecli.tune import storage as storage_lib
from vaecli.tune import study as tune

SPACE = ["optim.lr=log:1e-4:1e-2", "objective.beta=0.5:4"]


def stored_trials(study_dir):
    url = json.loads((study_dir / "study.json").read_text())["storage"]
    storage = storage_lib.open_storage(optuna, study_dir, url)
    return optuna.load_study(study_name="vaecli", storage=storage).get_trials()


def slurm_tasks(tiny_cache, runs_dir, tasks: int) -> Path:
    """`examples/slurm_tune.sh` as `tasks` array tasks started together: task 0 creates the
    study (the journal file), the others join it."""
    env = {**ENV, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{ENV.get('PATH', '')}", "CONFIG": str(CONFIG),
           "RUNS_DIR": str(runs_dir), "NAME": "shared", "SLURM_ARRAY_TASK_MIN": "0"}
    args = [*sets(tiny_overrides(tiny_cache) + ["train.epochs=1"]), *[a for s in SPACE for a in ("--space", s)],
            "--trials", "4", "--replicas", "2", "--pruner", "none"]
    procs = [subprocess.Popen(["bash", str(ROOT / "examples" / "slurm_tune.sh"), *args], cwd=ROOT, text=True,
                              env={**env, "SLURM_ARRAY_TASK_ID": str(t)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for t in range(tasks)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    (study_dir,) = runs_dir.iterdir()
    return study_dir


def resume_workers(tiny_cache, runs_dir, workers: int) -> Path:
    """A study kept in SQLite, then `workers` processes of `vae tune --resume STUDY` at once."""
    raw = config.to_dict(config.load(None, tiny_overrides(tiny_cache) + ["train.epochs=1"]))
    study_dir = tune.create(raw, SPACE, 4, 2, "none", runs_dir, "shared", ["pytest"],
                            f"sqlite:///{runs_dir.parent / 'study.db'}")
    procs = [vae_popen("tune", "--resume", study_dir, "--json") for _ in range(workers)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    return study_dir


@pytest.mark.parametrize("launch, workers", [(slurm_tasks, 2), (resume_workers, 2)])
def test_workers_share_a_study_and_run_no_trial_twice(tiny_cache, tmp_path, launch, workers):
    """Two Slurm array tasks on the journal file, two `--resume` workers on SQLite: the four trials,
    each trained once by one worker, all complete, no point drawn twice."""
    (tmp_path / "runs").mkdir()
    study_dir = launch(tiny_cache, tmp_path / "runs", workers)
    trials = stored_trials(study_dir)
    assert sorted(t.number for t in trials) == list(range(4))
    assert {t.state.name for t in trials} == {"COMPLETE"}
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 4  # no point drawn twice
    sessions = json.loads((study_dir / "summary.json").read_text())["sessions"]
    served = [n for s in sessions for slot in s["slots"] for n in slot]
    assert len(sessions) == workers and sorted(served) == list(range(4))  # each trial trained by one worker
    folders = sorted((study_dir / "trials").iterdir())
    assert len(folders) == 4
    for path in folders:
        number = json.loads((path / "meta.json").read_text())["trial"]["number"]
        assert runs.open_run(path).config.optim.lr == trials[number].params["optim.lr"]
        assert [r["epoch"] for r in metrics.read(path, "train")] == [1]  # trained once, not restarted
        assert "resumes" not in json.loads((path / "meta.json").read_text())
    rows = json.loads(vae_inproc("runs", study_dir, "--json").stdout)
    assert len(rows) == 4 and {r["status"] for r in rows} == {"completed"}  # every worker's trials


def test_a_live_workers_trial_is_left_alone_and_a_stopped_ones_continued(tiny_cache, tmp_path, monkeypatch):
    """Trial 0 is left running by a stopped worker. While its folder is locked (a live worker
    holds it), another worker trains the rest and leaves trial 0 untouched; once the lock is
    free, the next worker continues trial 0 from its checkpoint."""
    raw = config.to_dict(config.load(None, tiny_overrides(tiny_cache) + ["train.epochs=3"]))
    study_dir = tune.create(raw, SPACE[:1], 3, 1, "none", tmp_path, "live", ["pytest"])
    real = tune._Study.after_epoch

    def stop_after_first_epoch(self, recs, epoch_):
        if epoch_ == 1:
            signal.raise_signal(signal.SIGTERM)  # the loop stops after the next epoch
        return real(self, recs, epoch_)

    monkeypatch.setattr(tune._Study, "after_epoch", stop_after_first_epoch)
    with pytest.raises(Interrupted):
        tune.run(study_dir, ["pytest"])
    monkeypatch.setattr(tune._Study, "after_epoch", real)
    (first,) = (study_dir / "trials").iterdir()
    before = (first / "metrics.jsonl").read_bytes()

    with runs.Lock(first):
        summary = tune.run(study_dir, ["pytest"])
    assert summary["states"] == {"running": 1, "complete": 2}
    assert (first / "metrics.jsonl").read_bytes() == before  # not trained, not failed
    assert summary["sessions"][-1]["slots"] == [[1, 2]]

    summary = tune.run(study_dir, ["pytest"])
    assert summary["states"] == {"complete": 3}
    meta = json.loads((first / "meta.json").read_text())
    assert [r["from_epoch"] for r in meta["resumes"]] == [2]
    assert [r["epoch"] for r in metrics.read(first, "train")] == [1, 2, 3]


def test_storage_refusals_are_one_line(tmp_path):
    base = ["tune", "-c", "configs/bmnist_mlp.yaml", "--space", SPACE[0], "--runs-dir", tmp_path]
    assert_error(vae_inproc(*base, "--storage", "redis://host"), 2, "--storage redis://host", "sqlite:///")
    assert_error(vae_inproc("tune", "--resume", tmp_path, "--storage", "journal"), 2, "drop --config")
    out = vae_inproc(*base, "--storage", "postgresql://me:secret@127.0.0.1:1/db")
    if importlib.util.find_spec("psycopg2") is None:
        line = assert_error(out, 2, "pip install psycopg2-binary")
    else:
        line = assert_error(out, 1, "cannot open the study's database")
    assert "secret" not in line
    assert list(tmp_path.iterdir()) == []  # nothing started
