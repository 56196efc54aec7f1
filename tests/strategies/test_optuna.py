from __future__ import annotations

import csv
import multiprocessing
import pathlib

import pytest
import torch

from convnas.data import load_dataset
from convnas.errors import ConfigError, TrainingDivergedError
from convnas.search_space import get_space
from convnas.strategies.base import dominates
from convnas.strategies.evaluators import SupernetEvaluator
from convnas.strategies.optuna import OptunaStrategy

optuna = pytest.importorskip("optuna")

CANDIDATES = ["conv_3x3", "c2sp", "conv_1x1", "osep_3x3"]
FAST = {"progress": False, "device": "cpu", "population_size": 4}
SUPERNET = {
    "evaluator": "supernet",
    "evaluator_settings": {"epochs": 1, "batch_size": 16, "steps_per_epoch": 3},
}


def _data():
    return load_dataset(
        "synthetic",
        num_classes=4,
        input_shape=(3, 8, 8),
        size=128,
        seed=0,
        val_fraction=0.25,
        limit_test=16,
    )


def _space(candidates=CANDIDATES):
    return get_space(
        "resnet",
        candidates=list(candidates),
        depth=8,
        widths=[4, 8, 8],
        num_classes=4,
        input_shape=[3, 8, 8],
    )


@pytest.fixture(scope="module")
def data():
    return _data()


def _complete(run_dir: pathlib.Path) -> list[dict]:
    with open(run_dir / "trials.csv") as f:
        return [r for r in csv.DictReader(f) if r["state"] == "COMPLETE"]


def test_study_completes_with_a_non_dominated_pareto_front(tmp_path, data):
    strategy = OptunaStrategy(
        n_trials=6, objectives=["accuracy", "params", "macs"], **SUPERNET, **FAST
    )
    result = strategy.search(_space(), data, tmp_path)
    assert result.info["complete"] == 6 and len(_complete(tmp_path)) == 6
    assert result.pareto
    directions = {"accuracy": "maximize", "params": "minimize", "macs": "minimize"}
    for a in result.pareto:
        assert not any(dominates(b.metrics, a.metrics, directions) for b in result.pareto)
    files = sorted((tmp_path / "architectures").glob("pareto_*.yaml"))
    assert len(files) == len(result.pareto)


def test_constraints_hold_for_every_feasible_trial(tmp_path, data):
    limit = 1000
    strategy = OptunaStrategy(
        n_trials=8, objectives=["accuracy", "params"], max_params=limit, **SUPERNET, **FAST
    )
    result = strategy.search(_space(), data, tmp_path)
    rows = _complete(tmp_path)
    assert {r["feasible"] for r in rows} <= {"True", "False"}
    for r in rows:
        assert (float(r["params"]) <= limit) == (r["feasible"] == "True")
        if r["feasible"] == "False":
            assert float(r["objective_accuracy"]) == 0.0  # not trained
    for member in result.pareto:
        assert member.metrics["params"] <= limit


def test_resume_adds_trials_to_the_same_study(tmp_path, data):
    OptunaStrategy(n_trials=3, **SUPERNET, **FAST).search(_space(), data, tmp_path)
    result = OptunaStrategy(n_trials=5, **SUPERNET, **FAST).search(
        _space(), data, tmp_path, resume=True
    )
    assert result.info["complete"] == 5 and result.info["total"] == 5
    with pytest.raises(ConfigError, match="another configuration"):
        OptunaStrategy(n_trials=5, objectives=["accuracy", "macs"], **SUPERNET, **FAST).search(
            _space(), data, tmp_path
        )


def _worker(run_dir: str, n_trials: int, index: int) -> None:
    torch.set_num_threads(1)
    OptunaStrategy(
        n_trials=n_trials,
        worker_index=index,
        evaluator="train",
        evaluator_settings={"epochs": 1, "batch_size": 16, "max_steps": 2},
        **FAST,
    ).search(_space(), _data(), run_dir)


def test_two_worker_processes_complete_exactly_n_trials(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_worker, args=(str(tmp_path), 7, index)) for index in (0, 1)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=300)
        assert w.exitcode == 0
    study = optuna.load_study(study_name="convnas", storage=f"sqlite:///{tmp_path}/study.db")
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 7
    assert len({t.number for t in study.trials}) == len(study.trials)
    assert all(t.state != optuna.trial.TrialState.RUNNING for t in study.trials)


def test_diverging_trial_fails_with_its_reason_and_the_study_goes_on(tmp_path, data, monkeypatch):
    strategy = OptunaStrategy(n_trials=4, **SUPERNET, **FAST)
    calls = {"n": 0}
    original = SupernetEvaluator.score

    def flaky(self, arch, trial=None, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise TrainingDivergedError("loss became nan during a forced test")
        return original(self, arch, trial, **kwargs)

    monkeypatch.setattr(SupernetEvaluator, "score", flaky)
    monkeypatch.setattr(SupernetEvaluator, "deterministic", False)
    result = strategy.search(_space(), data, tmp_path)
    assert result.info["complete"] == 4 and result.info["failed"] == 1
    with open(tmp_path / "trials.csv") as f:
        failed = [r for r in csv.DictReader(f) if r["state"] == "FAIL"]
    assert "loss became nan" in failed[0]["fail_reason"]


def test_supernet_evaluator_ranks_a_trained_network_above_an_untrained_one(tmp_path):
    data = load_dataset(
        "synthetic",
        num_classes=4,
        input_shape=(3, 8, 8),
        size=256,
        seed=0,
        val_fraction=0.25,
        noise=0.5,
    )
    space = _space(["conv_3x3"])
    arch = space.architecture([0] * len(space.decisions()))
    scores = []
    for epochs in (0, 8):
        evaluator = SupernetEvaluator(epochs=epochs, batch_size=16, lr=0.05)
        evaluator.prepare(
            space,
            data,
            tmp_path / f"e{epochs}",
            seed=0,
            device=torch.device("cpu"),
            show_progress=False,
        )
        scores.append(evaluator.score(arch))
    assert scores[1] > scores[0] + 0.3, scores


def test_settings_are_validated():
    with pytest.raises(ConfigError, match="cannot prune multi-objective"):
        OptunaStrategy(pruner="median", evaluator="train")
    with pytest.raises(ConfigError, match="unknown objective 'flops'"):
        OptunaStrategy(objectives=["accuracy", "flops"])
    with pytest.raises(ConfigError, match="sampler"):
        OptunaStrategy(sampler="cmaes")
    with pytest.raises(ConfigError, match="cannot score sampled hyper-parameters"):
        OptunaStrategy(evaluator="supernet", sample_hparams=True)
