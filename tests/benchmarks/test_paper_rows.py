"""benchmarks/paper_rows.py: paper configs trained, paused and resumed, evaluated at the latest
and the best-validation checkpoint, recorded; bad input refused; the README's table filled
from records only."""
from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

from helpers import ROOT, TINY, run_folders, sets, summary

SMALL = ["model.hidden=[16,16]", "model.latent_dim=4", "train.epochs=2", "train.batch_size=32", "eval.every_epochs=1",
         "eval.batch_size=64", "eval.grid=4", "checkpoint.every_epochs=1", "log.progress=none", "log.tensorboard=false"]
SHORT = ROOT / "configs" / "paper" / "iwae_vae_k1_short.yaml"


def paper_rows():
    spec = importlib.util.spec_from_file_location("paper_rows", ROOT / "benchmarks" / "paper_rows.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def small(tiny_cache) -> list[str]:
    return sets([f"data.dataset={TINY}", f"data.cache_dir={tiny_cache}", *SMALL])


def test_paper_rows_smoke(tiny_cache, tmp_path, capsys):
    """The script on a paper config shrunk to the tiny dataset, two replicas: a first call
    whose time has run out leaves the protocol unfinished (exit 3), the second resumes the
    same folders as one program, evaluates each at its latest and best checkpoints and writes
    one record per seed; the records are no paper rows (the protocol was changed), so the
    table stays unmeasured."""
    pr = paper_rows()
    args = [str(SHORT), "--seeds", "0-1", "--runs-dir", str(tmp_path / "runs"), "--results", str(tmp_path / "results"),
            "--samples", "50", *small(tiny_cache)]
    assert pr.main([*args, "--time-limit", "1s", "--eval-reserve", "1s"]) == 3
    folder = tmp_path / "runs" / "iwae_vae_k1_short-seeds0-1"
    assert [summary(r)["status"] for r in run_folders(folder)] == ["paused", "paused"]
    assert not (tmp_path / "results").exists()

    assert pr.main(args) == 0
    assert len(run_folders(folder)) == 2  # the same folders, resumed
    recs = [json.loads(p.read_text()) for p in sorted((tmp_path / "results").glob("*.json"))]
    assert [r["seed"] for r in recs] == [0, 1]
    for r in recs:
        assert r["epochs"] == 2 and r["sessions"] == 2 and r["samples"] == 50 and r["status"] == "completed"
        assert r["nll"] > 0 and 0 < r["nll_stderr"] < 1 and 0 <= r["active_units"] <= 4
        assert r["jax_version"] and r["device"] and r["train_wall_s"] > 0
        assert r["paper_row"] is False and "model.hidden" in r["protocol_changes"]
        latest, best = r["checkpoints"]["latest"], r["checkpoints"]["best"]
        assert latest["nll"] == r["nll"] and latest["step"] == 40 and latest["epoch"] == 2
        assert best["step"] == 20 * (summary(Path(r["run"]))["best_epoch"])  # the best validation ELBO's step
        for point in (latest, best):
            written = json.loads((Path(r["run"]) / "eval" / f"test-step{point['step']}-k50.json").read_text())
            assert written["nll"] == point["nll"] and written["active_units"] == point["active_units"]
    readme = (ROOT / "README.md").read_text()
    assert pr.render_table(readme, pr.read_records(tmp_path / "results")) == pr.render_table(readme, [])
    # called again: nothing to train, the records are rewritten with the same figures from the eval files
    before = [json.loads(p.read_text())["checkpoints"] for p in sorted((tmp_path / "results").glob("*.json"))]
    assert pr.main(args) == 0
    assert [json.loads(p.read_text())["checkpoints"] for p in sorted((tmp_path / "results").glob("*.json"))] == before
    # evaluations are bounded by --time-limit too: with the files gone and the call's second long
    # past (it counts from this process's start), none is started, the call exits 3 and writes
    # nothing; the next call evaluates again, to the same figures
    evals = [Path(r["run"]) / "eval" for r in recs]
    for f in (f for folder in evals for f in folder.glob("*.json")):
        f.unlink()
    capsys.readouterr()
    assert pr.main([*args, "--time-limit", "1s", "--eval-reserve", "0s"]) == 3
    assert "K=50 on the test split at step 40 would not finish in time" in capsys.readouterr().err
    assert [list(folder.glob("*.json")) for folder in evals] == [[], []]
    assert pr.main(args) == 0
    again = [json.loads(p.read_text())["checkpoints"] for p in sorted((tmp_path / "results").glob("*.json"))]
    untimed = lambda records: [{name: {k: v for k, v in point.items() if k != "eval_s"} for name, point in rec.items()}
                               for rec in records]
    assert untimed(again) == untimed(before)


def test_bad_input_is_one_line_and_touches_nothing(tiny_cache, tmp_path, capsys):
    pr = paper_rows()
    base = ["--samples", "5", *small(tiny_cache)]

    assert pr.main([str(ROOT / "configs" / "bmnist_mlp.yaml"), "--runs-dir", str(tmp_path / "r"), *base]) == 2
    assert "not a paper config" in capsys.readouterr().err and not (tmp_path / "r").exists()

    not_a_folder = tmp_path / "a-file"
    not_a_folder.write_text("")
    assert pr.main([str(SHORT), "--results", str(not_a_folder / "results"), "--runs-dir", str(tmp_path / "r"),
                    *base]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--results" in err and not (tmp_path / "r").exists()


def test_a_run_folder_of_another_protocol_or_record_is_refused(tiny_cache, tmp_path, capsys):
    pr = paper_rows()
    runs_dir, results = tmp_path / "runs", tmp_path / "results"
    args = [str(SHORT), "--runs-dir", str(runs_dir), "--results", str(results), "--samples", "5", *small(tiny_cache)]
    assert pr.main(args) == 0
    run = run_folders(runs_dir / "iwae_vae_k1_short")[0]
    files_before = sorted(p.relative_to(run) for p in run.rglob("*"))
    capsys.readouterr()

    assert pr.main([*args, "--set", "model.latent_dim=3"]) == 2  # another protocol in the same folder
    err = capsys.readouterr().err
    assert "another protocol" in err and "model.latent_dim" in err and err.count("\n") == 1
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == files_before

    record = results / "iwae_vae_k1_short-seed0.json"
    other = tmp_path / "other-runs"
    shutil.copytree(runs_dir, other)
    assert pr.main([*args[:1], "--runs-dir", str(other), *args[3:]]) == 2  # its record would replace this one's
    assert "records another run" in capsys.readouterr().err
    assert json.loads(record.read_text())["run"] == str(run)


def test_readme_table_is_filled_from_records_only():
    """The README's "measured" column is what the paper-row records in benchmarks/results say
    (rows without one say what they need), and a paper-row record fills its row with its
    figures at both checkpoints."""
    pr = paper_rows()
    readme = (ROOT / "README.md").read_text()
    assert pr.render_table(readme, pr.read_records()) == readme, "run benchmarks/paper_rows.py --table --write-readme"
    rec = {"config_name": "iwae_k50", "paper_row": True, "nll": 86.91, "nll_stderr": 0.06, "seed": 0,
           "device": "NVIDIA H200", "date": "2030-01-02", "train_hours": 0.2,
           "checkpoints": {"best": {"nll": 86.5, "nll_stderr": 0.07, "epoch": 1093}}}
    row = next(line for line in pr.render_table(readme, [rec]).splitlines() if "`iwae_k50.yaml`" in line)
    measured = row.rsplit(" | ", 1)[1]
    for figure in ("86.91 ± 0.06", "86.50 ± 0.07", "1093", "NVIDIA H200", "2030-01-02"):
        assert figure in measured


def test_records_kept_in_the_repository_pass_the_runners_rules():
    pr = paper_rows()
    kept = sorted((ROOT / "benchmarks" / "results").glob("*.json"))
    for path in kept:
        rec = pr.check_record(path, 5000)
        assert rec["paper_row"] and rec["samples"] == 5000
    assert {p.stem.rsplit("-seed", 1)[0] for p in kept} <= {r["config_name"] for r in pr.read_records()}


def test_a_record_made_elsewhere_is_checked_by_the_runners_rules(tmp_path, capsys):
    """--check-record: a record of a paper config passes only with the file's own protocol
    (also key by key when the record keeps its protocol), K=5000 and the protocol's epochs."""
    pr = paper_rows()
    cfg = pr.config_lib.load(ROOT / "configs" / "paper" / "iwae_vae_k1.yaml")
    point = {"nll": 88.0, "nll_stderr": 0.2, "epoch": 3280, "step": 8_200_000}
    good = {"config": "configs/paper/iwae_vae_k1.yaml", "config_name": "iwae_vae_k1", "paper_row": True,
            "protocol_changes": [], "protocol": pr.protocol(cfg), "samples": 5000, "status": "completed",
            "epochs": 3280, "epochs_planned": 3280, "stopped_early": False, "nll": 88.0, "nll_stderr": 0.2,
            "checkpoints": {"latest": point, "best": {**point, "epoch": 2160}}}
    bad = {
        "K=1000": {"samples": 1000},
        "2000 of 3280 epochs": {"epochs": 2000},
        "model.latent_dim": {"protocol": {**good["protocol"], "model.latent_dim": 20}},
        "departs from": {"paper_row": False, "protocol_changes": ["optim.lr"]},
        "not a paper config": {"config": "configs/bmnist_mlp.yaml"},
        "best checkpoint": {"checkpoints": {"latest": point}},
    }
    path = tmp_path / "rec.json"
    path.write_text(json.dumps(good))
    assert pr.main(["--check-record", str(path)]) == 0
    assert "88.00 ± 0.20 latest" in capsys.readouterr().out
    for words, change in bad.items():
        path.write_text(json.dumps({**good, **change}))
        before = path.read_text()
        assert pr.main(["--check-record", str(path)]) == 2, words
        err = capsys.readouterr().err
        assert words in err and err.count("\n") == 1, (words, err)
        assert path.read_text() == before
