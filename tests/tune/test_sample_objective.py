"""`vae tune --objective fid`: each trial's value is the FID of its prior samples against the
validation split, the number in the JSON `vae eval-samples` writes into its run folder, and
`vae runs` shows it; bad input is one line, exit 2, no study folder."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import optuna
import pytest
from helpers import CONFIG, assert_error, sets, tiny_overrides, vae_inproc

from vaecli.tune import storage as storage_lib


def tune_args(tiny_cache, runs_dir: Path, *extra) -> list:
    return ["tune", "-c", CONFIG, *sets(tiny_overrides(tiny_cache) + ["train.epochs=1"]),
            "--space", "optim.lr=log:1e-3:1e-2", "--trials", "2", "--replicas", "2", "--runs-dir", runs_dir, *extra]


def test_a_two_trial_study_minimises_the_fid_of_each_trial(tiny_cache, bars_features, tmp_path):
    out = vae_inproc(*tune_args(tiny_cache, tmp_path, "--objective", "fid", "--features", bars_features,
                                "--objective-n", "64", "--name", "fid"))
    assert out.code == 0, out.stderr
    study_dir = Path(out.stdout.strip())
    study = optuna.load_study(study_name="vaecli", storage=storage_lib.open_storage(optuna, study_dir, "journal"))
    assert study.direction == optuna.study.StudyDirection.MINIMIZE
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    sha = json.loads(bars_features.with_suffix(".json").read_text())["sha256"]
    for t in trials:
        written = sorted((Path(t.user_attrs["run"]) / "eval").glob("samples-validation-*.json"))
        assert len(written) == 1 and written[0].name.endswith(f"-n64-seed0-f{sha[:12]}.json")
        doc = json.loads(written[0].read_text())
        assert t.value == doc["fid"] and doc["features"]["sha256"] == sha
        assert t.intermediate_values == {}  # no ELBO reported: nothing is pruned on it
    best = min(trials, key=lambda t: t.value)
    summary = json.loads((study_dir / "summary.json").read_text())
    assert summary["best"]["trial"] == best.number and summary["best"]["fid"] == best.value
    assert summary["objective"]["name"] == "fid" and summary["pruner"] == "none"
    assert f"best: trial {best.number} FID" in out.stderr
    rows = json.loads(vae_inproc("runs", study_dir, "--json").stdout)
    assert sorted(r["val_fid"] for r in rows) == sorted(t.value for t in trials)


def test_bad_objectives_are_one_line_and_make_no_study(tiny_cache, bars_features, tmp_path):
    other_shape = tmp_path / "other"
    shutil.copy(bars_features, other_shape.with_suffix(".npz"))
    record = json.loads(bars_features.with_suffix(".json").read_text())
    other_shape.with_suffix(".json").write_text(json.dumps({**record, "image_shape": [16, 16, 1]}))
    runs_dir = tmp_path / "runs"
    for extra, needles in [
        (["--objective", "fid"], ["--objective fid needs --features FILE"]),
        (["--objective", "nll"], ["--objective nll", "elbo, fid, kid"]),
        (["--objective", "fid", "--features", other_shape, "--objective-n", "64"], ["(16, 16, 1)", "(8, 8, 1)"]),
        (["--objective", "kid", "--features", bars_features, "--objective-n", "500"], ["only 128 images"]),
        (["--objective", "fid", "--features", bars_features, "--pruner", "median"], ["--pruner median"]),
        (["--features", bars_features], ["--objective fid"]),
    ]:
        assert_error(vae_inproc(*tune_args(tiny_cache, runs_dir, *extra)), 2, *needles)
        assert not runs_dir.exists() or not list(runs_dir.iterdir())


@pytest.mark.parametrize("extra", [["--objective", "fid"], ["--pruner", "none"]])
def test_a_resumed_study_keeps_its_objective(extra, tmp_path):
    (tmp_path / "study.json").write_text("{}")
    assert_error(vae_inproc("tune", "--resume", tmp_path, *extra), 2, "own settings", "--objective")
