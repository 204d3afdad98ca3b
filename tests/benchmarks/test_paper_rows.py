"""benchmarks/paper_rows.py: paper configs trained, paused and resumed, evaluated and recorded;
the README's table filled from records only."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from helpers import ROOT, TINY, run_folders, sets, summary

# ---------------------------------------------------------------- the paper-row script


def paper_rows():
    spec = importlib.util.spec_from_file_location("paper_rows", ROOT / "benchmarks" / "paper_rows.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_paper_rows_smoke(tiny_cache, tmp_path):
    """The script on a paper config shrunk to the tiny dataset, two replicas: a first call
    whose time has run out leaves the protocol unfinished (exit 3), the second resumes the
    same folders as one program, evaluates and writes one record per seed; the records
    are no paper rows (the protocol was changed), so the table stays unmeasured."""
    pr = paper_rows()
    small = [f"data.dataset={TINY}", f"data.cache_dir={tiny_cache}", "model.hidden=[16,16]", "model.latent_dim=4",
             "train.epochs=2", "train.batch_size=32", "eval.every_epochs=1", "eval.batch_size=64", "eval.grid=4",
             "checkpoint.every_epochs=1", "log.progress=none", "log.tensorboard=false"]
    args = [str(ROOT / "configs" / "paper" / "iwae_vae_k1_short.yaml"), "--seeds", "0-1",
            "--runs-dir", str(tmp_path / "runs"), "--results", str(tmp_path / "results"), "--samples", "50",
            *sets(small)]
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
        written = json.loads(next(Path(r["run"], "eval").glob("test-step*-k50.json")).read_text())
        assert written["nll"] == r["nll"] and written["active_units"] == r["active_units"]
    readme = (ROOT / "README.md").read_text()
    assert pr.render_table(readme, pr.read_records(tmp_path / "results")) == pr.render_table(readme, [])


def test_readme_table_is_filled_from_records_only():
    """The README's "measured by vaecli" column is what the records in benchmarks/results say
    (today: none, so every row is "not yet measured"), and a paper-row record fills its row."""
    pr = paper_rows()
    readme = (ROOT / "README.md").read_text()
    records = pr.read_records()
    assert pr.render_table(readme, records) == readme, "run benchmarks/paper_rows.py --table --write-readme"
    rec = {"config_name": "iwae_k50", "paper_row": True, "nll": 86.91, "nll_stderr": 0.06, "seed": 0,
           "device": "NVIDIA H200", "date": "2030-01-02", "train_minutes": 7.4}
    row = next(line for line in pr.render_table(readme, [rec]).splitlines() if "`iwae_k50.yaml`" in line)
    assert row.endswith("| not yet measured / 86.91 ± 0.06 (seed 0; NVIDIA H200, 2030-01-02, 7.4 min) |")
