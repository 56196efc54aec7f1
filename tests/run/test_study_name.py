"""Each study is named after its run; runs from before that keep their study ``convnas``."""

from __future__ import annotations

import csv

import pytest
import yaml

from convnas.cli import main
from convnas.run.config import load_config, parse_config
from convnas.strategies.optuna.resume import run_study_name
from tests.cli.test_search import _args

optuna = pytest.importorskip("optuna")


def test_the_study_is_named_after_the_run(tmp_path):
    assert parse_config({"name": "abc"}).strategy.study_name == "abc"
    assert parse_config({}).strategy.study_name == "run"  # the run directory's default name
    explicit = {"name": "abc", "strategy": {"kind": "optuna", "study_name": "mine"}}
    assert parse_config(explicit).strategy.study_name == "mine"
    random = parse_config({"name": "r", "strategy": {"kind": "random"}})
    assert random.strategy.study_name == "r"
    file = tmp_path / "my_search.yaml"
    file.write_text("strategy: {kind: optuna, n_trials: 3}\n")
    config = load_config(file, [])
    assert config.strategy.study_name == "my_search"
    assert config.to_dict()["strategy"]["study_name"] == "my_search"  # config.yaml records it
    assert load_config(file, ["name=other"]).strategy.study_name == "other"


def _study(db, name):
    optuna.create_study(storage=f"sqlite:///{db}", study_name=name)


def test_a_legacy_study_is_found(tmp_path):
    run = tmp_path / "old"
    run.mkdir()
    assert run_study_name(run, None, "old") == "old"  # no study.db yet
    _study(run / "study.db", "convnas")
    assert run_study_name(run, None, "old") == "convnas"
    assert run_study_name(run, "sqlite:///elsewhere.db", "old") == "old"  # shared storage
    _study(run / "study.db", "old")
    assert run_study_name(run, None, "old") == "old"  # the run's own name wins


@pytest.mark.slow
def test_resuming_a_run_whose_study_is_named_convnas(tmp_path, capsys):
    assert main(_args(tmp_path, "strategy.n_trials=2", "strategy.study_name=convnas")) == 0
    run = tmp_path / "quickstart"
    assert main(_args(tmp_path, "strategy.n_trials=3") + ["--resume"]) == 0
    assert optuna.get_all_study_names(f"sqlite:///{run / 'study.db'}") == ["convnas"]
    rows = list(csv.DictReader(open(run / "trials.csv")))
    assert sum(r["state"] == "COMPLETE" for r in rows) == 3
    assert yaml.safe_load((run / "config.yaml").read_text())["strategy"]["study_name"] == "convnas"
    # a new run takes its own name
    assert main(_args(tmp_path, "strategy.n_trials=2", "name=fresh")) == 0
    assert optuna.get_all_study_names(f"sqlite:///{tmp_path / 'fresh' / 'study.db'}") == ["fresh"]
