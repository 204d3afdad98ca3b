"""The commands in scripts and pipes: results alone on stdout, progress and logs on stderr,
no colour or progress bar when the output is not a terminal; and JAX's persistent compile
cache, which lets the second process of a sweep load its programs instead of compiling."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import tiny_train_args, two_processes_once, vae_inproc, vae_process

from vaecli.rundir import metrics

ANSI = "\x1b"
HIT = "Persistent compilation cache hit for 'jit_epoch'"


@pytest.fixture(scope="module")
def two_processes(tiny_cache, tmp_path_factory) -> tuple:
    """The same tiny training in two fresh processes sharing a new, empty compile cache."""
    return two_processes_once(tiny_cache, tmp_path_factory)


def losses(run: Path) -> list:
    return [(m["step"], m["split"], m["loss"]) for m in metrics.read(run)]


def test_train_in_a_pipe_prints_the_run_alone_and_plain_progress(two_processes):
    first = two_processes[0]
    assert first.returncode == 0, first.stderr
    run = Path(first.stdout.strip())
    assert first.stdout == f"{run}\n" and run.is_dir()  # the run folder and nothing else
    assert "epoch 1/2" in first.stderr and "epoch 2/2" in first.stderr  # progress: plain lines on stderr
    assert ANSI not in first.stderr + first.stdout  # no colour, no bar redrawn with escape codes
    assert "━" not in first.stderr and "\r" not in first.stderr  # rich's bar characters


def test_errors_and_results_carry_no_colour_in_a_pipe(two_processes, tmp_path):
    run = Path(two_processes[0].stdout.strip())
    p = vae_process("eval-elbo", tmp_path / "nowhere")
    assert p.returncode == 1 and p.stderr.startswith("error: run folder not found") and ANSI not in p.stderr
    p = vae_process("eval-elbo", run, "--samples", 2)
    assert p.returncode == 0, p.stderr
    assert "K=2" in p.stdout and "log p(x)" in p.stdout and ANSI not in p.stdout + p.stderr
    assert p.stdout.rstrip().endswith(f"written to {run}/eval/test-step{json.loads((run / 'summary.json').read_text())['steps']}-k2.json")
    p = vae_process("runs", run.parent)
    assert p.returncode == 0 and p.stderr == "" and ANSI not in p.stdout
    assert p.stdout.splitlines()[1].split()[:2] == [run.name, "completed"]


def test_second_process_loads_its_programs_from_the_compile_cache(two_processes):
    first, _, entries, second = two_processes
    assert first.returncode == 0 and second.returncode == 0, second.stderr
    assert any(name.startswith("jit_epoch-") for name in entries), entries  # the first run wrote the epoch
    assert HIT in second.stderr  # and the second loaded it instead of compiling
    one, two = Path(first.stdout.strip()), Path(second.stdout.strip())
    assert one != two
    assert losses(two) == losses(one)  # the loaded program computes the same bits
    for run in (one, two):  # seen with `pytest -s`; compile_s is not asserted (a noisy shared machine)
        print(f"{run.name}: compile_s {json.loads((run / 'summary.json').read_text())['compile_s']:.2f}")


CACHE_SETTINGS = ("jax_enable_compilation_cache", "jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs")


def settings_after(args: list, env: dict):
    """(result, JAX's cache settings as the command left them) of the command line run in this
    process with the environment `env` (CliRunner's), JAX's settings restored afterwards. What
    a command sets up is the same in a fresh process; whether JAX then reads the settings, at
    its first compilation, is shown by the two processes above."""
    import jax

    saved = {k: getattr(jax.config, k) for k in CACHE_SETTINGS}
    try:
        out = vae_inproc(*args, env=env)
        return out, tuple(getattr(jax.config, k) for k in CACHE_SETTINGS)
    finally:
        for k, v in saved.items():
            jax.config.update(k, v)


def untrained_run(tiny_config, tmp_path) -> Path:
    """A run folder with its config and meta but no checkpoint: eval-elbo accepts it, sets the
    compile cache up, then stops at once ("no checkpoint")."""
    from vaecli import config

    run = tmp_path / "untrained"
    run.mkdir()
    (run / "config.yaml").write_text(config.dump_yaml(tiny_config))
    (run / "meta.json").write_text(json.dumps({"run_format": 2, "data": {"image_shape": [8, 8, 1]}}))
    return run


def test_compile_cache_off_and_the_option_over_the_environment(tmp_path, tiny_config):
    run = untrained_run(tiny_config, tmp_path)
    env = {"VAECLI_COMPILE_CACHE": str(tmp_path / "from-env")}
    r, settings = settings_after(["--compile-cache", "off", "eval-elbo", run], env)
    assert r.code == 1 and r.stderr.startswith("error: no checkpoint"), r.stderr
    assert settings[0] is False
    r, settings = settings_after(["--compile-cache", tmp_path / "from-option", "eval-elbo", run], env)
    assert settings[:2] == (True, str(tmp_path / "from-option"))
    assert not (tmp_path / "from-env").exists()
    r, settings = settings_after(["eval-elbo", run], env)  # the environment, without the option
    assert settings[:2] == (True, str(tmp_path / "from-env")) and (tmp_path / "from-env").is_dir()


def test_compile_cache_default_folder_follows_xdg(tmp_path, tiny_config):
    env = {"VAECLI_COMPILE_CACHE": None, "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    r, (enabled, folder, min_s) = settings_after(["eval-elbo", untrained_run(tiny_config, tmp_path)], env)
    assert r.code == 1
    assert enabled is True and Path(folder) == tmp_path / "xdg" / "vaecli" / "jax" and Path(folder).is_dir()
    assert min_s == 0.0  # every program is stored, as the README says (JAX's default, 1 s, would skip most)


def test_unwritable_compile_cache_warns_and_goes_on(tmp_path, tiny_cache, tiny_config, caplog):
    """A cache folder that cannot be created costs a warning, not the run: training completes,
    with JAX's cache turned off."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    # In a fresh process: the warning is stderr's first line, in vaecli's format; then the
    # command goes on to its error.
    p = vae_process("--compile-cache", blocker / "jax", "eval-elbo", untrained_run(tiny_config, tmp_path))
    lines = p.stderr.splitlines()
    assert lines[0].startswith(f"warning: compile cache {blocker / 'jax'}") and "off" in lines[0], p.stderr
    assert p.returncode == 1 and lines[-1].startswith("error: no checkpoint"), p.stderr
    # A training with it (in this process, where the warning is a log record) completes.
    out, settings = settings_after(["--compile-cache", blocker / "jax",
                                    *tiny_train_args(tiny_cache, tmp_path / "runs", "nocache"), "--set", "train.epochs=1"],
                                   {})
    assert out.code == 0, out.stderr
    assert [r.getMessage() for r in caplog.records if r.name == "vaecli"][0].startswith(f"compile cache {blocker / 'jax'}")
    assert json.loads((Path(out.stdout.strip()) / "summary.json").read_text())["status"] == "completed"
    assert settings[0] is False
