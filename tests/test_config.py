"""vaecli.config: defaults, the shipped YAML, `--set` overrides, validation errors, YAML round trip."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from vaecli import config
from vaecli.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
BMNIST_YAML = REPO / "configs" / "bmnist_mlp.yaml"


# ---------------------------------------------------------------- loading


def test_defaults_load_and_equal_the_dataclass_defaults():
    cfg = config.load(None)
    assert isinstance(cfg, config.Config)
    assert cfg == config.Config()
    assert cfg.model.latent_dim == 20
    assert cfg.model.hidden == (500,)
    assert cfg.optim.lr == 1e-3
    assert cfg.optim.grad_clip is None


def test_shipped_bmnist_yaml_loads():
    cfg = config.load(BMNIST_YAML)
    assert cfg.model.latent_dim == 20
    assert cfg.model.hidden == (500,)
    assert isinstance(cfg.model.hidden, tuple)
    assert cfg.train.batch_size == 128
    assert cfg.train.epochs == 30
    assert cfg.optim.lr == pytest.approx(1e-3)
    assert isinstance(cfg.optim.lr, float)
    assert cfg.data.dataset == "binarized_mnist"


def test_an_empty_yaml_file_means_defaults(tmp_path):
    p = tmp_path / "empty.yaml"
    p.write_text("# nothing but a comment\n")
    assert config.load(p) == config.Config()


# ---------------------------------------------------------------- overrides


def test_overrides_are_yaml_typed():
    cfg = config.load(BMNIST_YAML, ["optim.lr=3e-4", "model.hidden=[64, 32]"])
    assert cfg.optim.lr == pytest.approx(3e-4)
    assert type(cfg.optim.lr) is float
    assert cfg.model.hidden == (64, 32)
    assert type(cfg.model.hidden) is tuple
    assert all(type(w) is int for w in cfg.model.hidden)
    # Keys not overridden keep the YAML file's values.
    assert cfg.model.latent_dim == 20
    assert cfg.train.batch_size == 128


def test_later_overrides_win():
    cfg = config.load(None, ["train.epochs=3", "train.epochs=7", "optim.lr=0.5", "optim.lr=0.25"])
    assert cfg.train.epochs == 7
    assert cfg.optim.lr == 0.25


def test_override_beats_yaml_file(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  epochs: 11\n")
    assert config.load(p).train.epochs == 11
    assert config.load(p, ["train.epochs=2"]).train.epochs == 2


def test_exponent_without_dot_is_accepted_for_float_keys():
    # YAML 1.1 reads `1e-3` as the string "1e-3"; float keys must still accept it.
    assert yaml.safe_load("1e-3") == "1e-3"
    cfg = config.load(None, ["optim.lr=1e-3", "optim.weight_decay=5e-4"])
    assert type(cfg.optim.lr) is float and cfg.optim.lr == 1e-3
    assert type(cfg.optim.weight_decay) is float and cfg.optim.weight_decay == 5e-4


def test_int_accepted_for_float_key_and_null_for_optional():
    cfg = config.load(None, ["optim.lr=1", "optim.grad_clip=2", "data.data_dir=null"])
    assert type(cfg.optim.lr) is float and cfg.optim.lr == 1.0
    assert type(cfg.optim.grad_clip) is float and cfg.optim.grad_clip == 2.0
    assert cfg.data.data_dir is None


# ---------------------------------------------------------------- errors


def _config_error(path=None, overrides=()) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        config.load(path, list(overrides))
    assert info.value.exit_code == 2
    return info.value


@pytest.mark.parametrize(
    "override, key",
    [
        # unknown keys, top level and nested
        ("lrr=1", "lrr"),
        ("optim.lrr=1", "optim.lrr"),
        ("model.encoder.width=3", "model.encoder"),
        # wrong types
        ("train.batch_size=abc", "train.batch_size"),
        ("train.batch_size=1.5", "train.batch_size"),
        ("train.batch_size=true", "train.batch_size"),
        ("model.hidden=5", "model.hidden"),
        ("optim.lr=fast", "optim.lr"),
        ("log.tensorboard=3", "log.tensorboard"),
        # impossible values
        ("train.batch_size=-1", "train.batch_size"),
        ("model.latent_dim=0", "model.latent_dim"),
        ("optim.lr=0", "optim.lr"),
        ("optim.lr=-1e-3", "optim.lr"),
        ("optim.weight_decay=-0.1", "optim.weight_decay"),
        ("seed=-1", "seed"),
        ("model.hidden=[64, 0]", "model.hidden"),
        ("model.hidden=[]", "model.hidden"),
        # values outside a Literal
        ("data.binarize=maybe", "data.binarize"),
        ("objective.kl=exact", "objective.kl"),
        ("optim.name=lbfgs", "optim.name"),
    ],
)
def test_bad_override_names_the_dotted_key(override, key):
    err = _config_error(overrides=[override])
    assert key in str(err)


def test_error_on_a_later_override_even_if_earlier_ones_are_fine():
    err = _config_error(overrides=["optim.lr=3e-4", "train.epochs=0"])
    assert "train.epochs" in str(err)


def test_a_bad_override_replaced_by_a_good_one_is_fine():
    # Overrides are applied in order before validation: only the final value counts.
    assert config.load(None, ["train.epochs=0", "train.epochs=4"]).train.epochs == 4


@pytest.mark.parametrize("override", ["noequals", "=3", "a..b=1", ".a=1", "a.=1", "optim.lr=[1"])
def test_bad_set_syntax(override):
    err = _config_error(overrides=[override])
    assert repr(override) in str(err)


def test_yaml_file_missing(tmp_path):
    missing = tmp_path / "nope.yaml"
    err = _config_error(missing)
    assert str(missing) in str(err)


def test_yaml_path_is_a_folder(tmp_path):
    err = _config_error(tmp_path)
    assert str(tmp_path) in str(err)


def test_yaml_invalid(tmp_path):
    p = tmp_path / "broken.yaml"
    p.write_text("a: [1,\n")
    err = _config_error(p)
    assert str(p) in str(err)
    assert "YAML" in str(err)


@pytest.mark.parametrize("text, line, column, fix", [
    ("model:\n\tlatent_dim: 3\n", 2, 1, "replace the tabs with spaces"),
    ("model:\n  latent_dim: 3\n kind: mlp\n", 3, 2, "same number of spaces"),
    ("model: {latent_dim: 3\n", 2, 1, "close the '{'"),
])
def test_yaml_syntax_error_is_one_line_with_its_place_and_the_likely_fix(tmp_path, text, line, column, fix):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    err = str(_config_error(p))
    assert err.startswith(f"{p}, line {line}, column {column}: not valid YAML: ")
    assert fix in err and "\n" not in err and "<unicode string>" not in err


@pytest.mark.parametrize("text", ["- 1\n- 2\n", "just a string\n", "42\n"])
def test_yaml_top_level_not_a_mapping(tmp_path, text):
    p = tmp_path / "list.yaml"
    p.write_text(text)
    err = _config_error(p)
    assert str(p) in str(err)
    assert "mapping" in str(err)


def test_unknown_key_in_yaml_file_names_the_dotted_key(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  epochs: 3\n  batchsize: 64\n")
    err = _config_error(p)
    assert "train.batchsize" in str(err)


@pytest.mark.parametrize("override, suggested", [
    ("model.latnt_dim=3", "model.latent_dim"), ("modle.latent_dim=3", "model"), ("train.epoch=3", "train.epochs")])
def test_a_misspelt_key_suggests_the_closest_valid_one(override, suggested):
    with pytest.raises(ConfigError, match=f"did you mean '{suggested}'\\?"):
        config.load(None, [override])


def test_a_key_like_no_valid_one_suggests_none():
    with pytest.raises(ConfigError) as err:
        config.load(None, ["optim.xyz=1"])
    assert "did you mean" not in str(err.value) and "valid here: name, lr" in str(err.value)


def test_yaml_section_that_is_not_a_mapping(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train: 5\n")
    err = _config_error(p)
    assert "train" in str(err)
    assert "mapping" in str(err)


# ---------------------------------------------------------------- round trip and immutability


@pytest.mark.parametrize(
    "overrides",
    [
        [],
        ["optim.lr=3e-4", "model.hidden=[64, 32]", "optim.grad_clip=1.5", "data.binarize=dynamic",
         "data.cache_dir=/tmp/x y", "log.tensorboard=false", "objective.kl=mc", "objective.samples=5"],
    ],
)
def test_dump_yaml_round_trips(overrides):
    cfg = config.load(None, overrides)
    text = config.dump_yaml(cfg)
    assert config.from_dict(yaml.safe_load(text)) == cfg


def test_dump_yaml_round_trips_the_shipped_file():
    cfg = config.load(BMNIST_YAML)
    assert config.from_dict(yaml.safe_load(config.dump_yaml(cfg))) == cfg


def test_config_is_frozen():
    cfg = config.load(None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.seed = 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.optim.lr = 0.1
    assert cfg.seed == 0 and cfg.optim.lr == 1e-3


def test_replace_validates_and_leaves_the_original_alone():
    cfg = config.load(None)
    new = config.replace(cfg, train={"epochs": 3})
    assert new.train.epochs == 3 and new.train.batch_size == cfg.train.batch_size
    assert cfg.train.epochs == 30
    with pytest.raises(ConfigError, match="train.epochs"):
        config.replace(cfg, train={"epochs": 0})


# ---------------------------------------------------------------- names from the registries


@pytest.mark.parametrize("key, registry", [("model.kind", "MODEL_KINDS"), ("model.likelihood", "LIKELIHOODS"),
                                           ("model.prior", "PRIORS"), ("objective.name", "OBJECTIVES")])
def test_choice_names_come_from_the_registries(key, registry, monkeypatch):
    from vaecli import registry as choices
    from vaecli.models import objectives

    names = getattr(choices, registry, None) or getattr(objectives, registry)
    err = _config_error(overrides=[f"{key}=nope"])
    assert str(err) == f"{key}: 'nope' is not one of {' | '.join(repr(n) for n in names)}"
    first = next(iter(names.values()))
    monkeypatch.setitem(names, "newcomer", first)  # one registry entry is all a new name needs
    section, field = key.split(".")
    assert getattr(getattr(config.load(None, [f"{key}=newcomer"]), section), field) == "newcomer"


def test_config_validation_imports_no_jax():
    import subprocess
    import sys

    code = ("import sys; from vaecli import config\n"
            "try:\n    config.load(None, ['model.prior=vamp'])\nexcept Exception as e:\n    print(type(e).__name__)\n"
            "config.load(None, ['objective.name=iwae', 'model.kind=conv'])\nprint('jax' in sys.modules)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.stdout.split() == ["ConfigError", "False"], p.stderr
