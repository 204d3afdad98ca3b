"""Compiled programs kept for the process: traced once, bounded, keyed by exactly what they bake in."""
from __future__ import annotations

from helpers import assert_same_bits, final_state

from vaecli import config, data
from vaecli.compiled import cache as programs
from vaecli.compiled import epoch
from vaecli.compiled import estimator
from vaecli.compiled import state as state_lib
from vaecli.rundir import metrics
from vaecli.training import start as train


def test_a_program_is_traced_once_and_kept_for_the_process(tmp_path, tiny_config):
    """One trace of the epoch and of the validation estimator per run (reused at every epoch
    and evaluation); a later run of the same program in the process traces nothing, also with
    other values of what the step does not bake in, and computes the bits of a fresh trace."""
    programs.clear()
    before = epoch.TRACES["epoch"], estimator.TRACES["estimator"]
    traces = lambda: (epoch.TRACES["epoch"] - before[0], estimator.TRACES["estimator"] - before[1])
    cfg = config.replace(tiny_config, train={"epochs": 2})
    first = train.train(cfg, tmp_path, "first", argv=[], progress="none")
    assert traces() == (1, 1)
    again = train.train(cfg, tmp_path, "again", argv=[], progress="none")
    other_cfg = config.replace(cfg, seed=3, train={"epochs": 1}, objective={"beta": 0.5}, optim={"lr": 3e-3})
    other = train.train(other_cfg, tmp_path, "other", argv=[], progress="none")
    assert traces() == (1, 1)
    assert_same_bits(final_state(first)[0], final_state(again)[0])
    programs.clear()
    fresh = train.train(other_cfg, tmp_path, "fresh", argv=[], progress="none")
    assert traces() == (2, 2)
    assert_same_bits(final_state(other)[0], final_state(fresh)[0])
    strip = lambda rows: [{k: v for k, v in r.items() if not k.endswith("_s")} for r in rows]
    assert strip(metrics.read(other)) == strip(metrics.read(fresh))


def test_kept_programs_are_bounded_and_the_least_recently_used_goes_first(monkeypatch):
    monkeypatch.setattr(programs, "MAX_PROGRAMS", 2)
    monkeypatch.setattr(programs, "_MEMO", type(programs._MEMO)())
    built = []
    for name in ["a", "b", "a", "c", "b", "a"]:
        assert programs.get(("test", name), lambda: built.append(name) or name.upper()) == name.upper()
    # a, b built; a used again (b is now the oldest); c evicts b; b evicts a; a evicts c
    assert built == ["a", "b", "c", "b", "a"] and list(programs._MEMO) == [
        (("test", "b"), programs.environment()), (("test", "a"), programs.environment())]


# A changed value for every key whose role is not compiled (vaecli.config.schema): what a
# program's key leaves out.
IGNORED_CHANGES = {
    "": {"seed": 7},
    "data": {"dataset": "mnist", "data_dir": "/elsewhere", "manual_dir": "/elsewhere", "cache_dir": "/elsewhere",
             "val_size": 5},
    "train": {"epochs": 9, "time_limit": "1h", "patience": 2, "min_delta": 0.5},
    "optim": {"weight_decay": 0.25, "lr": 0.5},  # lr: with the constant schedule
    "objective": {"beta": 3.0, "warmup_epochs": 2.0, "free_bits": 0.5, "alpha": 0.25},
    "eval": {"every_epochs": 3, "batch_size": 32, "grid": 4},
    "checkpoint": {"every_epochs": 2, "keep": 1, "keep_best": True},
    "code_prior": {"layers": 3, "channels": 8, "epochs": 2, "batch_size": 16, "lr": 0.5},
    "log": {"tensorboard": False, "progress": "lines",
            "wandb": {"project": "p", "entity": "e", "mode": "offline", "tags": ["t"]},
            "mlflow": {"tracking_uri": "file:/elsewhere", "experiment": "e"}},
}


def _dotted(tree: dict, prefix: str = "") -> set[str]:
    return {k for name, v in tree.items()
            for k in (_dotted(v, f"{prefix}{name}.") if isinstance(v, dict) else {f"{prefix}{name}"})}


# Ignored keys that only some objectives read (the others refuse a changed value): each is
# changed on a base whose objective reads it.
READ_BY = {("objective", "alpha"): {"name": "vr", "samples": 2}}
# Where the images come from: each source's keys changed together (a TFDS config refuses them
# one by one), data.dataset back at its default, which such a source ignores. The program sees
# the images' shape and number only.
OWN_SOURCES = ({"dataset": "binarized_mnist", "source": "folder", "path": "/elsewhere/images", "image_size": [8, 8],
                "test_size": 3, "split_seed": 2},
               {"dataset": "binarized_mnist", "source": "arrays", "path": "/elsewhere/images.npz", "test_size": 4,
                "split_seed": 5})


def _assert_same_program(base, changes: dict):
    raw = config.to_dict(base)
    for section, values in changes.items():
        (raw[section] if section else raw).update(values)
    changed = config.from_dict(raw)
    assert programs.training_fields(changed) == programs.training_fields(base)
    split = data.load_split(base.data, "train")
    texts = []
    for cfg in (base, changed):
        fn, tx, state = state_lib.init_state(cfg, split.image_shape, train=split)
        texts.append(epoch.make_epoch_fn(fn, tx, cfg, len(split), split.scale).lower(state, split.flat).as_text())
    assert texts[0] == texts[1]


def test_what_a_program_key_ignores_does_not_change_the_program(tiny_config):
    """The compiled epoch lowered from a config and from one with every ignored field changed
    is the same program, so reusing it across them is sound (a weight decay of 0 is in the
    key: the single run's program skips the stage)."""
    changed_keys = (_dotted({k: v for k, v in IGNORED_CHANGES.items() if k}) | set(IGNORED_CHANGES[""])
                    | {f"data.{k}" for source in OWN_SOURCES for k in source})
    assert changed_keys == set(config.UNCOMPILED)
    base = config.replace(tiny_config, optim={"weight_decay": 0.125}, checkpoint={"keep_best": False})
    common = {section: {k: v for k, v in values.items() if (section, k) not in READ_BY}
              for section, values in IGNORED_CHANGES.items()}
    _assert_same_program(base, common)
    for (section, key), objective in READ_BY.items():
        _assert_same_program(config.replace(base, objective=objective), {section: {key: IGNORED_CHANGES[section][key]}})
    for source in OWN_SOURCES:
        _assert_same_program(base, {"data": source})
    # what is in the key does change it
    for other in ({"optim": {"weight_decay": 0.0}}, {"train": {"ema_decay": 0.5}}, {"optim": {"schedule": "iwae"}}):
        assert programs.training_fields(config.replace(base, **other)) != programs.training_fields(base)
    staged = config.replace(base, optim={"schedule": "iwae"})  # a staged schedule bakes its rate in
    assert programs.training_fields(config.replace(staged, optim={"lr": 0.5})) != programs.training_fields(staged)
