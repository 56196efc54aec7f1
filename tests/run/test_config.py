from __future__ import annotations

import pathlib

import pytest
import yaml

from convnas.errors import ConfigError
from convnas.run.config import apply_overrides, load_config, parse_config

CONFIGS = pathlib.Path(__file__).resolve().parents[2] / "configs"

BAD = [
    ({"strategy": {"kind": "optuna", "n_trials": "many"}}, "strategy.n_trials"),
    ({"strategy": {"kind": "optuna", "n_trials": 0}}, "strategy.n_trials"),
    ({"strategy": {"kind": "optuna", "objectives": ["accuracy", "flops"]}}, "strategy.objectives"),
    ({"strategy": {"kind": "optuna", "sampler": "cmaes"}}, "strategy.sampler"),
    ({"strategy": {"kind": "optuna", "max_params": -5}}, "strategy.max_params"),
    ({"strategy": {"kind": "optuna", "pruner": "median"}}, "strategy.pruner"),
    ({"strategy": {"kind": "optuna", "evaluator": {"kind": "oracle"}}}, "strategy.evaluator"),
    (
        {"strategy": {"kind": "optuna", "evaluator": {"kind": "train", "epochs": 0}}},
        "strategy.evaluator.epochs",
    ),
    (
        {"strategy": {"kind": "optuna", "evaluator": {"kind": "supernet", "epochz": 2}}},
        "strategy.evaluator.epochz",
    ),
    ({"strategy": {"kind": "darts", "order": 3}}, "strategy.order"),
    ({"strategy": {"kind": "darts", "penalty_metric": "flops"}}, "strategy.penalty_metric"),
    ({"strategy": {"kind": "genetic"}}, "strategy"),
    ({"strategy": {"n_trials": 5}}, "strategy"),
    ({"space": {"kind": "resnet", "candidates": ["c2spp"]}}, "space.candidates[0]"),
    ({"space": {"kind": "resnet", "candidates": []}}, "space.candidates"),
    ({"space": {"kind": "resnet", "depth": "deep"}}, "space.depth"),
    ({"space": {"kind": "resnet", "widths": [16, 32]}}, "space.widths"),
    ({"space": {"kind": "resnet", "shortcut": "C"}}, "space.shortcut"),
    (
        {"space": {"kind": "resnet", "candidates": [{"op": "c2sp", "hparams": {"k": 1}}]}},
        "space.candidates[0].hparams",
    ),
    ({"space": {"kind": "darts", "channels": 1}}, "space.channels"),
    ({"space": {"kind": "mobilenet"}}, "space"),
    ({"data": {"dataset": "cifar11"}}, "data.dataset"),
    ({"data": {"val_fraction": 1.5}}, "data.val_fraction"),
    ({"data": {"datset": "digits"}}, "data.datset"),
    ({"seed": "zero"}, "seed"),
    ({"name": "bad name/with slash"}, "name"),
    ({"outputs": {"root": "runs"}}, "outputs"),
    ([1, 2, 3], None),
]


@pytest.mark.parametrize(("data", "key"), BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_configs_name_the_key(data, key):
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert info.value.key == key, str(info.value)
    if key:
        assert str(info.value).startswith(f"{key}: ")


def test_defaults_and_strategy_settings():
    config = parse_config(
        {"strategy": {"kind": "optuna", "n_trials": 3, "evaluator": {"kind": "train", "epochs": 2}}}
    )
    settings = config.strategy_settings()
    assert settings["n_trials"] == 3 and settings["evaluator"] == "train"
    assert settings["evaluator_settings"]["epochs"] == 2
    assert config.space.kind == "resnet" and config.data.dataset == "digits"


def test_overrides_and_file_loading(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({"strategy": {"kind": "optuna", "n_trials": 3}}))
    config = load_config(
        path, ["strategy.n_trials=7", "space.candidates=[conv_3x3, c2sp]", "data.limit_train=100"]
    )
    assert config.name == "exp" and config.strategy.n_trials == 7
    assert config.space.candidates == ["conv_3x3", "c2sp"] and config.data.limit_train == 100
    with pytest.raises(ConfigError, match="KEY.PATH=VALUE"):
        apply_overrides({}, ["nonsense"])
    with pytest.raises(ConfigError, match="strategy.n_trials"):
        load_config(path, ["strategy.n_trials=-1"])
    (tmp_path / "evil.yaml").write_text("!!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "evil.yaml")


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_are_valid_and_documented(path):
    text = path.read_text()
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert any("Command:" in line for line in header), "header must give the command"
    assert any("Time:" in line for line in header), "header must give the time"
    assert any("Expected:" in line for line in header), "header must give the result"
    load_config(path)
