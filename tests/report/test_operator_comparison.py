"""configs/compare_operators_cifar10.yaml compares operators, and the report shows them side by
side: a tiny real run (granularity network, 3 candidates, train evaluator, synthetic data)."""

from __future__ import annotations

import dataclasses
import pathlib

import pytest

from convnas.report import build_report_data, render_html
from convnas.report.tables import split_operators

pytest.importorskip("optuna")

CANDIDATES = ["conv_3x3", "c2sp", "csg_conv_3x3"]
ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def comparison_run(tmp_path_factory):
    from convnas.data import load_dataset
    from convnas.search_space import get_space
    from convnas.strategies.optuna import OptunaStrategy

    data = load_dataset(
        "synthetic", num_classes=3, input_shape=(3, 8, 8), size=48, seed=0, val_fraction=0.25
    )
    space = get_space(
        "resnet",
        candidates=CANDIDATES,
        depth=8,
        widths=[4, 4, 8],
        num_classes=3,
        input_shape=[3, 8, 8],
        granularity="network",
    )
    run = tmp_path_factory.mktemp("comparison") / "run"
    OptunaStrategy(
        n_trials=3,
        objectives=["accuracy", "params", "macs", "train_memory"],
        sampler="bruteforce",
        sample_hparams=False,
        evaluator="train",
        evaluator_settings={"epochs": 1, "batch_size": 12, "max_steps": 1},
        progress=False,
        device="cpu",
        seed=0,
        memory_batch_size=8,
    ).search(space, data, run)
    return run


def test_the_config_runs_each_operator_once_at_default_hparams():
    from convnas.run.config import load_config

    config = load_config(ROOT / "configs" / "compare_operators_cifar10.yaml")
    assert config.strategy.sampler == "bruteforce" and config.strategy.sample_hparams is False
    assert config.space.granularity == "network"
    assert config.strategy.n_trials == len(config.space.candidates)


def test_one_row_per_operator_and_points_named_by_operator(comparison_run):
    data = build_report_data(comparison_run)
    table = data.operator_comparison
    assert table is not None
    assert table.columns[:5] == ("operator", "params", "MACs", "train memory (MiB)", "accuracy")
    assert sorted(row[0] for row in table.rows) == sorted(CANDIDATES)
    accuracies = [row[4] for row in table.rows]
    assert accuracies == sorted(accuracies, reverse=True)
    for plot in data.pareto_plots:
        assert sorted(p.label for p in plot.points) == sorted(CANDIDATES)
    drawn = dataclasses.replace(data, scatter_matrix=None)  # the matrix is slow to draw
    assert 'id="comparison"' in render_html(drawn)


def test_split_operators_drops_hyper_parameters():
    text = "c2sp csg_conv_3x3{'slice_shape': [4, 4, 3, 3], 'code_size': 8} conv_1x1"
    assert split_operators(text) == ["c2sp", "csg_conv_3x3", "conv_1x1"]
    assert split_operators("") == []
