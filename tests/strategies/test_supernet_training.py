"""Supernet training: FairNAS sampling, the learning-rate schedule, the metrics file."""

from __future__ import annotations

import csv
import math
from collections import Counter

import pytest
import torch

from convnas.data import load_dataset
from convnas.errors import ConfigError
from convnas.search_space import get_space
from convnas.search_space.supernet import MixedOp
from convnas.strategies.evaluators import (
    METRICS_FILE,
    SupernetEvaluator,
    fair_paths,
    lr_factor,
)


@pytest.fixture(scope="module")
def data():
    return load_dataset(
        "synthetic", num_classes=4, input_shape=(3, 8, 8), size=64, seed=0, val_fraction=0.25
    )


def _space():
    return get_space(
        "resnet",
        candidates=["conv_3x3", "c2sp", "conv_1x1"],
        depth=8,
        widths=[4, 4, 4],
        num_classes=4,
        input_shape=[3, 8, 8],
    )


def test_fair_paths_train_every_candidate_equally_often():
    gen = torch.Generator().manual_seed(0)
    counts = {"a": 4, "b": 4, "c": 2}
    paths = fair_paths(counts, gen)
    assert len(paths) == 4
    for name, k in counts.items():
        seen = Counter(p[name] for p in paths)
        assert sorted(seen) == list(range(k)) and set(seen.values()) == {4 // k}


def test_fair_sampling_runs_each_candidate_of_each_decision_once_per_step(tmp_path, data):
    ev = SupernetEvaluator(epochs=1, batch_size=16, steps_per_epoch=2, sampling="fair")
    calls: Counter = Counter()
    original = MixedOp.forward

    def counting(self, x):
        if self.training:
            calls[(self.decision, self._state.active[self.decision])] += 1
        return original(self, x)

    MixedOp.forward = counting
    try:
        ev.prepare(
            _space(), data, tmp_path, seed=0, device=torch.device("cpu"), show_progress=False
        )
    finally:
        MixedOp.forward = original
    decisions = {d for d, _ in calls}
    assert decisions and all(calls[(d, k)] == 2 for d in decisions for k in range(3))


def test_schedule_warms_up_then_decays():
    assert [lr_factor(s, 10, 2, "cosine") for s in (0, 1)] == [0.5, 1.0]
    assert lr_factor(2, 10, 2, "cosine") == 1.0
    assert math.isclose(lr_factor(10, 10, 2, "cosine"), 0.0, abs_tol=1e-12)
    assert lr_factor(9, 10, 0, "constant") == 1.0
    with pytest.raises(ConfigError, match="evaluator.sampling"):
        SupernetEvaluator(sampling="greedy")


def test_metrics_file_has_a_row_per_epoch_and_survives_a_resume(tmp_path, data):
    def prepare(epochs):
        ev = SupernetEvaluator(epochs=epochs, batch_size=16, steps_per_epoch=2)
        ev.prepare(
            _space(), data, tmp_path, seed=0, device=torch.device("cpu"), show_progress=False
        )

    prepare(2)
    with open(tmp_path / METRICS_FILE) as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert all(0 <= float(r["train_accuracy"]) <= 1 and float(r["train_loss"]) > 0 for r in rows)
    (tmp_path / METRICS_FILE).unlink()
    prepare(2)  # loads the finished supernet: the rows come from its checkpoint
    with open(tmp_path / METRICS_FILE) as f:
        assert len(list(csv.DictReader(f))) == 2
