"""Regression tests for the search-core defects: penalties on every cost, resume of a different
length, RNG states on another device, site shapes (tests/search_space/test_sites.py), hidden
global state, resume semantics, and numbers validated at the schema."""

from __future__ import annotations

import json
import random
import warnings

import pytest
import torch
from torch import nn

from convnas.costs import COST_OBJECTIVES
from convnas.data import load_dataset
from convnas.errors import CheckpointError, ConfigError
from convnas.run.config import parse_config
from convnas.search_space import get_space
from convnas.strategies import DartsStrategy, OptunaStrategy, recalibrate_batchnorm
from convnas.strategies.evaluators import TrainEvaluator
from convnas.strategies.optuna import OptunaSettings, make_sampler

FAST = {"batch_size": 8, "steps_per_epoch": 2, "progress": False, "device": "cpu"}


@pytest.fixture(scope="module")
def data():
    return load_dataset(
        "synthetic",
        num_classes=4,
        input_shape=(3, 8, 8),
        size=96,
        seed=0,
        val_fraction=0.5,
        limit_test=16,
    )


def _space(kind="resnet"):
    if kind == "darts":
        return get_space(
            "darts",
            candidates=["skip_connect", "conv_3x3", "c2sp"],
            channels=4,
            layers=3,
            steps=2,
            multiplier=2,
            num_classes=4,
            input_shape=[3, 8, 8],
        )
    return get_space(
        "resnet",
        candidates=["conv_3x3", "conv_1x1", "c2sp"],
        depth=8,
        widths=[4, 8, 8],
        num_classes=4,
        input_shape=[3, 8, 8],
    )


@pytest.mark.parametrize("metric", COST_OBJECTIVES)
def test_every_penalty_metric_runs_a_search_end_to_end(tmp_path, data, metric):
    strategy = DartsStrategy(epochs=1, penalty_metric=metric, penalty_lambda=1.0, **FAST)
    result = strategy.search(_space(), data, tmp_path)
    assert result.best.metrics[metric] > 0


def test_memory_penalty_prices_the_search_batch_and_optimizer(data):
    space = _space()
    strategy = DartsStrategy(penalty_metric="train_memory", penalty_lambda=1.0, **FAST)
    supernet = space.build_supernet()
    penalty = strategy._penalty(space, supernet, torch.device("cpu"))
    costs = penalty.table.table[0][0]
    assert (costs.batch_size, costs.optimizer) == (8, "sgd_momentum")
    assert penalty.metric == "train_memory_bytes"


def test_resume_with_another_number_of_epochs_is_refused_with_the_reason(tmp_path, data):
    DartsStrategy(epochs=2, **FAST).search(_space(), data, tmp_path)
    with pytest.raises(CheckpointError, match="epochs=2; resuming it with epochs=4"):
        DartsStrategy(epochs=4, **FAST).search(_space(), data, tmp_path, resume=True)
    # the same length still resumes (here: nothing left to do)
    DartsStrategy(epochs=2, **FAST).search(_space(), data, tmp_path, resume=True)


def _meta_unless_cpu(real):
    """``load_checkpoint`` as on a GPU machine, simulated on the CPU: a load onto the run's
    device (a ``torch.device``, which stands for the GPU here) brings every tensor, RNG states
    included, onto another device (``meta``); only an explicit ``"cpu"`` location keeps them
    on the CPU, as loading RNG states needs."""

    def load(path, map_location=None):
        state = real(path, map_location="cpu")
        if isinstance(map_location, str) and map_location == "cpu":
            return state
        return _to_meta(state)

    return load


def _to_meta(value):
    if isinstance(value, torch.Tensor):
        return value.to("meta")
    if isinstance(value, dict):
        return {k: _to_meta(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_meta(v) for v in value]
    return value


def test_darts_resume_loads_rng_states_on_the_cpu(tmp_path, data, monkeypatch):
    import convnas.strategies.darts.strategy as module

    DartsStrategy(epochs=1, **FAST).search(_space(), data, tmp_path)
    monkeypatch.setattr(module, "load_checkpoint", _meta_unless_cpu(module.load_checkpoint))
    result = DartsStrategy(epochs=1, **FAST).search(_space(), data, tmp_path, resume=True)
    assert result.info["epochs"] == 1


def test_supernet_evaluator_resume_loads_rng_states_on_the_cpu(tmp_path, data, monkeypatch):
    import convnas.strategies.evaluators as module

    ev = module.SupernetEvaluator(epochs=1, batch_size=8, steps_per_epoch=2)
    kw = dict(seed=0, device=torch.device("cpu"), show_progress=False)
    ev.prepare(_space(), data, tmp_path, **kw)
    monkeypatch.setattr(module, "load_checkpoint", _meta_unless_cpu(module.load_checkpoint))
    again = module.SupernetEvaluator(epochs=2, batch_size=8, steps_per_epoch=2)
    with pytest.raises(CheckpointError, match="another configuration"):
        again.prepare(_space(), data, tmp_path, **kw)  # state read on the CPU, then compared
    module.SupernetEvaluator(epochs=1, batch_size=8, steps_per_epoch=2).prepare(
        _space(), data, tmp_path, **kw
    )


def _global_state():
    return torch.get_rng_state(), random.getstate()


@pytest.mark.parametrize("kind", ["resnet", "darts"])
def test_a_darts_search_leaves_the_global_rng_alone(tmp_path, data, kind):
    torch_state, py_state = _global_state()
    DartsStrategy(epochs=1, mode="gumbel", **FAST).search(_space(kind), data, tmp_path)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert random.getstate() == py_state


def test_an_optuna_search_leaves_rng_logging_and_warnings_alone(tmp_path, data):
    optuna = pytest.importorskip("optuna")

    def search(run_dir):
        OptunaStrategy(
            n_trials=3,
            population_size=2,
            progress=False,
            device="cpu",
            evaluator="train",
            evaluator_settings={"epochs": 1, "batch_size": 8, "max_steps": 2},
        ).search(_space(), data, run_dir)

    search(tmp_path / "warm-up")  # third-party modules add warning filters when first imported
    verbosity = optuna.logging.get_verbosity()
    with warnings.catch_warnings():
        warnings.simplefilter("default")  # a user's own choice, which must survive a search
        optuna.logging.set_verbosity(optuna.logging.INFO)
        torch_state, py_state = _global_state()
        filters = list(warnings.filters)
        try:
            search(tmp_path / "run")
            assert optuna.logging.get_verbosity() == optuna.logging.INFO
            assert list(warnings.filters) == filters
        finally:
            optuna.logging.set_verbosity(verbosity)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert random.getstate() == py_state


def _first_proposal(settings: OptunaSettings) -> float:
    optuna = pytest.importorskip("optuna")
    study = optuna.create_study(sampler=make_sampler(settings))
    return study.ask().suggest_float("x", 0.0, 1.0)


def test_node_and_worker_seeds_do_not_collide(monkeypatch):
    monkeypatch.setenv("CONVNAS_NODE_INDEX", "10")
    node10 = _first_proposal(OptunaSettings(seed=0, sampler="random"))
    monkeypatch.setenv("CONVNAS_NODE_INDEX", "0")
    seed1 = _first_proposal(OptunaSettings(seed=1, sampler="random"))
    worker10 = _first_proposal(OptunaSettings(seed=0, sampler="random", worker_index=10))
    again = _first_proposal(OptunaSettings(seed=1, sampler="random"))
    assert len({node10, seed1, worker10}) == 3
    assert again == seed1


def test_random_search_does_not_replay_nsga2s_first_population():
    nsga = _first_proposal(OptunaSettings(seed=0, sampler="nsga2"))
    rand = _first_proposal(OptunaSettings(seed=0, sampler="random"))
    assert nsga != rand


class _Trial:
    def __init__(self):
        self.reported = []

    def report(self, value, step):
        self.reported.append((step, value))

    def should_prune(self):
        return True


def test_pruning_is_an_explicit_argument(data):
    optuna = pytest.importorskip("optuna")
    arch = _space().architecture([0] * len(_space().decisions()))
    ev = TrainEvaluator(epochs=2, batch_size=8, max_steps=1)
    ev.prepare(_space(), data, None, seed=0, device=torch.device("cpu"), show_progress=False)
    trial = _Trial()
    ev.score(arch, trial)  # no pruning asked: nothing reported
    assert trial.reported == []
    with pytest.raises(optuna.TrialPruned):
        ev.score(arch, trial, prune=True)
    assert len(trial.reported) == 1


@pytest.mark.parametrize("kind", ["darts", "optuna"])
def test_resume_means_the_same_for_every_strategy(tmp_path, data, kind):
    def make():
        if kind == "darts":
            return DartsStrategy(epochs=1, **FAST)
        return OptunaStrategy(
            n_trials=2,
            population_size=2,
            progress=False,
            device="cpu",
            evaluator="train",
            evaluator_settings={"epochs": 1, "batch_size": 8, "max_steps": 1},
        )

    make().search(_space(), data, tmp_path)
    with pytest.raises(ConfigError, match="--resume"):
        make().search(_space(), data, tmp_path)
    make().search(_space(), data, tmp_path, resume=True)


@pytest.mark.parametrize(
    "strategy, key",
    [
        ({"kind": "optuna", "evaluator": {"kind": "train", "lr": float("nan")}}, "lr"),
        ({"kind": "optuna", "evaluator": {"kind": "train", "lr": float("inf")}}, "lr"),
        ({"kind": "optuna", "evaluator": {"kind": "train", "lr": -1}}, "lr"),
        ({"kind": "optuna", "evaluator": {"kind": "train", "max_steps": -5}}, "max_steps"),
        ({"kind": "optuna", "evaluator": {"kind": "train", "weight_decay": -1}}, "weight_decay"),
        ({"kind": "optuna", "evaluator": {"kind": "supernet", "lr": float("nan")}}, "lr"),
        ({"kind": "optuna", "timeout": 0}, "timeout"),
        ({"kind": "optuna", "max_failed": 0}, "max_failed"),
        ({"kind": "optuna", "population_size": 1}, "population_size"),
        ({"kind": "optuna", "max_params": float("nan")}, "max_params"),
        ({"kind": "darts", "w_lr": float("nan")}, "w_lr"),
        ({"kind": "darts", "a_lr": float("inf")}, "a_lr"),
        ({"kind": "darts", "a_beta1": 2}, "a_beta1"),
    ],
)
def test_numbers_are_validated_at_the_schema(strategy, key):
    with pytest.raises(ConfigError) as info:
        parse_config({"strategy": strategy})
    assert info.value.key.endswith(key), info.value.key


@pytest.mark.parametrize("seed", [-1, 2**64])
def test_seed_out_of_range_is_a_config_error(seed):
    with pytest.raises(ConfigError, match="seed"):
        parse_config({"seed": seed})


def test_a_training_split_smaller_than_one_batch_is_an_error(data):
    arch = _space().architecture([0] * len(_space().decisions()))
    ev = TrainEvaluator(epochs=1, batch_size=64)
    ev.prepare(_space(), data, None, seed=0, device=torch.device("cpu"), show_progress=False)
    with pytest.raises(ConfigError, match="fewer than one batch"):
        ev.score(arch)


def test_warmup_epochs_leave_the_alphas_at_their_start_and_search_epochs_move_them(tmp_path, data):
    """The old check compared against uniform, which the random initial logits already miss."""
    DartsStrategy(epochs=2, warmup_epochs=1, **FAST).search(_space(), data, tmp_path)
    history = json.loads((tmp_path / "alphas.json").read_text())
    start = _space().build_supernet(generator=_alphas_generator(0)).probabilities()
    after_warmup, after_search = history[0]["probabilities"], history[1]["probabilities"]
    for name, probs in start.items():
        assert after_warmup[name] == pytest.approx(probs, abs=1e-12)
    moved = max(abs(a - b) for n in start for a, b in zip(after_search[n], start[n], strict=True))
    assert moved > 1e-5


def _alphas_generator(seed):
    from convnas.seeding import derive_seed, local_generator

    return local_generator(derive_seed(seed, "darts", "alphas"))


def test_recalibrate_batchnorm_is_the_plain_average_over_the_batches():
    bn = nn.BatchNorm2d(2, momentum=0.3)
    model = nn.Sequential(bn)
    g = torch.Generator().manual_seed(0)
    batches = [torch.randn(4, 2, 3, 3, generator=g) * (i + 1) + i for i in range(3)]
    bn.running_mean.fill_(7.0)
    recalibrate_batchnorm(model, batches)
    means = torch.stack([b.mean(dim=(0, 2, 3)) for b in batches])
    variances = torch.stack([b.transpose(0, 1).reshape(2, -1).var(dim=1) for b in batches])
    torch.testing.assert_close(bn.running_mean, means.mean(0))
    torch.testing.assert_close(bn.running_var, variances.mean(0))
    assert bn.momentum == 0.3 and bn.num_batches_tracked == 3


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_darts_and_the_supernet_evaluator_resume_exactly(tmp_path, data, monkeypatch, device):
    """A crash after epoch 1, then resume, equals an uninterrupted run (on CUDA too)."""
    import convnas.strategies.darts.strategy as module

    settings = dict(FAST, device=device, epochs=2, seed=3)
    full = DartsStrategy(**settings).search(_space(), data, tmp_path / "full")
    real = module.write_json

    def crash_after_first_epoch(path, payload):
        real(path, payload)
        raise KeyboardInterrupt

    monkeypatch.setattr(module, "write_json", crash_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        DartsStrategy(**settings).search(_space(), data, tmp_path / "resumed")
    monkeypatch.setattr(module, "write_json", real)
    resumed = DartsStrategy(**settings).search(_space(), data, tmp_path / "resumed", resume=True)
    assert resumed.best.architecture.same_network(full.best.architecture)
    a = json.loads((tmp_path / "full" / "alphas.json").read_text())[-1]["probabilities"]
    b = json.loads((tmp_path / "resumed" / "alphas.json").read_text())[-1]["probabilities"]
    assert a == b

    import convnas.strategies.evaluators as ev_module

    kw = dict(seed=0, device=torch.device(device), show_progress=False)
    arch = _space().architecture([0] * len(_space().decisions()))
    full_ev = ev_module.SupernetEvaluator(epochs=2, batch_size=8, steps_per_epoch=2)
    full_ev.prepare(_space(), data, tmp_path / "sn_full", **kw)
    real_save = ev_module.save_checkpoint

    def crash_after_save(path, payload):
        real_save(path, payload)
        raise KeyboardInterrupt

    monkeypatch.setattr(ev_module, "save_checkpoint", crash_after_save)
    with pytest.raises(KeyboardInterrupt):
        ev_module.SupernetEvaluator(epochs=2, batch_size=8, steps_per_epoch=2).prepare(
            _space(), data, tmp_path / "sn_resumed", **kw
        )
    monkeypatch.setattr(ev_module, "save_checkpoint", real_save)
    resumed_ev = ev_module.SupernetEvaluator(epochs=2, batch_size=8, steps_per_epoch=2)
    resumed_ev.prepare(_space(), data, tmp_path / "sn_resumed", **kw)
    assert full_ev.score(arch) == resumed_ev.score(arch)
