"""Data parallel over several devices and processes: the same numbers as one device.

CPU devices are forced with XLA_FLAGS (which must be set before JAX starts, hence the
subprocesses); the two-process job runs on localhost through jax.distributed (Gloo).
"""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
from helpers import CONFIG, ENV, ROOT, TINY_VQ, assert_same_bits, sets, tiny_overrides, vae_popen

from vaecli.rundir import layout as runs
from vaecli.rundir import restore

FORCED = {**ENV, "XLA_FLAGS": f"{ENV.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=4".strip()}


def final_leaves(run_path):
    run = runs.open_run(run_path)
    _, state, step, _ = restore.load_state(run.config, run.image_shape, run.checkpoint_dir)
    return step, state


def assert_close(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)  # a leaf missing on one side fails
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x, np.float64), np.asarray(y, np.float64), rtol=1e-5, atol=1e-6)


def test_two_and_four_devices_match_one(tiny_cache, tiny_run, tmp_path):
    script = textwrap.dedent(f"""
        import json, shutil, sys
        from pathlib import Path
        import jax, numpy as np
        sys.path.insert(0, {str(ROOT / 'tests')!r})
        from helpers import tiny_overrides
        from vaecli.compiled import estimator
        from vaecli import config
        from vaecli import data
        from vaecli.compiled import devices
        from vaecli.training import start as train
        from vaecli.compiled import state as st
        assert len(jax.devices()) == 4
        out = {{}}
        for n in (2, 4):
            cfg = config.load(None, tiny_overrides({str(tiny_cache)!r}) + ["train.epochs=3", f"train.devices={{n}}"])
            out[n] = str(train.train(cfg, {str(tmp_path)!r}, f"dev{{n}}", argv=[]))
        # the estimator: examples split over 4 devices vs one device
        fn, _, state = st.init_state(cfg, (8, 8, 1))
        test = data.load_split(cfg.data, "test")
        one = estimator.per_example(fn, state["params"], test.images, test.scale, 7, 0, 32)
        est, plan = estimator.compile_estimator(fn, state["params"], test.images, test.scale, 7, 32,
                                             mesh=devices.make_mesh(4))
        four = est(state["params"], 0)
        assert plan["devices"] == 4
        for k in one:
            np.testing.assert_allclose(one[k], four[k], rtol=1e-5, atol=1e-5)
        # eval-elbo splits each batch over the local devices: --batch-size must divide by them
        from typer.testing import CliRunner
        from vaecli.cli import app
        r = CliRunner().invoke(app, ["eval-elbo", out[4], "--samples", "1", "--batch-size", "30"])
        out["eval"] = [r.exit_code, r.stderr]
        # and so must train.batch_size, refused before anything is written
        r = CliRunner().invoke(app, ["train", "--config", {str(CONFIG)!r}, *{sets(tiny_overrides(tiny_cache))!r},
                                     "--set", "train.batch_size=30", "--set", "train.devices=4",
                                     "--runs-dir", {str(tmp_path / "refused")!r}])
        out["train"] = [r.exit_code, r.stderr]
        # a one-device run of batch 32 (tiny_run) resumed on 3 devices: refused before it is touched
        one = Path(shutil.copytree({str(tiny_run)!r}, {str(tmp_path / "one-device")!r}))
        before = {{str(p): p.read_bytes() for p in sorted(one.rglob("*")) if p.is_file()}}
        r = CliRunner().invoke(app, ["train", "--resume", str(one), "--set", "train.devices=3", "--set", "train.epochs=4"])
        after = {{str(p): p.read_bytes() for p in sorted(one.rglob("*")) if p.is_file()}}
        out["resume"] = [r.exit_code, r.stderr, before == after]
        print(json.dumps(out))
    """)
    p = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=FORCED, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    paths = json.loads(p.stdout.strip().splitlines()[-1])
    # tiny_run: the same config (3 epochs) trained on one device in this process
    (s1, one), (s2, two), (s4, four) = final_leaves(tiny_run), final_leaves(paths["2"]), final_leaves(paths["4"])
    assert s1 == s2 == s4 == 60
    assert_close(one, two)
    assert_close(one, four)
    assert len(json.loads((Path(paths["4"]) / "meta.json").read_text())["devices"]) == 4
    code, err = paths["eval"]
    assert code == 2 and "--batch-size=30 must divide by the 4 devices" in err and "Traceback" not in err
    code, err = paths["train"]
    assert code == 2 and "train.batch_size=30 must divide by the 4 devices" in err and "Traceback" not in err
    assert not (tmp_path / "refused").exists() or list((tmp_path / "refused").iterdir()) == []
    code, err, untouched = paths["resume"]
    assert code == 2 and "train.batch_size=32 must divide by the 3 devices" in err and untouched


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _job(args: list, timeout: float = 300) -> list[subprocess.CompletedProcess]:
    """`vae ARGS --distributed` as two processes of one job on localhost."""
    port = _free_port()
    procs = []
    for i in range(2):
        env = {"VAECLI_COORDINATOR": f"127.0.0.1:{port}", "VAECLI_NUM_PROCESSES": "2", "VAECLI_PROCESS_ID": str(i)}
        procs.append(vae_popen(*args, "--distributed", env=env))
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=timeout)
        out.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    return out


def test_two_processes_match_one_and_resume_as_a_job(tiny_cache, tiny_config, tiny_run, tmp_path):
    runs_dir = tmp_path / "job"
    first, second = _job(["train", "--config", CONFIG, *sets(tiny_overrides(tiny_cache)), "--set", "train.epochs=2",
                          "--name", "job", "--runs-dir", runs_dir])
    assert first.returncode == 0 and second.returncode == 0, (first.stderr[-2000:], second.stderr[-2000:])
    run = Path(first.stdout.strip())  # process 0 answers; process 1 prints nothing on stdout
    assert second.stdout == "" and [p.name for p in runs_dir.iterdir()] == [run.name]
    assert json.loads((run / "summary.json").read_text())["status"] == "completed"

    first, second = _job(["train", "--resume", run, "--set", "train.epochs=3"])
    assert first.returncode == 0 and second.returncode == 0, (first.stderr[-2000:], second.stderr[-2000:])
    assert tiny_config.train.epochs == 3  # tiny_run: the same config trained on one device in one process
    (s2, job), (s1, one) = final_leaves(run), final_leaves(tiny_run)
    assert s1 == s2 == 60
    assert_close(one, job)
    steps = [r["step"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
             if r["split"] == "train"]
    assert steps == [20, 40, 60]  # one writer: no line twice


def test_replicas_laid_out_over_four_devices_train_as_alone(tiny_cache, tmp_path):
    """Four seeds as one program on four host devices: one replica per device, each running
    the single-run epoch, so each equals its run alone bit for bit; so do the two seeds of a
    VQ-VAE (`--seeds 0,1`), its codebook averages and dead-code restarts included. Eight
    replicas over four devices (two each), the VQ-VAE's two on one device (vmapped) and a
    `vae tune` whose slot is refilled run too; train.devices that the replicas do not divide
    over is refused before anything is written."""
    script = textwrap.dedent(f"""
        import json, sys
        import jax
        sys.path.insert(0, {str(ROOT / 'tests')!r})
        from helpers import sets, tiny_overrides
        from vaecli import config
        from vaecli.compiled import devices
        from vaecli.training import start as train
        from vaecli.tune import study as tune
        assert len(jax.devices()) == 4
        base = tiny_overrides({str(tiny_cache)!r}) + ["train.epochs=2"]
        cfgs = [config.load(None, base + [f"seed={{s}}"]) for s in range(8)]
        assert devices.replica_layout(cfgs[0], 4).shape == {{"replica": 4}}
        assert devices.replica_layout(cfgs[0], 6).shape == {{"replica": 3}}
        out = {{"program": [str(p) for p in train.train_replicas(cfgs[:4], {str(tmp_path)!r},
                                                                   [f"r{{s}}" for s in range(4)], argv=[])]}}
        out["alone"] = [str(train.train(config.replace(c, train={{"devices": 1}}), {str(tmp_path)!r}, f"a{{s}}", argv=[]))
                        for s, c in enumerate(cfgs[:4])]
        out["eight"] = [str(p) for p in train.train_replicas(cfgs, {str(tmp_path)!r}, [f"e{{s}}" for s in range(8)],
                                                              argv=[])]
        raw = config.to_dict(cfgs[0])
        study = tune.create(raw, ["optim.lr=log:1e-4:1e-2"], 5, 4, "none", {str(tmp_path)!r}, "study", [])
        out["tune"] = tune.run(study, [])["states"]
        from typer.testing import CliRunner
        from vaecli.cli import app
        r = CliRunner().invoke(app, ["train", "--config", {str(CONFIG)!r}, *{sets(tiny_overrides(tiny_cache))!r},
                                     "--seeds", "0-3", "--set", "train.devices=3",
                                     "--runs-dir", {str(tmp_path / "refused")!r}])
        out["refused"] = [r.exit_code, r.stderr]
        # a VQ-VAE whose dead codes restart: `--seeds 0,1` lays the two over two devices, and on
        # one device (train.devices=1) the vmapped program trains them
        vq = [*tiny_overrides({str(tiny_cache)!r}), *{TINY_VQ!r}, "train.epochs=2"]
        vq_cfgs = [config.load({str(CONFIG)!r}, vq + [f"seed={{s}}", "train.devices=1"]) for s in (0, 1)]
        assert devices.replica_layout(config.replace(vq_cfgs[0], train={{"devices": 0}}), 2).shape == {{"replica": 2}}
        r = CliRunner().invoke(app, ["train", "--config", {str(CONFIG)!r}, *sets(vq), "--seeds", "0,1",
                                     "--runs-dir", {str(tmp_path / "vq")!r}])
        out["vq_seeds"] = [r.exit_code, r.stdout.split(), r.stderr]
        out["vq_alone"] = [str(train.train(c, {str(tmp_path)!r}, f"vqa{{i}}", argv=[])) for i, c in enumerate(vq_cfgs)]
        out["vq_one_device"] = [str(p) for p in train.train_replicas(vq_cfgs, {str(tmp_path)!r}, ["vqv0", "vqv1"],
                                                                     argv=[])]
        print(json.dumps(out))
    """)
    p = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=FORCED, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    for prog, alone in zip(out["program"], out["alone"]):
        (sp, a), (sa, b) = final_leaves(prog), final_leaves(alone)
        assert sp == sa == 40
        assert_same_bits(a, b)
    for prog, eight in zip(out["program"], out["eight"]):  # two replicas per device: the vmapped program
        assert_close(final_leaves(prog)[1], final_leaves(eight)[1])
    assert out["tune"] == {"complete": 5}
    code, err = out["refused"]
    assert code == 2 and "the 4 replicas of this program do not divide over 3 devices" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "refused").exists() or list((tmp_path / "refused").iterdir()) == []
    code, seeded, err = out["vq_seeds"]
    assert code == 0 and len(seeded) == 2, err
    for prog, alone, vmapped in zip(seeded, out["vq_alone"], out["vq_one_device"]):
        (sp, a), (sa, b), (sv, c) = final_leaves(prog), final_leaves(alone), final_leaves(vmapped)
        assert sp == sa == sv == 40
        assert_same_bits(a, b)
        assert_close(c, b)
    assert not np.array_equal(final_leaves(seeded[0])[1]["params"]["quantizer"]["codebook"],
                              final_leaves(seeded[1])[1]["params"]["quantizer"]["codebook"])
