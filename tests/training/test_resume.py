"""Runs that survive: exact resume, SIGTERM and kill -9, NaN, damaged checkpoints, locks.

The central promise: a run stopped at any moment and resumed ends with the same bits as
one that was never stopped. The tests compare every array of the final state exactly.
"""
from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import yaml
from helpers import (
    ENV,
    ROOT,
    TINY,
    assert_error,
    assert_same_bits,
    built_once,
    final_state,
    make_bars,
    run_folders,
    tiny_overrides,
    tiny_train_args,
    train_records,
    vae,
    vae_inproc,
    vae_popen,
)

from vaecli import config, data
from vaecli.compiled import epoch, optimizer
from vaecli.errors import RunError
from vaecli.rundir import layout as runs
from vaecli.rundir import metrics, recorder, restore
from vaecli.rundir.checkpoints import Checkpoints
from vaecli.training import resume as resume_lib
from vaecli.training import start as train

EPOCHS = 12  # the length every interrupted run is resumed to


def tensorboard_scalars(run_path: Path) -> dict[str, list[tuple[int, float]]]:
    """The scalars TensorBoard shows for the run: every event file read in order (TFRecord
    framing, tensorboardX's Event proto), a SessionLog START at step s purging the earlier
    events of steps >= s, as TensorBoard's reader does. Also returns the purge steps."""
    import struct

    from tensorboardX.proto.event_pb2 import Event, SessionLog

    events = []
    for f in sorted(run_path.glob("events.out.tfevents.*")):  # by name, as TensorBoard reads them
        raw = f.read_bytes()
        at = 0
        while at < len(raw):
            (n,) = struct.unpack("<Q", raw[at:at + 8])
            events.append(Event.FromString(raw[at + 12:at + 12 + n]))
            at += 12 + n + 4
    shown, purges = [], []
    for e in events:
        if e.HasField("session_log") and e.session_log.status == SessionLog.START:
            purges.append(e.step)
            shown = [(tag, step, v) for tag, step, v in shown if step < e.step]
        for v in e.summary.value:
            shown.append((v.tag, e.step, v.simple_value))
    tags = {}
    for tag, step, v in shown:
        tags.setdefault(tag, []).append((step, v))
    return tags, purges


@pytest.fixture(scope="module")
def reference(tiny_config, tmp_path_factory) -> Path:
    """An uninterrupted run of EPOCHS epochs: what every interrupted run must end equal to."""
    cfg = config.replace(tiny_config, train={"epochs": EPOCHS})
    return built_once(tmp_path_factory, "reference", lambda root: train.train(cfg, root, "ref", argv=["pytest"]))[1]


def long_run_args(tiny_cache, runs_dir, name) -> list:
    return tiny_train_args(tiny_cache, runs_dir, name) + ["--set", "train.epochs=100000"]


# ----------------------------------------------------------------------- exact resume


def test_resume_ends_bit_identical_to_an_uninterrupted_run(tiny_config, reference, tmp_path):
    short = config.replace(tiny_config, train={"epochs": 5})
    path = train.train(short, tmp_path, "split", argv=["pytest"])
    assert resume_lib.resume_run(path, [f"train.epochs={EPOCHS}"], argv=["pytest"]) == path

    (a, step_a), (b, step_b) = final_state(reference), final_state(path)
    assert step_a == step_b == EPOCHS * 20
    assert_same_bits(a, b)  # parameters, optimizer state, step, key, counters
    # metrics continue in the same file, no step twice, the same numbers
    assert train_records(path) == train_records(reference)
    assert [r["step"] for r in metrics.read(path) if r["split"] == "validation"] == \
           [r["step"] for r in metrics.read(reference) if r["split"] == "validation"]
    # TensorBoard is told to purge the events after the checkpoint: no step twice in what it shows
    shown, purges = tensorboard_scalars(path)
    assert purges == [101] and len(list(path.glob("events.out.tfevents.*"))) == 2
    expected, _ = tensorboard_scalars(reference)
    assert shown.keys() == expected.keys() and shown
    for tag, points in shown.items():
        steps = [step for step, _ in points]
        assert steps == sorted(set(steps)), tag  # each step once
        assert steps == [step for step, _ in expected[tag]], tag
    summary = json.loads((path / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["last_checkpoint_step"] == EPOCHS * 20
    assert summary["resumed_from_step"] == 100 and summary["wall_s"] > summary["wall_s_before"] > 0
    assert runs.open_run(path).config.train.epochs == EPOCHS  # the allowed override is in config.yaml
    meta = json.loads((path / "meta.json").read_text())
    assert meta["resumes"][0]["from_step"] == 100 and meta["resumes"][0]["overrides"] == [f"train.epochs={EPOCHS}"]


def test_sigterm_then_resume_to_completion(tiny_cache, reference, tmp_path):
    runs_dir = tmp_path / "runs"
    p = vae_popen(*long_run_args(tiny_cache, runs_dir, "term"))
    try:
        deadline = time.time() + 120
        # metrics.jsonl is opened once the signal handler is in place and before epoch 1: the
        # trainer then stops after its first epochs, however fast they are
        while time.time() < deadline and not any((f / "metrics.jsonl").exists() for f in run_folders(runs_dir)):
            time.sleep(0.005)
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == 143, err
    run = run_folders(runs_dir)[0]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    stopped_at = summary["last_checkpoint_step"]
    assert 0 < stopped_at < EPOCHS * 20, "stopped before the reference length"

    out = vae_inproc("train", "--resume", run, "--set", f"train.epochs={EPOCHS}")
    assert out.code == 0, out.stderr
    assert out.stdout.strip() == str(run)
    assert_same_bits(final_state(reference)[0], final_state(run)[0])
    assert train_records(run) == train_records(reference)
    assert json.loads((run / "summary.json").read_text())["status"] == "completed"


KILL_IN_SAVE_40 = """
import os, signal, sys
from vaecli.rundir import checkpoints
from vaecli.cli import app

real = checkpoints.Checkpoints.save

def save(self, step, *args, **kwargs):
    real(self, step, *args, **kwargs)  # Orbax has begun writing the step (in the background)
    if step == 40 and any(".orbax-checkpoint-tmp" in name for name in os.listdir(self.directory)):
        os.kill(os.getpid(), signal.SIGKILL)

checkpoints.Checkpoints.save = save
app(prog_name="vae")
"""


def test_kill_9_during_a_checkpoint_save_then_resume(tiny_cache, reference, tmp_path):
    """SIGKILL while Orbax is writing a step: the half-written folder is never a step, and
    --resume continues from the last complete one to the same final bits. The trainer kills
    itself right after the save of step 40 has begun, so the kill lands inside a save on a
    fast machine as on a slow one."""
    driver = tmp_path / "kill.py"
    driver.write_text(KILL_IN_SAVE_40)
    runs_dir = tmp_path / "runs"
    p = subprocess.run([sys.executable, driver, *long_run_args(tiny_cache, runs_dir, "kill")], cwd=ROOT, env=ENV,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == -signal.SIGKILL, p.stderr
    run = run_folders(runs_dir)[0]
    left = [Path(x) for x in glob.glob(str(run / "checkpoints" / "*tmp*"))]
    assert [x.name.split(".")[0] for x in left] == ["40"]  # the half-written step

    half_step = int(left[0].name.split(".")[0])
    with Checkpoints(run / "checkpoints", read_only=True) as ck:
        assert half_step not in ck.steps() and ck.steps()[-1] < half_step
    assert json.loads((run / "summary.json").read_text())["status"] == "running"  # what kill -9 leaves
    out = vae_inproc("train", "--resume", run, "--set", f"train.epochs={EPOCHS}")
    assert out.code == 0, out.stderr
    assert not list((run / "checkpoints").glob("*tmp*"))  # the half-written folder is cleaned up
    assert_same_bits(final_state(reference)[0], final_state(run)[0])
    assert train_records(run) == train_records(reference)


def test_kill_9_before_any_checkpoint_resumes_from_step_0(tiny_config, reference, tmp_path):
    path = runs.create(tmp_path, "early")  # what a trainer killed before its first save leaves
    recorder.start(path, config.replace(tiny_config, train={"epochs": 1000}),
                     {**runs.environment_meta(["pytest"]),
                      "data": {"image_shape": [8, 8, 1], "num_train": 640}})
    (path / "metrics.jsonl").write_text('{"step": 20, "epoch": 1, "split": "train", "loss": 1.0}\n{"step": 4')
    resume_lib.resume_run(path, [f"train.epochs={EPOCHS}"], argv=["pytest"])
    assert_same_bits(final_state(reference)[0], final_state(path)[0])
    assert train_records(path) == train_records(reference)


# ------------------------------------------------------------------- resume refusals


@pytest.fixture(scope="module")
def done_run(tiny_config, tmp_path_factory) -> Path:
    cfg = config.replace(tiny_config, train={"epochs": 2})
    return built_once(tmp_path_factory, "done", lambda root: train.train(cfg, root, "done", argv=["pytest"]))[1]


def snapshot(run: Path) -> dict:
    return {p.relative_to(run): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


def test_resume_refuses_keys_that_change_the_experiment(done_run):
    before = snapshot(done_run)
    line = assert_error(vae_inproc("train", "--resume", done_run, "--set", "optim.lr=0.1"), 2,
                        "optim.lr", "cannot change on --resume", "train.epochs")
    assert "new run" in line
    assert_error(vae_inproc("train", "--resume", done_run, "--config", ROOT / "configs" / "bmnist_mlp.yaml"), 2,
                 "--resume", "--config")
    assert_error(vae_inproc("train", "--resume", done_run, "--set", "train.epochs=1"), 2, "already trained 2 epochs")
    assert snapshot(done_run) == before


def test_resume_accepts_the_keys_that_do_not_change_a_step(done_run, tiny_cache, tmp_path):
    """Data paths, train.devices, train.skip_nonfinite, eval.*, checkpoint.*, log.* may change on
    --resume; they are recorded in config.yaml and meta.json, and the run continues."""
    run = tmp_path / "run"
    shutil.copytree(done_run, run)
    moved = tmp_path / "moved-cache"
    shutil.copytree(tiny_cache, moved)
    overrides = ["train.epochs=3", f"data.cache_dir={moved}", f"data.data_dir={tmp_path / 'tfds'}",
                 f"data.manual_dir={tmp_path / 'manual'}", "train.devices=1", "train.skip_nonfinite=2",
                 "eval.every_epochs=3", "eval.batch_size=32", "checkpoint.keep=1", "checkpoint.every_epochs=3",
                 "log.tensorboard=false"]
    out = vae_inproc("train", "--resume", run, *[a for o in overrides for a in ("--set", o)])
    assert out.code == 0, out.stderr
    cfg = runs.open_run(run).config
    assert (cfg.train.epochs, cfg.data.cache_dir, cfg.train.skip_nonfinite, cfg.eval.batch_size, cfg.checkpoint.keep) \
        == (3, str(moved), 2, 32, 1)
    assert json.loads((run / "meta.json").read_text())["resumes"][-1]["overrides"] == overrides
    with Checkpoints(run / "checkpoints", read_only=True) as ck:
        assert ck.steps()[-1] == 60
    assert json.loads((run / "summary.json").read_text())["status"] == "completed"


def test_resume_of_a_completed_run_is_a_no_op(done_run):
    before = snapshot(done_run)
    out = vae_inproc("train", "--resume", done_run)
    assert out.code == 0 and out.stdout.strip() == str(done_run)
    assert "nothing to do" in out.stderr and "train.epochs" in out.stderr
    assert snapshot(done_run) == before


# --------------------------------------------------------------- damage and mismatch


def damaged_copy(src: Path, dst: Path, edit) -> Path:
    shutil.copytree(src, dst)
    edit(dst)
    return dst


def largest_array_file(run: Path) -> Path:
    step = max((p for p in (run / "checkpoints").iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    return max((p for p in (step / "state").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)


def truncate(run: Path):
    f = largest_array_file(run)
    os.truncate(f, f.stat().st_size // 2)


def flip_a_byte(run: Path):
    f = largest_array_file(run)
    raw = bytearray(f.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    f.write_bytes(bytes(raw))


def other_array_checksum(run: Path):
    """The record's CRC of the arrays no longer matches them (as after an edit Orbax reads
    without complaint: raw array bytes carry no checksum of Orbax's own)."""
    record = run / "checkpoints" / "40" / "record" / "metadata"
    doc = json.loads(record.read_text())
    doc["state_crc32"] = (doc["state_crc32"] + 1) % 2**32
    record.write_text(json.dumps(doc))


def other_latent_dim(run: Path):
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["model"]["latent_dim"] = 7
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))


def newer_format(run: Path):
    meta = json.loads((run / "meta.json").read_text())
    meta.update(run_format=runs.RUN_FORMAT + 1, vaecli_version="9.0.0")
    (run / "meta.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("edit, needles", [
    (truncate, ["checkpoint step 40", "damaged", "is truncated", "delete that step"]),  # also in a real process
    (flip_a_byte, ["checkpoint step 40", "damaged", "is altered"]),
    # no file sums (killed before sealing): Orbax either fails to read the altered file or
    # loads altered values, which the CRC of the arrays then refuses; one line either way
    (lambda run: (shutil.rmtree(run / "checkpoint_sums"), flip_a_byte(run)), ["checkpoint step 40", "damaged"]),
    (lambda run: (shutil.rmtree(run / "checkpoint_sums"), other_array_checksum(run)),
     ["checkpoint step 40", "damaged", "checksum"]),
    (other_latent_dim, ["does not match the run's config.yaml", "has shape", "7"]),
    (newer_format, ["vaecli 9.0.0", "upgrade vaecli"]),
], ids=["truncated", "edited-file", "edited-file-unsealed", "arrays-not-as-saved", "config-mismatch",
        "newer-vaecli"])
def test_damaged_runs_are_refused_and_left_alone(done_run, tmp_path, edit, needles):
    run = damaged_copy(done_run, tmp_path / "run", edit)
    before = snapshot(run)
    # one case in a real process (exit code, stderr alone, no traceback); the others in this one
    command = vae if edit is truncate else vae_inproc
    assert_error(command("train", "--resume", run, "--set", "train.epochs=4"), 1, *needles)
    assert_error(vae_inproc("eval-elbo", run, "--samples", "1"), 1, *needles)
    assert snapshot(run) == before  # nothing written, nothing lost


# ----------------------------------------------------------------------- non-finite


def nan_updates_from(first_bad: int) -> optax.GradientTransformation:
    """An optimizer stage that turns every update from the `first_bad`-th on into NaN."""

    def update(updates, count, params=None):
        bad = count >= first_bad
        return jax.tree.map(lambda u: jnp.where(bad, jnp.nan, u), updates), count + 1

    return optax.GradientTransformation(lambda params: jnp.zeros((), jnp.int32), update)


def test_all_finite_finds_one_bad_number_in_any_leaf_and_never_overflows():
    tree = {"w": jnp.ones((30, 40)), "b": jnp.full((7,), 3e38)}  # Σ of "b" alone overflows float32
    check = jax.jit(epoch.all_finite)
    assert bool(check(tree))
    for leaf, index in (("w", (17, 3)), ("b", 6)):
        for bad in (jnp.inf, -jnp.inf, jnp.nan):
            assert not bool(check({**tree, leaf: tree[leaf].at[index].set(bad)})), (leaf, bad)


def test_nan_stops_at_the_log_point_naming_the_step_and_keeps_the_last_good_checkpoint(
        tiny_config, tmp_path, monkeypatch, patched_programs):
    real = optimizer.make_optimizer
    monkeypatch.setattr(optimizer, "make_optimizer",
                        lambda cfg, *a, **kw: optax.chain(nan_updates_from(50), real(cfg, *a, **kw)))
    cfg = config.replace(tiny_config, train={"epochs": 5})
    with pytest.raises(RunError) as e:
        train.train(cfg, tmp_path, "nan", argv=["pytest"])
    msg = str(e.value)
    # update index 50 is the 51st step; it is in epoch 3 (steps 41-60)
    assert "non-finite update at step 51 (epoch 3)" in msg and "last good checkpoint: step 40" in msg
    assert "train.skip_nonfinite" in msg
    run = run_folders(tmp_path)[0]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["last_checkpoint_step"] == 40 and "step 51" in summary["error"]
    with Checkpoints(run / "checkpoints", read_only=True) as ck:
        assert ck.steps() == [20, 40]
    good, _ = final_state(run)
    assert all(np.isfinite(np.asarray(a)).all() for a in jax.tree.leaves(good["params"]))


def test_a_config_that_diverges_exits_1_naming_the_term(tiny_cache, tmp_path):
    out = vae_inproc(*tiny_train_args(tiny_cache, tmp_path / "runs", "diverge"), "--set", "optim.name=sgd",
              "--set", "optim.lr=1e10")
    assert_error(out, 1, "non-finite", "reconstruction", "at step", "no checkpoint was saved", only_line=False)
    run = run_folders(tmp_path / "runs")[0]
    assert json.loads((run / "summary.json").read_text())["status"] == "failed"


@pytest.fixture
def marked_cache(tmp_path) -> Path:
    """tiny_bars whose training image 5 is blank (every other image has two bars): the
    patched input pipeline below turns it into NaN, so exactly one step per epoch goes bad."""
    images = make_bars(640, 0)
    images[5] = 0
    data.write_cache(tmp_path / "cache" / TINY, {
        "train": {"images": images, "labels": None},
        "validation": {"images": make_bars(128, 1), "labels": None},
        "test": {"images": make_bars(128, 2), "labels": None}})
    return tmp_path / "cache"


@pytest.mark.parametrize("limit", [4, 2])
def test_skip_nonfinite_drops_bad_updates_inside_the_compiled_step(marked_cache, tmp_path, monkeypatch, limit,
                                                                   patched_programs):
    real = epoch.to_inputs
    blank_to_nan = lambda x_u8, key, scale, dynamic: jnp.where(
        jnp.all(x_u8 == 0, axis=-1, keepdims=True), jnp.nan, real(x_u8, key, scale, dynamic))
    monkeypatch.setattr(epoch, "to_inputs", blank_to_nan)
    cfg = config.load(None, tiny_overrides(marked_cache) + ["train.epochs=4", f"train.skip_nonfinite={limit}"])
    if limit >= 4:  # one bad batch per epoch, 4 epochs: all dropped, the run completes
        run = train.train(cfg, tmp_path / "runs", "skip", argv=["pytest"])
        recs = [r for r in metrics.read(run) if r["split"] == "train"]
        assert [r["skipped_steps"] for r in recs] == [1, 1, 1, 1]
        assert all(np.isfinite(r["loss"]) for r in recs)
        summary = json.loads((run / "summary.json").read_text())
        assert summary["status"] == "completed" and summary["skipped_updates"] == 4
        state, _ = final_state(run)
        assert int(state["skipped"]) == 4
        assert all(np.isfinite(np.asarray(a)).all() for a in jax.tree.leaves(state["params"]))
    else:
        with pytest.raises(RunError, match=r"non-finite reconstruction and KL and update at step \d+ \(epoch 3\).*after skipping 2"):
            train.train(cfg, tmp_path / "runs", "skip", argv=["pytest"])


# ---------------------------------------------------------------- locks and policy


def test_a_second_resume_of_the_same_run_is_refused(done_run):
    with runs.Lock(done_run):  # another trainer holds the run
        before = snapshot(done_run)
        assert_error(vae_inproc("train", "--resume", done_run, "--set", "train.epochs=3"), 1,
                     "is being trained by pid", str(os.getpid()), socket.gethostname())
        assert snapshot(done_run) == before
    assert (done_run / "train.lock").read_text() == ""  # released


def test_a_lock_left_by_a_killed_process_is_not_held(tiny_config, tmp_path):
    run = train.train(config.replace(tiny_config, train={"epochs": 1}), tmp_path, "stale", argv=["pytest"])
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from vaecli.rundir.layout import Lock; "
                               f"Lock({str(run)!r}).acquire(); print('held', flush=True); time.sleep(600)"],
                              cwd=ROOT, env=ENV, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunError, match="is being trained by pid"):
            runs.Lock(run).acquire()
    finally:
        holder.kill()
        holder.wait()
    assert "pid" in (run / "train.lock").read_text()  # the dead holder's note is still there
    resume_lib.resume_run(run, ["train.epochs=2"], argv=["pytest"])  # but its lock died with it
    assert json.loads((run / "summary.json").read_text())["status"] == "completed"


@pytest.mark.parametrize("keep_best, kept", [(True, [2, 4]), (False, [4])])
def test_keep_the_latest_and_the_best(tmp_path, keep_best, kept):
    state = {"w": np.arange(3, dtype=np.float32)}
    with Checkpoints(tmp_path / "ck", keep=1, keep_best=keep_best) as ck:
        for step, elbo in [(1, -90.0), (2, -80.0), (3, -85.0), (4, -95.0)]:
            ck.save(step, state, {"epoch": step}, validation_elbo=elbo)
    with Checkpoints(tmp_path / "ck", read_only=True) as ck:
        assert ck.steps() == kept
        assert restore.resolve_step(ck, "best") == (2 if keep_best else 4)
        assert restore.resolve_step(ck, "latest") == 4


@pytest.fixture(scope="module")
def sparse_eval_run(tiny_config, tmp_path_factory) -> Path:
    """4 epochs, a checkpoint every epoch, validation every second: checkpoints 20, 40, 60, 80,
    of which 40 and 80 were saved at an evaluation epoch."""
    cfg = config.replace(tiny_config, train={"epochs": 4}, eval={"every_epochs": 2})
    return built_once(tmp_path_factory, "sparse", lambda root: train.train(cfg, root, "sparse", argv=["pytest"]))[1]


def test_only_checkpoints_of_evaluation_epochs_compete_for_best(sparse_eval_run):
    elbo = {r["step"]: r["elbo"] for r in metrics.read(sparse_eval_run) if r["split"] == "validation"}
    assert sorted(elbo) == [40, 80]
    ranked = {}
    for folder in (sparse_eval_run / "checkpoints").iterdir():
        if folder.name.isdigit():  # the metric Orbax ranks each checkpoint by
            ranked[int(folder.name)] = json.loads((folder / "metrics" / "metrics").read_text())["validation_elbo"]
    # epochs 1 and 3 were not validated: no stale ELBO of an earlier epoch is carried over
    assert ranked == {20: None, 40: elbo[40], 60: None, 80: elbo[80]}
    with Checkpoints(sparse_eval_run / "checkpoints", read_only=True) as ck:
        assert ck.best_step() == max(elbo, key=elbo.get)


def test_step_best_in_the_commands(sparse_eval_run, tmp_path):
    """A run whose best checkpoint is not its latest (killed before step 80's save finished:
    latest 60, not validated; best 40): --step best loads 40 in both commands."""
    run = tmp_path / "run"
    shutil.copytree(sparse_eval_run, run)
    shutil.rmtree(run / "checkpoints" / "80")
    (run / "checkpoint_sums" / "80.json").unlink()
    results = {}
    for step in ("best", "40", "latest"):
        out = vae_inproc("eval-elbo", run, "--step", step, "--samples", "1", "--json", "--seed", "3")
        assert out.code == 0, out.stderr
        results[step] = json.loads(out.stdout)
    assert results["best"]["checkpoint_step"] == 40 and results["latest"]["checkpoint_step"] == 60
    assert results["best"]["results"][0]["log_likelihood"] == results["40"]["results"][0]["log_likelihood"]
    assert results["best"]["results"][0]["log_likelihood"] != results["latest"]["results"][0]["log_likelihood"]
    out = vae_inproc("sample", run, "--step", "best", "--n", "4", "--json", "--out", tmp_path / "s")
    assert out.code == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["step"] == 40 and Path(doc["png"]).name == "prior-step40-seed0-n4.png"
