"""Ranking fidelity (convnas.run.ranking) on a tiny digits run: files, statistics, resume."""

from __future__ import annotations

import json
import math
import pathlib
import shutil

import numpy as np
import pytest
import yaml
from scipy.stats import kendalltau, spearmanr

from convnas.errors import ConfigError
from convnas.run import ranking
from convnas.run.config import parse_config
from convnas.run.correlation import correlation
from convnas.run.ranking import RankBudget, rank_run, score_architectures

pytest.importorskip("optuna")

TINY = {
    "name": "tiny",
    "seed": 0,
    "device": "cpu",
    "data": {"dataset": "digits", "val_fraction": 0.2, "limit_train": 200, "limit_test": 20},
    "space": {
        "kind": "resnet",
        "depth": 8,
        "widths": [4, 8, 8],
        "granularity": "layer",
        "candidates": ["conv_3x3", "c2sp", "osep_3x3", "conv_1x1"],
    },
    "strategy": {
        "kind": "optuna",
        "n_trials": 4,
        "population_size": 4,
        "objectives": ["accuracy", "params"],
        "evaluator": {
            "kind": "supernet",
            "epochs": 1,
            "batch_size": 32,
            "steps_per_epoch": 3,
            "bn_batches": 1,
            "eval_batches": 1,
        },
    },
    "output": {"progress": False, "report": False},
}
BUDGET = RankBudget(epochs=1, batch_size=32, max_steps=2)
FAST = {"budget": BUDGET, "resamples": 100, "device": "cpu"}
REAL_TRAIN = ranking.train_model


def make_tiny_run(root: pathlib.Path) -> pathlib.Path:
    """A finished 4-trial supernet search on digits under ``root`` (a few seconds)."""
    from convnas import run_search

    config = parse_config({**TINY, "output": {**TINY["output"], "root": str(root)}})
    run_search(config)
    return config.run_dir()


_BUILT: dict[str, pathlib.Path] = {}


def tiny_run(tmp_path_factory) -> pathlib.Path:
    """The tiny run, searched once per test session (tests copy it before changing it)."""
    if "run" not in _BUILT:
        _BUILT["run"] = make_tiny_run(tmp_path_factory.mktemp("runs"))
    return _BUILT["run"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return tiny_run(tmp_path_factory)


@pytest.fixture
def run(built, tmp_path):
    """A private copy of the tiny run (rank files of one test never reach another)."""
    return pathlib.Path(shutil.copytree(built, tmp_path / "tiny"))


def _counting(monkeypatch, fail_after: int | None = None) -> list[int]:
    calls: list[int] = []

    def train(*args, **kwargs):
        if fail_after is not None and len(calls) >= fail_after:
            raise RuntimeError("simulated crash")
        calls.append(kwargs["seed"])
        return REAL_TRAIN(*args, **kwargs)

    monkeypatch.setattr(ranking, "train_model", train)
    return calls


def test_rank_writes_json_csv_and_the_report_section(run):
    from convnas.report import build_report_data

    assert build_report_data(run).ranking is None
    result = rank_run(run, k=4, noise_subset=3, **FAST)
    data = json.loads((run / "rank.json").read_text())
    assert data["kind"] == "convnas/rank/v1"
    assert set(data["correlations"]) == {"one_shot", "params", "macs", "noise_ceiling"}
    assert data["settings"]["k"] == 4 and data["settings"]["train_seeds"] == [0, 1]
    assert len(data["architectures"]) == 4
    for c in data["correlations"].values():
        for stat, ci in (("kendall_tau", "kendall_ci"), ("spearman_rho", "spearman_ci")):
            if c[stat] is None:
                continue
            assert -1 <= c[stat] <= 1
            lo, hi = c[ci]
            assert lo - 1e-9 <= c[stat] <= hi + 1e-9
    rows = (run / "rank.csv").read_text().splitlines()
    assert rows[0].startswith("name,params,macs,one_shot_accuracy,stand_alone_accuracy_seed0")
    assert len(rows) == 5
    noisy = [r.stand_alone_accuracy for r in result.architectures]
    assert [len(a) for a in noisy] == [2, 2, 2, 1]
    # the one-shot scores are the run's supernet scores of the same networks
    archs = [r.architecture for r in result.architectures]
    scored = score_architectures(run, archs, device="cpu")
    assert [s for _, s in scored] == [r.one_shot_accuracy for r in result.architectures]
    one_shot = [r.one_shot_accuracy for r in result.architectures]
    stand_alone = [a[0] for a in noisy]
    expected = kendalltau(one_shot, stand_alone).statistic
    got = result.correlations["one_shot"].kendall_tau
    assert (math.isnan(expected) and math.isnan(got)) or got == pytest.approx(expected)
    from convnas.report import render_html

    data = build_report_data(run)
    assert data.ranking is not None and len(data.ranking.points) == 4
    assert [r[0] for r in data.ranking.table.rows][0].startswith("one-shot")
    assert "Ranking fidelity" in render_html(data)


def test_resume_skips_finished_retrains_and_a_changed_configuration_is_refused(run, monkeypatch):
    calls = _counting(monkeypatch, fail_after=2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        rank_run(run, k=3, **FAST)
    assert len(calls) == 2 and not (run / "rank.json").exists()
    lines = (run / "rank_progress.jsonl").read_text().splitlines()
    assert len(lines) == 3  # header + two finished retrains
    with open(run / "rank_progress.jsonl", "a") as handle:
        handle.write('{"val_accuracy": 0.5, "ind')  # a record cut short by the crash
    calls = _counting(monkeypatch)
    result = rank_run(run, k=3, **FAST)
    assert len(calls) == 1 and result.retrained == 1 and result.reused == 2
    assert len((run / "rank_progress.jsonl").read_text().splitlines()) == 4
    calls = _counting(monkeypatch)
    assert rank_run(run, k=3, **FAST).retrained == 0 and calls == []
    for change in ({"k": 4}, {"seed": 1}, {"budget": RankBudget(epochs=2, max_steps=2)}):
        with pytest.raises(ConfigError, match="another rank configuration.*--fresh"):
            rank_run(run, **{**FAST, "k": 3, **change})
    assert calls == []
    rank_run(run, **{**FAST, "k": 3, "seed": 1}, fresh=True)
    assert calls == [1, 1, 1]


def test_bad_settings_and_runs_without_a_supernet_are_refused(run, tmp_path):
    with pytest.raises(ConfigError, match="k: must be"):
        rank_run(run, k=2, **FAST)
    with pytest.raises(ConfigError, match="noise_subset"):
        rank_run(run, k=3, noise_subset=5, **FAST)
    with pytest.raises(ConfigError, match="budget.epochs"):
        RankBudget(epochs=0)
    pareto = str(next((run / "architectures").glob("pareto_*.yaml")))
    with pytest.raises(ConfigError, match="same network"):
        rank_run(run, source="files", architectures=[pareto] * 3, **FAST)
    with pytest.raises(ConfigError, match="source"):
        rank_run(run, source="files", **FAST)
    other = tmp_path / "train_run"
    other.mkdir()
    config = parse_config(
        {**TINY, "strategy": {**TINY["strategy"], "evaluator": {"kind": "train", "epochs": 1}}}
    )
    (other / "config.yaml").write_text(yaml.safe_dump(config.to_dict()))
    with pytest.raises(ConfigError, match="strategy.evaluator.kind.*'train'"):
        rank_run(other, k=3, **FAST)
    (run / "supernet.pt").unlink()
    with pytest.raises(ConfigError, match="no trained supernet"):
        rank_run(run, k=3, **FAST)


def test_correlation_equals_scipy_on_hand_made_data():
    x = [0.1, 0.4, 0.35, 0.8, 0.5, 0.5, 0.9, 0.2]
    y = [1.0, 3.0, 2.0, 7.0, 4.0, 6.0, 5.0, 2.0]
    c = correlation("demo", x, y, resamples=200, seed=3)
    assert c.kendall_tau == pytest.approx(kendalltau(x, y).statistic)
    assert c.kendall_p == pytest.approx(kendalltau(x, y).pvalue)
    assert c.spearman_rho == pytest.approx(spearmanr(x, y).statistic)
    assert c.kendall_ci[0] <= c.kendall_tau <= c.kendall_ci[1]
    assert c.spearman_ci[0] <= c.spearman_rho <= c.spearman_ci[1]
    assert c.n == 8 and 0 < c.resamples <= 200
    assert correlation("demo", x, y, resamples=200, seed=3) == c  # seeded
    perfect = correlation("same", [1, 2, 3, 4], [10, 20, 30, 40], resamples=50)
    assert perfect.kendall_tau == 1 and perfect.kendall_ci == (1.0, 1.0)
    flat = correlation("flat", [1, 1, 1], [1, 2, 3], resamples=50)
    assert math.isnan(flat.kendall_tau) and flat.resamples == 0
    assert all(math.isnan(v) for v in flat.kendall_ci)
    with pytest.raises(ConfigError, match="equally long"):
        correlation("bad", [1, 2], np.ones(3))
