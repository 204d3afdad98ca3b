"""Experiment trackers (vaecli.rundir.trackers), fully offline: W&B in offline mode, read back from
the `.wandb` transaction logs it writes into the run folder; MLflow on a SQLite store, read
back with MLflow's own client.

One tracked tiny run is shared by the tests (importing wandb and mlflow takes seconds): it
trains 3 epochs, loses its last checkpoint as a crash would after the epoch-3 log point was
sent, is resumed to 4 epochs (so epoch 3 is recomputed and must not be sent twice), and is
evaluated with `eval-elbo`.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import shutil
import socket
import struct
import sys

import pytest
from helpers import CONFIG, assert_error, run_folders, sets, tiny_overrides, vae_inproc

from vaecli import config, files
from vaecli.evaluation import elbo as evaluate
from vaecli.rundir import layout as runs
from vaecli.rundir import metrics
from vaecli.training import resume as resume_lib
from vaecli.training import start as train

# Skipped without the extras; imported only by the tests that use them (importing both takes
# ~2 s, which every pytest-xdist worker would pay at collection).
pytestmark = [pytest.mark.skipif(not (importlib.util.find_spec("wandb") and importlib.util.find_spec("mlflow")),
                                 reason="the trackers extra (wandb, mlflow) is not installed"),
              pytest.mark.trackers]

STEPS_PER_EPOCH = 20  # tiny_bars: 640 training images, batch 32
EXPERIMENT = "vaecli-tests"


@pytest.fixture(scope="module")
def offline(tmp_path_factory):
    """W&B offline with every folder of its own in a temporary folder; an MLflow SQLite store
    whose experiment keeps its artifacts there too."""
    root = tmp_path_factory.mktemp("trackers")
    env = {"WANDB_MODE": "offline", "WANDB_DIR": root / "wandb", "WANDB_CACHE_DIR": root / "wandb-cache",
           "WANDB_CONFIG_DIR": root / "wandb-config", "WANDB_DATA_DIR": root / "wandb-data",
           "WANDB_SILENT": "true"}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, str(v))
        (root / "wandb").mkdir()
        mp.delenv("WANDB_API_KEY", raising=False)
        from mlflow.tracking import MlflowClient

        uri = f"sqlite:///{root / 'mlflow.db'}"
        MlflowClient(tracking_uri=uri).create_experiment(EXPERIMENT, artifact_location=str(root / "artifacts"))
        yield root, uri


@pytest.fixture(scope="module")
def tracked(offline, tiny_cache):
    """(run folder, MLflow URI, epoch-3 metrics as first written) of the shared tracked run."""
    root, uri = offline
    cfg = config.load(None, [*tiny_overrides(tiny_cache), "log.wandb.project=vaecli-tests", "log.wandb.mode=offline",
                             "log.wandb.tags=[tiny, ci]", f"log.mlflow.tracking_uri={uri}",
                             f"log.mlflow.experiment={EXPERIMENT}"])
    path = train.train(cfg, root / "runs", "tracked", argv=["pytest"], progress="none")
    first = metrics.read(path)
    # A crash after the epoch-3 log point was sent, before its checkpoint was complete:
    last = 3 * STEPS_PER_EPOCH
    shutil.rmtree(path / "checkpoints" / str(last))
    (path / "checkpoint_sums" / f"{last}.json").unlink()
    summary = runs.read_json(path / "summary.json")
    files.write_json(path / "summary.json", {**summary, "status": "interrupted"})
    resume_lib.resume_run(path, ["train.epochs=4"], argv=["pytest", "--resume"])
    report = evaluate.evaluate(path, split="test", samples="1,4", batch_size=64, kl_mc_samples=0)
    return path, uri, first, report


# ---------------------------------------------------------------- reading W&B's offline files


def _wandb_records(path):
    """The protobuf records of a `.wandb` file: a 7-byte header, then LevelDB-style log
    chunks (crc32c, length, type) in 32 KiB blocks."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, block = path.read_bytes(), 32768
    assert data[:4] == b":W&B"
    pos, parts = 7, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _, n, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0 and n == 0:  # zero padding to the end of a block
            pos += left
            continue
        parts += data[pos + 7:pos + 7 + n]
        pos += 7 + n
        if kind in (1, 4):  # a full record, or the last chunk of one
            rec = pb.Record()
            rec.ParseFromString(parts)
            parts = b""
            yield rec


def _wandb_run(folder):
    """What one offline W&B run folder holds: run id, config, tags, history rows, summary."""
    (log_file,) = folder.glob("run-*.wandb")
    out = {"history": [], "summary": {}, "config": {}}
    for rec in _wandb_records(log_file):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            out.update(id=rec.run.run_id, project=rec.run.project, tags=list(rec.run.tags))
            out["config"].update({u.key: json.loads(u.value_json) for u in rec.run.config.update})
        elif kind == "config":
            out["config"].update({u.key: json.loads(u.value_json) for u in rec.config.update})
        elif kind == "history":
            out["history"].append({(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in rec.history.item})
        elif kind == "summary":
            out["summary"].update({(u.key or "/".join(u.nested_key)): json.loads(u.value_json) for u in rec.summary.update})
    return out


def _wandb_runs(run_path):
    return [_wandb_run(f) for f in sorted((run_path / "wandb").glob("offline-run-*"))]


# ---------------------------------------------------------------- the shared tracked run


def test_meta_json_names_the_tracker_runs(tracked):
    path, uri, _, _ = tracked
    meta = runs.read_json(path / "meta.json")
    assert set(meta["trackers"]) == {"wandb", "mlflow"}
    assert meta["trackers"]["mlflow"]["tracking_uri"] == uri
    assert all(r["id"] == meta["trackers"]["wandb"]["id"] for r in _wandb_runs(path))


def test_mlflow_has_config_scalars_pictures_summary_and_eval(tracked):
    from mlflow.tracking import MlflowClient

    path, uri, first, report = tracked
    client = MlflowClient(tracking_uri=uri)
    run_id = runs.read_json(path / "meta.json")["trackers"]["mlflow"]["run_id"]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["status"] == "completed"
    assert client.get_experiment(run.info.experiment_id).name == EXPERIMENT
    # the resolved config as parameters; the resume's new train.epochs as a tag (params are immutable)
    assert run.data.params["model.hidden"] == "[32]" and run.data.params["train.batch_size"] == "32"
    assert run.data.params["train.epochs"] == "3" and run.data.tags["resumed.train.epochs"] == "4"
    # the same scalars as TensorBoard, at the same steps, each step once despite the resume
    final = metrics.read(path)
    for split, name in (("train", "loss"), ("train", "kl"), ("validation", "elbo")):
        history = client.get_metric_history(run_id, f"{split}/{name}")
        steps = [m.step for m in history]
        assert sorted(steps) == [STEPS_PER_EPOCH * e for e in (1, 2, 3, 4)], (name, steps)
        by_step = {m.step: m.value for m in history}
        for rec in final:
            if rec["split"] == split:
                assert by_step[rec["step"]] == pytest.approx(rec[name], rel=1e-6)
    # epoch 3 as first sent equals its bit-identical recomputation after the resume
    e3 = [r for r in first if r["step"] == 3 * STEPS_PER_EPOCH and r["split"] == "train"][0]
    assert {m.step: m.value for m in client.get_metric_history(run_id, "train/loss")}[e3["step"]] == \
        pytest.approx(e3["loss"], rel=1e-6)
    # the picture grids of each evaluation, and the final summary
    pictures = {f.path for f in client.list_artifacts(run_id, "samples")}
    assert {f"samples/{kind}-step{STEPS_PER_EPOCH * e}.png" for kind in ("prior", "recon") for e in (1, 2, 3, 4)} <= pictures
    summary = runs.read_json(path / "summary.json")
    assert client.get_metric_history(run_id, "summary/final_validation/elbo")[-1].value == \
        pytest.approx(summary["final_validation"]["elbo"], rel=1e-6)
    # eval-elbo's results, at the checkpoint step
    k4 = [d for d in report["results"] if d["samples"] == 4][0]
    (ll,) = client.get_metric_history(run_id, "eval/test/k4/log_likelihood")
    assert ll.step == report["checkpoint_step"] and ll.value == pytest.approx(k4["log_likelihood"], rel=1e-6)
    assert {f.path for f in client.list_artifacts(run_id, "eval")} >= {f"eval/test-step{report['checkpoint_step']}-k4.json"}


def test_wandb_offline_has_config_scalars_pictures_summary_and_eval(tracked):
    path, _, first, report = tracked
    trained, resumed, evaluated = _wandb_runs(path)  # one offline folder per process, one run id
    assert trained["project"] == "vaecli-tests" and trained["tags"] == ["tiny", "ci"]
    assert trained["config"]["model"]["hidden"] == [32] and trained["config"]["train"]["epochs"] == 3
    assert resumed["config"]["train"]["epochs"] == 4
    # the same scalars as TensorBoard, each step once over the two training processes
    rows = [r for r in trained["history"] + resumed["history"] if "train/loss" in r]
    assert [r["_step"] for r in rows] == [STEPS_PER_EPOCH * e for e in (1, 2, 3, 4)]
    final = {(r["split"], r["step"]): r for r in metrics.read(path)}
    for r in rows:
        assert r["train/loss"] == pytest.approx(final["train", r["_step"]]["loss"], rel=1e-6)
        assert r["validation/elbo"] == pytest.approx(final["validation", r["_step"]]["elbo"], rel=1e-6)
        for kind in ("prior", "recon"):  # an image's fields are items of the history row
            assert r[f"samples/{kind}/_type"] == "image-file"
            assert list((path / "wandb").glob(f"offline-run-*/files/{r[f'samples/{kind}/path']}"))
    assert resumed["summary"]["status"] == "completed"
    assert resumed["summary"]["final_validation/elbo"] == pytest.approx(
        runs.read_json(path / "summary.json")["final_validation"]["elbo"], rel=1e-6)
    k4 = [d for d in report["results"] if d["samples"] == 4][0]
    assert evaluated["summary"]["eval/test/k4/log_likelihood"] == pytest.approx(k4["log_likelihood"], rel=1e-6)
    # the first process had sent epoch 3 before the crash; the resumed one did not send it again
    assert [r["_step"] for r in trained["history"] if "train/loss" in r] == [STEPS_PER_EPOCH * e for e in (1, 2, 3)]
    e3 = [r for r in first if r["step"] == 3 * STEPS_PER_EPOCH and r["split"] == "train"][0]
    assert rows[2]["train/loss"] == pytest.approx(e3["loss"], rel=1e-6)


# ---------------------------------------------------------------- failures and bad input


def test_failing_trackers_cost_one_warning_each_and_training_goes_on(tiny_cache, tmp_path, caplog, monkeypatch):
    """W&B online without credentials, and MLflow's package missing at run time (the
    config-time check bypassed by calling the library): a warning line each, run completed."""
    monkeypatch.chdir(tmp_path)  # were MLflow to run after all, its ./mlruns would land here
    for k in ("WANDB_API_KEY", "WANDB_MODE"):
        monkeypatch.delenv(k, raising=False)
    for k in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(k, str(tmp_path / k.lower()))
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    for name in [m for m in sys.modules if m == "mlflow" or m.startswith("mlflow.")] + ["mlflow"]:
        monkeypatch.setitem(sys.modules, name, None)  # `import mlflow...` raises ImportError
    cfg = config.load(None, [*tiny_overrides(tiny_cache), "train.epochs=1", "log.wandb.project=p",
                             f"log.mlflow.tracking_uri=sqlite:///{tmp_path / 'm.db'}"])
    with caplog.at_level(logging.WARNING, logger="vaecli"):
        path = train.train(cfg, tmp_path / "runs", "failing", argv=["pytest"], progress="none")
    warnings = [r.getMessage() for r in caplog.records if r.name == "vaecli"]
    assert len(warnings) == 2, warnings
    assert warnings[0].startswith("W&B start failed, going on without it") and "\n" not in warnings[0]
    assert warnings[1] == 'MLflow start failed, going on without it (not installed: pip install "vaecli[mlflow]")'
    assert runs.read_json(path / "summary.json")["status"] == "completed"
    assert "trackers" not in runs.read_json(path / "meta.json")


def test_missing_extra_fails_at_config_time(tiny_cache, tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m == "wandb" or m.startswith("wandb.")] + ["wandb"]:
        monkeypatch.setitem(sys.modules, name, None)
    out = vae_inproc("train", "--config", CONFIG, *sets(tiny_overrides(tiny_cache)),
                     "--set", "log.wandb.project=p", "--runs-dir", tmp_path)
    assert_error(out, 2, "log.wandb.project", 'pip install "vaecli[wandb]"')
    assert run_folders(tmp_path) == []


def test_unknown_tracker_key_and_unreachable_uri(tiny_cache, tmp_path):
    out = vae_inproc("train", "--config", CONFIG, *sets(tiny_overrides(tiny_cache)),
                     "--set", "log.wandb.projekt=p", "--runs-dir", tmp_path)
    assert_error(out, 2, "log.wandb.projekt", "project")
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = vae_inproc("train", "--config", CONFIG, *sets(tiny_overrides(tiny_cache)),
                     "--set", f"log.mlflow.tracking_uri=http://127.0.0.1:{port}", "--runs-dir", tmp_path)
    assert_error(out, 2, "log.mlflow.tracking_uri", f"127.0.0.1:{port}", "log.mlflow.tracking_uri=null")
    out = vae_inproc("train", "--config", CONFIG, *sets(tiny_overrides(tiny_cache)),
                     "--set", f"log.mlflow.tracking_uri=sqlite:///{tmp_path}/absent/m.db", "--runs-dir", tmp_path)
    assert_error(out, 2, "log.mlflow.tracking_uri", "does not exist")
    out = vae_inproc("train", "--config", CONFIG, *sets(tiny_overrides(tiny_cache)),
                     "--set", "log.wandb.mode=cloudy", "--runs-dir", tmp_path)
    assert_error(out, 2, "log.wandb.mode", "'offline'")
    assert run_folders(tmp_path) == []


def test_no_tracker_import_unless_configured(tiny_run):
    """`vae --help` and an untracked run never import wandb or mlflow."""
    import subprocess

    code = ("import sys, vaecli.cli, vaecli.rundir.recorder, vaecli.rundir.trackers, vaecli.training.launch; "
            "print(any(m in sys.modules for m in ('wandb', 'mlflow')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert "trackers" not in runs.read_json(tiny_run / "meta.json")
