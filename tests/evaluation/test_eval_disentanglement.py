"""`vae eval-disentanglement` on a run trained on the procedural toy_sprites (conftest's
`toy_run`): every metric
through the run's compiled encoder, the JSON file and its protocol, the table, and bad input
(one line, its exit code, nothing written)."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_error, vae_inproc

from vaecli.evaluation import disentanglement as dis
from vaecli.evaluation.disentanglement import run as run_lib


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture(scope="module")
def every_metric(toy_run) -> tuple[dict, float]:
    """Every metric at the small sizes, seed 3, written into the run: (report, seconds)."""
    t = time.perf_counter()
    report = run_lib.evaluate(toy_run, "all", seed=3, sizes="small")
    return report, time.perf_counter() - t


def test_every_metric_on_a_trained_run(toy_run, every_metric):
    report, elapsed = every_metric
    assert list(report["metrics"]) == list(dis.METRICS)
    for name, r in report["metrics"].items():
        assert r["metric"] == name and np.isfinite(r["score"]) and 0 <= r["score"] <= 1, (name, r["score"])
        assert r["protocol"]["seed"] == 3 and r["protocol"]["sizes"] == "small"
        assert all(r["protocol"][k] == v for k, v in dis.METRICS[name].small.items()), name
        assert r["seconds"] > 0 and r["images_encoded"] > 0
    # The images each metric encodes follow from its sizes: FactorVAE's variance estimate and
    # batches of 64; BetaVAE's pairs of batches.
    fv, bv = dis.METRICS["factor_vae"].small, dis.METRICS["beta_vae"].small
    assert report["metrics"]["factor_vae"]["images_encoded"] == (
        fv["num_variance_estimate"] + 64 * (fv["num_train"] + fv["num_eval"]))
    assert report["metrics"]["beta_vae"]["images_encoded"] == 2 * 64 * (bv["num_train"] + bv["num_eval"])
    assert report["metrics"]["mig"]["images_encoded"] == 1000
    p = report["protocol"]
    assert p["dataset"] == "toy_sprites" and p["factors"]["sizes"] == [3, 3, 6, 8, 8]
    assert p["checkpoint_step"] == report["checkpoint_step"] and p["vaecli_version"]
    assert p["images"].startswith("drawn") and p["model"]["latent_dim"] == 10
    written = Path(report["written_to"])
    assert written == toy_run / "eval" / f"disentanglement-step{report['checkpoint_step']}.json"
    assert json.loads(written.read_text())["metrics"]["dci"]["score"] == report["metrics"]["dci"]["score"]
    print(f"\nall six metrics, small sizes, one-epoch MLP on toy_sprites: {elapsed:.1f} s "
          + ", ".join(f"{n} {r['seconds']:.1f} s" for n, r in report["metrics"].items()))


def test_the_command_prints_a_table_or_json_and_adds_to_the_file(toy_run):
    first = vae_inproc("eval-disentanglement", toy_run, "--metrics", "mig,sap", "--sizes", "small")
    assert first.code == 0, first.stderr
    lines = first.stdout.splitlines()
    assert lines[0].startswith("toy_sprites (shape 3, scale 3, orientation 6, pos_x 8, pos_y 8), step ")
    assert [line.split()[0] for line in lines[2:4]] == ["mig", "sap"] and lines[-1].startswith("written to ")
    again = vae_inproc("eval-disentanglement", toy_run, "--metrics", "mig", "--train-size", "300", "--seed", "1",
                       "--json")
    assert again.code == 0, again.stderr
    report = json.loads(again.stdout)
    assert list(report["metrics"]) == ["mig"] and report["metrics"]["mig"]["protocol"]["num_train"] == 300
    # The file keeps SAP from the first call and holds the second call's MIG.
    doc = json.loads(Path(report["written_to"]).read_text())
    assert {"mig", "sap"} <= set(doc["metrics"])
    assert doc["metrics"]["mig"]["protocol"] == {**report["metrics"]["mig"]["protocol"]}
    assert doc["metrics"]["sap"]["protocol"]["seed"] == 0


def test_same_seed_same_scores(toy_run, every_metric, tmp_path):
    """The two metrics that draw the most (FactorVAE's batches, DCI's folds) asked again with
    the seed of the all-metrics call, alone: the same scores, whatever else was evaluated."""
    a = {name: r["score"] for name, r in every_metric[0]["metrics"].items()}
    b = run_lib.evaluate(toy_run, "factor_vae,dci", seed=3, sizes="small", out=tmp_path)
    assert [r["score"] for r in b["metrics"].values()] == [a["factor_vae"], a["dci"]]
    assert Path(b["written_to"]).parent == tmp_path


@pytest.mark.parametrize("args, code, needles", [
    (["--metrics", "mig,migg"], 2, ["unknown metric 'migg'", "choose from mig, factor_vae"]),
    (["--sizes", "huge"], 2, ["--sizes 'huge'"]),
    (["--train-size", "1"], 2, ["--train-size 1"]),
    (["--dci-regressor", "tree"], 2, ["--dci-regressor 'tree'", "lasso, gbt"]),
    (["--step", "99999"], 1, ["--step 99999", "no checkpoint"]),
])
def test_bad_arguments_write_nothing(toy_run, args, code, needles):
    before = listing(toy_run)
    assert_error(vae_inproc("eval-disentanglement", toy_run, *args), code, *needles)
    assert listing(toy_run) == before


def test_gbt_without_scikit_learn_is_one_line(toy_run, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "sklearn", None)  # as if not installed
    before = listing(toy_run)
    assert_error(vae_inproc("eval-disentanglement", toy_run, "--dci-regressor", "gbt"), 2, "scikit-learn",
                 "vaecli[disentanglement]")
    assert listing(toy_run) == before
    # Without DCI among the metrics the regressor is not used, so nothing is missing.
    ok = vae_inproc("eval-disentanglement", toy_run, "--metrics", "mig", "--dci-regressor", "gbt", "--sizes", "small",
                    "--train-size", "200", "--json")
    assert ok.code == 0, ok.stderr
    assert json.loads(ok.stdout)["metrics"]["mig"]["protocol"]["num_train"] == 200


def test_a_dataset_without_factors_or_no_run_folder(tiny_run, tmp_path):
    before = listing(tiny_run)
    assert_error(vae_inproc("eval-disentanglement", tiny_run), 1, "'tiny_bars' has no factors of variation",
                 "toy_sprites, dsprites, shapes3d")
    assert listing(tiny_run) == before
    assert_error(vae_inproc("eval-disentanglement", tmp_path / "nowhere"), 1, "run folder not found")
    assert_error(vae_inproc("eval-disentanglement", tmp_path), 1, "is not a run folder")
    assert list(tmp_path.iterdir()) == []


def test_help_lists_the_metrics_without_jax():
    import subprocess
    import sys

    code = ("import sys; from vaecli.cli import app; from typer.testing import CliRunner; "
            "r = CliRunner().invoke(app, ['eval-disentanglement', '--help']); "
            "print('jax' in sys.modules); print(r.output)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[0] == "False"
    for name in dis.METRICS:
        assert name in out
