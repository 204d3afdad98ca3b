"""Shell completion through Typer/Click's completion protocol: the shell calls `vae` with
_VAE_COMPLETE, COMP_WORDS and COMP_CWORD set, and reads the candidates from stdout."""
from __future__ import annotations

import os
import subprocess
import sys

from helpers import ROOT
from typer.testing import CliRunner

from vaecli import config
from vaecli.cli import app
from vaecli.evaluation import sample


def complete(line: str) -> list[str]:
    """What bash gets on TAB at the end of `line` (in-process, through the real protocol)."""
    words = line.split(" ")
    env = {"_VAE_COMPLETE": "complete_bash", "COMP_WORDS": line, "COMP_CWORD": str(len(words) - 1)}
    r = CliRunner().invoke(app, [], env=env, prog_name="vae")
    assert r.exit_code == 0, r.output
    return r.stdout.splitlines()


def test_sample_mode_completes_the_modes():
    assert complete("vae sample runs/x --mode ") == list(sample.MODES)
    assert complete("vae sample runs/x --mode tr") == ["traverse"]


def test_set_completes_dotted_config_keys():
    keys = complete("vae train --set ")
    assert "optim.lr=" in keys and "model.hidden=" in keys and "seed=" in keys
    # every leaf of the Config dataclasses, and nothing else
    leaves = [f"{k}=" for k in _leaves(config.to_dict(config.Config()))]
    assert sorted(keys) == sorted(leaves)
    assert complete("vae train --config c.yaml --set optim.l") == ["optim.lr="]
    assert complete("vae train --set model.kind=") == ["model.kind=mlp", "model.kind=conv"]
    assert complete("vae show c.yaml --set objective.na") == ["objective.name="]


def _leaves(d: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in d.items():
        out += _leaves(v, f"{prefix}{k}.") if isinstance(v, dict) else [prefix + k]
    return out


def test_completion_in_a_real_process_imports_no_jax():
    probe = ("import atexit, sys; atexit.register(lambda: sys.stderr.write('jax' in sys.modules and 'JAX' or 'NOJAX'));"
             "from vaecli.cli import app; app(prog_name='vae')")
    env = {**os.environ, "_VAE_COMPLETE": "complete_bash", "COMP_WORDS": "vae sample r --mode ", "COMP_CWORD": "4"}
    p = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == list(sample.MODES)
    assert p.stderr.endswith("NOJAX"), p.stderr


def test_completion_script_and_install_options():
    """`vae --show-completion` prints (and --install-completion installs) the script the
    shell's instruction `source_bash` returns; the shell itself is detected at run time."""
    r = CliRunner().invoke(app, [], env={"_VAE_COMPLETE": "source_bash"}, prog_name="vae")
    assert r.exit_code == 0, r.output
    assert "_VAE_COMPLETE=complete_bash" in r.stdout and "complete -o default -F _vae_completion vae" in r.stdout
    helptext = CliRunner().invoke(app, ["--help"], prog_name="vae", env={"COLUMNS": "200"}).stdout
    assert "--install-completion" in helptext and "--show-completion" in helptext
