"""A checkpoint under evaluation (vaecli.rundir.evaluated) and the names of what it writes
(vaecli.rundir.names.Output): every name reads back as written, the parameters evaluated are
the EMA or the raw ones as asked, and `-raw` marks exactly the raw outputs of a run with EMA."""
from __future__ import annotations

import json
from itertools import product

import jax
import numpy as np
import pytest

from helpers import built_once

from vaecli import config, data
from vaecli.errors import RunError
from vaecli.evaluation import elbo, grad_snr, sample
from vaecli.rundir import evaluated, layout
from vaecli.rundir.checkpoints import Checkpoints
from vaecli.rundir.names import OUTPUT_KINDS, Output
from vaecli.training import start as train


def _every_output() -> list[Output]:
    out = []
    for step, raw in product((0, 7, 12000), (False, True)):
        out += [Output("elbo", step, raw, split=s, k=k) for s in data.SPLITS for k in (1, 5000)]
        out += [Output("grad-snr", step, raw), Output("disentanglement", step, raw)]
        out += [Output("sample", step, raw, mode=m, seed=seed, n=n, steps=st, temperature=t)
                for m, seed, n, st, t in product(("prior", "recon", "traverse", "latents"), (0, 3), (None, 64),
                                                 (None, 11), (1.0, 0.5, 1e-05, 2.5, float("inf")))]
        out += [Output("samples", step, raw, split=s, n=n, seed=seed, temperature=t, features=f)
                for s, n, seed, t, f in product(data.SPLITS, (2, 10000), (0, 3), (1.0, 0.5), ("0a1b2c3d4e5f", "dino_v2"))]
    out += [Output("picture", step, mode=m) for step in (0, 60) for m in ("prior", "recon")]
    out += [Output("curves", step) for step in (0, 60)]
    return out


def test_every_output_name_reads_back_as_written_and_no_two_collide(tmp_path):
    outputs = list(dict.fromkeys(_every_output()))
    assert {o.kind for o in outputs} == set(OUTPUT_KINDS)
    names = {}
    for o in outputs:
        for ext in o.exts:
            name = o.file(ext)
            assert Output.parse(name) == o, name
            assert names.setdefault(name, o) == o, f"{name} names two outputs"
            path = layout.Folder(tmp_path).output(o, ext)
            assert path.parent.parent == tmp_path and Output.parse(path.name) == o
            assert layout.Folder(tmp_path).output(o, ext, out=tmp_path / "elsewhere") == tmp_path / "elsewhere" / name
    # the folder of each kind: the run folder's own eval/, samples/ and plots/
    folders = {o.kind: layout.Folder(tmp_path).output(o).parent.name for o in outputs}
    assert folders == {"elbo": layout.EVAL, "grad-snr": layout.EVAL, "disentanglement": layout.EVAL, "samples": layout.EVAL,
                       "sample": layout.SAMPLES, "picture": layout.SAMPLES, "curves": layout.PLOTS}


def test_the_temperature_is_in_the_name_of_prior_pictures_only():
    prior = Output("sample", 3, mode="prior", seed=0, temperature=0.5)
    recon = Output("sample", 3, mode="recon", seed=0, temperature=0.5)
    assert Output.parse(prior.file()).temperature == 0.5
    assert recon == Output("sample", 3, mode="recon", seed=0) and recon.file() != prior.file().replace("prior", "recon")


@pytest.mark.parametrize("name", [
    "test-step05-k1.json",  # a number vaecli never writes with a leading zero
    "test-step5-k1.npy", "grad-snr-step5.png", "prior-step5.npy",  # an extension the kind is not written as
    "test-step5-k1-raw-raw.json", "test-step5.json", "bogus-step5-k1.json", "grad-snr-step.json",
    "prior-step4-seed0-t0.50.png",  # a temperature not written as %g
    "prior-step4-seed0-n0.png",  # n=0: not an option vaecli writes
    "config.yaml", "summary.json", ".test-step5-k1.json.123.tmp",  # and the atomic writer's temporary files
])
def test_names_vaecli_does_not_write_are_not_read(name):
    assert Output.parse(name) is None


def test_table_reads_the_test_evaluations_named_by_the_same_rule(tmp_path):
    folder = layout.Folder(tmp_path)
    written = [Output("elbo", 5, split="test", k=50), Output("elbo", 5, True, split="test", k=5000),
               Output("elbo", 9, split="validation", k=1), Output("grad-snr", 9)]
    for o in written:
        folder.output(o).parent.mkdir(exist_ok=True)
        folder.output(o).write_text("{}")
    (folder.eval_dir / "notes.txt").write_text("")
    assert sorted(folder.outputs("elbo"), key=lambda o: (o.step, o.k)) == written[:3]
    assert folder.outputs("grad-snr") == [written[3]] and folder.outputs("curves") == []


# ----------------------------------------------------------------- a trained run, opened


@pytest.fixture(scope="module")
def ema_run(tiny_config, tmp_path_factory):
    cfg = config.replace(tiny_config, train={"ema_decay": 0.9})  # as tests/training/test_ema.py's run
    return built_once(tmp_path_factory, "ema", lambda root: train.train(
        cfg, root, "ema", argv=["pytest"], progress="none"))[1]


def _saved(run_path, step: int) -> dict:
    """The checkpoint's arrays, read with Orbax directly, not through vaecli.rundir.restore."""
    import orbax.checkpoint as ocp

    with Checkpoints(layout.open_run(run_path).checkpoint_dir, read_only=True) as ck:
        state = ck.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))["state"]
    return jax.tree.map(np.asarray, state)


def _same(a, b) -> bool:
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(la) == len(lb) and all(np.asarray(x).tobytes() == np.asarray(y).tobytes() for x, y in zip(la, lb))


def test_a_run_with_ema_is_evaluated_with_its_ema_unless_raw_is_asked_for(ema_run):
    ema = evaluated.open_checkpoint(ema_run)
    raw = evaluated.open_checkpoint(ema_run, raw_params=True)
    saved = _saved(ema_run, ema.step)
    assert (ema.params_kind, ema.raw, raw.params_kind, raw.raw) == ("ema", False, "raw", True)
    assert _same(ema.params, saved["ema"]) and _same(raw.params, saved["params"])
    assert not _same(saved["ema"], saved["params"])  # else this test could not tell them apart
    assert raw.step == ema.step == max(int(p.name) for p in raw.run.checkpoint_dir.iterdir() if p.name.isdigit())
    for ckpt in (ema, raw):
        name = Output.parse(ckpt.output("elbo", split="test", k=3).name)
        assert (name.raw, name.step, name.k) == (ckpt.raw, ckpt.step, 3)
        assert ckpt.output("grad-snr").parent == ema_run / layout.EVAL


def test_a_run_without_ema_has_one_set_of_parameters_and_no_raw_names(tiny_run, tmp_path):
    plain, asked_raw = evaluated.open_checkpoint(tiny_run), evaluated.open_checkpoint(tiny_run, raw_params=True,
                                                                                         out=tmp_path)
    assert plain.params_kind == asked_raw.params_kind == "raw" and not plain.raw and not asked_raw.raw
    assert _same(plain.params, asked_raw.params) and _same(plain.params, _saved(tiny_run, plain.step)["params"])
    assert asked_raw.output("sample", mode="prior", seed=0) == tmp_path / plain.output("sample", mode="prior",
                                                                                       seed=0).name


def test_the_checkpoint_is_restored_only_when_used(tiny_run):
    ckpt = evaluated.open_checkpoint(tiny_run, step=10**9)  # the run opened, its config readable at once
    assert ckpt.config.model.latent_dim > 0
    with pytest.raises(RunError, match=r"--step 1000000000: no checkpoint at that step"):
        ckpt.params
    with pytest.raises(RunError, match="not a run folder"):
        evaluated.open_checkpoint(layout.Folder(tiny_run).checkpoint_dir)


def test_write_json_is_whole_or_says_why_not(tiny_run, tmp_path):
    ckpt = evaluated.open_checkpoint(tiny_run, out=tmp_path / "new" / "folder")
    target = ckpt.output("grad-snr")
    assert ckpt.write_json(target, {"a": [1, 2]}, "then this") == {"written_to": str(target)}
    assert json.loads(target.read_text()) == {"a": [1, 2]} and sorted(p.name for p in target.parent.iterdir()) \
        == [target.name]  # no temporary file left beside it
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    failed = ckpt.write_json(blocked / "x.json", {}, "then this")
    assert set(failed) == {"not_saved"} and str(blocked) in failed["not_saved"] \
        and failed["not_saved"].endswith("; then this")


def test_what_the_commands_write_is_named_by_the_checkpoint_they_evaluated(ema_run, tmp_path):
    """eval-elbo, grad-snr and sample on the raw parameters of a run with EMA: each file reads
    back as its command's kind, at the step evaluated, marked raw."""
    report = elbo.evaluate(ema_run, split="validation", samples="1,2", kl_mc_samples=0, raw_params=True,
                           out=tmp_path, max_rows=8)
    snr = grad_snr.grad_snr(ema_run, samples="1", estimators="reparam", draws=2, batch_size=2, split="validation",
                            raw_params=True, out=tmp_path)
    pic = sample.sample(ema_run, mode="latents", n=8, raw_params=True, out=tmp_path, split="validation")
    read = {p.name: Output.parse(p.name) for p in tmp_path.iterdir()}
    assert None not in read.values() and all(o.raw and o.step == report["checkpoint_step"] for o in read.values())
    assert sorted((o.kind, o.k) for o in read.values() if o.kind == "elbo") == [("elbo", 1), ("elbo", 2)]
    assert Output.parse(snr["written_to"].rsplit("/", 1)[1]).kind == "grad-snr"
    files = [pic[key].rsplit("/", 1)[1] for key in ("png", "npy")]
    assert {read[n].kind for n in files} == {"sample"} and len({read[n] for n in files}) == 1  # one name, two files
