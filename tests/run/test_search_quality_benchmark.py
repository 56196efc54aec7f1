"""The pure parts of ``benchmarks/search_quality.py`` (imported by path): configs, shared
hypervolumes, the printed table. The searches themselves are exercised by ``--smoke``."""

from __future__ import annotations

import importlib.util
import math
import pathlib

import pytest

from convnas.run.config import parse_config
from convnas.run.correlation import correlation

PATH = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "search_quality.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("search_quality", PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_configs_are_valid_and_differ_only_in_the_sampler(bench, tmp_path):
    args = bench.parse_args(["--smoke", "--out", str(tmp_path / "sq")])
    assert args.k == 4 and args.seeds == [0] and args.out.name == "sq_smoke"
    nsga = parse_config(bench.search_config(args, 0, "nsga2"))
    rand = parse_config(bench.search_config(args, 0, "random"))
    assert nsga.strategy.kind == "optuna" and rand.strategy.kind == "random"
    assert nsga.strategy.evaluator == rand.strategy.evaluator
    assert nsga.data == rand.data and nsga.data.dataset == "fashion_mnist"
    assert nsga.data.limit_train == 400 and nsga.space.widths == [16, 32, 64]
    full = bench.parse_args([])
    assert (full.k, full.epochs, full.subset, full.seeds) == (20, 3, 4000, [0, 1, 2])


def test_shared_hypervolumes_normalise_over_both_fronts(bench):
    fronts = {"a": [(1.0, 0.9), (3.0, 0.95)], "b": [(1.0, 0.8)]}
    hv = bench.shared_hypervolumes(fronts)
    # scaled: a -> (0, 0.333), (1, 0); b -> (0, 1); reference 1.1 in both, box 1.21
    expected_a = (1.1 * (1.1 - 1 / 3) + (1.1 - 1.0) * (1 / 3)) / 1.21
    assert hv["a"] == pytest.approx(expected_a)
    assert hv["b"] == pytest.approx(1.1 * 0.1 / 1.21)
    assert hv["a"] > hv["b"]
    assert all(math.isnan(v) for v in bench.shared_hypervolumes({"a": [], "b": []}).values())


def test_table_lists_hypervolumes_and_correlations(bench):
    args = bench.parse_args(["--smoke"])
    c = correlation("one_shot", [1, 2, 3, 4], [1, 3, 2, 4], resamples=20)
    rows = [
        {
            "seed": 0,
            "fronts": {"nsga2": [(1, 0.5)], "random": [(2, 0.4), (1, 0.3)]},
            "hypervolume": {"nsga2": 0.5, "random": 0.25},
            "ranking": {"one_shot": c},
        }
    ]
    lines = bench.table(rows, args)
    assert any(line.split()[:4] == ["0", "0.5000", "0.2500", "1/2"] for line in lines)
    assert any(line.split()[:3] == ["0", "one_shot", "4"] for line in lines)
