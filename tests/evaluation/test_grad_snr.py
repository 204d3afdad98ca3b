"""`vae grad-snr` on a tiny trained run: the encoder-gradient SNR of the IWAE bound at K = 50 is
higher with DReG than with the reparameterized estimator (Rainforth et al. 2018; Tucker et al.
2019), the decoder's is the same draw for draw, the report is written, bad input is one line."""
from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import assert_error, vae_inproc

from vaecli.errors import UsageError
from vaecli.evaluation import grad_snr


@pytest.fixture(scope="module")
def report(tiny_run, tmp_path_factory):
    return grad_snr.grad_snr(tiny_run, samples="1,50", estimators="reparam,dreg", draws=120, batch_size=8,
                             out=tmp_path_factory.mktemp("snr"))


def _row(report, k, estimator):
    return next(r for r in report["results"] if r["samples"] == k and r["estimator"] == estimator)


def test_dreg_has_the_higher_encoder_snr_at_k50(report):
    reparam, dreg = _row(report, 50, "reparam"), _row(report, 50, "dreg")
    assert dreg["encoder"]["snr_mean"] > 1.5 * reparam["encoder"]["snr_mean"]
    # the reparameterized encoder SNR falls with K (Rainforth et al.); the decoder's gradient is
    # the same estimator's in both, on the same draws
    assert _row(report, 50, "reparam")["encoder"]["snr_mean"] < _row(report, 1, "reparam")["encoder"]["snr_mean"]
    for k in (1, 50):
        a, b = _row(report, k, "reparam")["decoder"], _row(report, k, "dreg")["decoder"]
        assert a["snr_mean"] == pytest.approx(b["snr_mean"], rel=1e-3)
    enc = reparam["encoder"]
    assert 0 < enc["live_parameters"] <= enc["parameters"] and np.isfinite(enc["snr_median"])


def test_the_report_is_written_beside_the_table(report):
    written = json.loads(open(report["written_to"]).read())
    assert report["written_to"].endswith(f"grad-snr-step{report['checkpoint_step']}.json")
    assert written["results"] == json.loads(json.dumps(report["results"]))
    assert written["bound"] == "iwae" and written["draws"] == 120


def test_the_command_prints_a_table_and_writes_into_the_run(tiny_run, tmp_path):
    out = vae_inproc("grad-snr", tiny_run, "--samples", "2", "--draws", "3", "--batch-size", "4", "--out", tmp_path)
    assert out.code == 0, out.stderr
    assert "reparam enc" in out.stdout and "dreg enc" in out.stdout
    assert list(tmp_path.glob("grad-snr-step*.json"))


@pytest.mark.parametrize("args, needle", [
    (["--estimators", "score"], "--estimators"),
    (["--estimators", "dreg,dreg"], "--estimators"),
    (["--draws", "1"], "--draws"),
    (["--samples", "0"], "--samples"),
    (["--batch-size", "100000"], "--batch-size"),
    (["--split", "nope"], "--split"),
])
def test_bad_input_is_one_line_and_exit_2(tiny_run, args, needle):
    assert_error(vae_inproc("grad-snr", tiny_run, *args), 2, needle)


def test_a_flow_run_refuses_the_estimators_that_hold_q():
    with pytest.raises(UsageError, match="flow"):
        grad_snr.parse_estimators("reparam,dreg", flow="planar")
    assert grad_snr.parse_estimators("reparam", flow="planar") == ["reparam"]
