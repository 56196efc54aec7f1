"""Without a terminal a search reports its progress as periodic log lines."""

from __future__ import annotations

import logging

import pytest

from convnas.data import load_dataset
from convnas.strategies.optuna import OptunaStrategy
from convnas.strategies.optuna.progress_log import ProgressLog, duration
from tests.strategies.tiny import tiny_space


def _tiny_problem():
    data = load_dataset(
        "synthetic", num_classes=4, input_shape=(3, 8, 8), size=64, seed=0, val_fraction=0.25
    )
    return tiny_space(), data


def _tiny_strategy(*, progress: bool) -> OptunaStrategy:
    return OptunaStrategy(
        n_trials=3,
        objectives=["accuracy", "params"],
        evaluator="supernet",
        evaluator_settings={"epochs": 1, "batch_size": 16, "steps_per_epoch": 1},
        progress=progress,
        device="cpu",
        population_size=2,
    )


def test_lines_come_at_most_every_interval_and_at_the_end():
    now = [0.0]
    log = ProgressLog(10, label="one-shot ", interval=30, clock=lambda: now[0])
    now[0] = 10
    assert (
        log.update(1, 0.5) == "trials 1/10; best one-shot accuracy 0.5000; elapsed 0m10s, ETA 1m30s"
    )
    now[0] = 20
    assert log.update(2, 0.6) is None  # within the interval
    now[0] = 45
    assert log.update(2, 0.6).startswith("trials 2/10")
    now[0] = 46
    assert log.update(2, 0.6) is None  # nothing new
    now[0] = 50
    assert log.update(10, 0.7) == "trials 10/10; best one-shot accuracy 0.7000; elapsed 0m50s"
    assert duration(3725) == "1h02m" and duration(float("inf")) == "?"


def test_a_search_without_a_terminal_logs_trial_lines(tmp_path, caplog):
    pytest.importorskip("optuna")
    strategy = _tiny_strategy(progress=True)  # pytest's captured stderr is not a terminal
    with caplog.at_level(logging.INFO, logger="convnas.progress"):
        strategy.search(*_tiny_problem(), tmp_path)
    lines = [r.getMessage() for r in caplog.records if r.name == "convnas.progress"]
    assert lines and lines[-1].startswith("trials 3/3; best one-shot accuracy")


def test_trials_csv_follows_the_study_while_it_runs(tmp_path, monkeypatch):
    pytest.importorskip("optuna")
    from convnas.strategies.optuna import results

    seen: list[int] = []
    original = results.write_trials_csv

    def recording(path, trials, objectives):
        seen.append(sum(t.state.name == "COMPLETE" for t in trials))
        return original(path, trials, objectives)

    monkeypatch.setattr("convnas.strategies.optuna.strategy.write_trials_csv", recording)
    _tiny_strategy(progress=False).search(*_tiny_problem(), tmp_path)
    assert seen[:1] == [0] and 1 in seen and 2 in seen  # rewritten as trials end
