"""A search never scores one network twice, and repeats do not use up the trial budget."""

from __future__ import annotations

import csv
import logging

import pytest

from convnas.data import load_dataset
from convnas.search_space import get_space
from convnas.strategies.evaluators import SupernetEvaluator
from convnas.strategies.optuna import OptunaStrategy, RandomStrategy

optuna = pytest.importorskip("optuna")

FAST = {"progress": False, "device": "cpu", "population_size": 4}
SUPERNET = {
    "evaluator": "supernet",
    "evaluator_settings": {"epochs": 1, "batch_size": 16, "steps_per_epoch": 2},
}


@pytest.fixture(scope="module")
def data():
    return load_dataset(
        "synthetic", num_classes=4, input_shape=(3, 8, 8), size=96, seed=0, val_fraction=0.25
    )


def _space(candidates=("conv_3x3", "c2sp", "conv_1x1"), depth=8):
    # depth 8, block granularity: 3 decisions x 3 candidates = 27 networks, so NSGA-II's
    # offspring repeat networks often.
    return get_space(
        "resnet",
        candidates=list(candidates),
        depth=depth,
        widths=[4, 8, 8],
        granularity="block",
        num_classes=4,
        input_shape=[3, 8, 8],
    )


def _rows(run_dir):
    with open(run_dir / "trials.csv") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def scored(monkeypatch):
    """Every network the supernet evaluator scores, in order."""
    calls: list[str] = []
    original = SupernetEvaluator.score

    def counting(self, arch, trial=None, *, prune=False):
        calls.append(arch.network_id())
        return original(self, arch, trial, prune=prune)

    monkeypatch.setattr(SupernetEvaluator, "score", counting)
    return calls


def test_n_trials_means_n_distinct_networks_each_scored_once(tmp_path, data, scored):
    strategy = OptunaStrategy(n_trials=12, objectives=["accuracy", "params"], **SUPERNET, **FAST)
    result = strategy.search(_space(), data, tmp_path)
    rows = [r for r in _rows(tmp_path) if r["state"] == "COMPLETE"]
    counted = [r for r in rows if not r["duplicate_of"]]
    assert len(counted) == 12 == result.info["complete"]
    assert len(scored) == len(set(scored)) == 12  # no network scored twice
    assert len({a.architecture.network_id() for a in result.results}) == 12
    for r in rows:
        if r["duplicate_of"]:  # a repeat carries its original's values
            original = next(o for o in rows if o["number"] == r["duplicate_of"])
            assert r["objective_accuracy"] == original["objective_accuracy"]
            assert r["operators"] == original["operators"]
    assert result.info["repeats"] == len(rows) - len(counted)


def test_a_resumed_search_does_not_rescore_the_first_sessions_networks(tmp_path, data, scored):
    settings = {"objectives": ["accuracy", "params"], **SUPERNET, **FAST}
    RandomStrategy(n_trials=5, **settings).search(_space(), data, tmp_path)
    RandomStrategy(n_trials=10, **settings).search(_space(), data, tmp_path, resume=True)
    assert len(scored) == len(set(scored)) == 10
    counted = [r for r in _rows(tmp_path) if r["state"] == "COMPLETE" and not r["duplicate_of"]]
    assert len(counted) == 10


def test_a_space_smaller_than_n_trials_stops_with_a_warning(tmp_path, data, scored, caplog):
    space = _space(candidates=("conv_3x3", "c2sp"), depth=8)  # 2^3 = 8 networks
    strategy = RandomStrategy(n_trials=9, objectives=["accuracy", "params"], **SUPERNET, **FAST)
    with caplog.at_level(logging.WARNING, logger="convnas"):
        result = strategy.search(space, data, tmp_path)
    assert result.info["complete"] == len(set(scored)) == 8
    assert "fewer than n_trials=9 distinct networks" in caplog.text
