"""The data split, weight init, batch order and sampler each have a seed of their own."""

from __future__ import annotations

import pytest
import torch

from convnas.data import load_dataset
from convnas.errors import ConfigError
from convnas.run.config import parse_config
from convnas.run.runner import load_data
from convnas.seeding import stream_seed
from convnas.strategies.evaluators import SupernetEvaluator
from convnas.strategies.optuna.settings import OptunaSettings, make_sampler
from tests.strategies.tiny import tiny_space


def _space():
    return tiny_space()


@pytest.fixture(scope="module")
def data():
    return load_dataset(
        "synthetic", num_classes=4, input_shape=(3, 8, 8), size=64, seed=0, val_fraction=0.25
    )


def _prepared(tmp_path, data, seed, batch_seed, epochs=0):
    ev = SupernetEvaluator(epochs=epochs, batch_size=16, steps_per_epoch=2, bn_batches=1)
    ev.prepare(
        _space(),
        data,
        tmp_path,
        seed=seed,
        batch_seed=batch_seed,
        device=torch.device("cpu"),
        show_progress=False,
    )
    return ev


def _weights(ev):
    return torch.cat([p.detach().flatten() for p in ev.supernet.weight_parameters()])


def test_init_and_batch_order_vary_apart(tmp_path, data):
    base = _prepared(tmp_path / "a", data, seed=0, batch_seed=0)
    other_batches = _prepared(tmp_path / "b", data, seed=0, batch_seed=5)
    other_init = _prepared(tmp_path / "c", data, seed=5, batch_seed=0)
    # The init depends on the init seed only ...
    assert torch.equal(_weights(base), _weights(other_batches))
    assert not torch.equal(_weights(base), _weights(other_init))
    # ... the calibration batches (batch order) on the batch seed only.
    assert torch.equal(base._calibration[0], other_init._calibration[0])
    assert not torch.equal(base._calibration[0], other_batches._calibration[0])


def test_streams_default_to_the_run_seed_and_take_overrides():
    assert stream_seed(7, {}, "init") == 7
    assert stream_seed(7, {"init": 3}, "init") == 3 and stream_seed(7, {"init": 3}, "data") == 7
    config = parse_config({"seed": 2, "seeds": {"batches": 9}})
    assert config.strategy_settings()["seeds"] == {"batches": 9}
    with pytest.raises(ConfigError, match="seeds.inti"):
        parse_config({"seeds": {"inti": 1}})
    with pytest.raises(ConfigError, match="seeds.data"):
        parse_config({"seeds": {"data": -1}})


def test_the_data_seed_moves_the_split_and_nothing_else():
    base = {"data": {"dataset": "digits", "limit_train": 200}}
    split = lambda cfg: load_data(parse_config(cfg)).val.images  # noqa: E731
    assert torch.equal(split(base), split({**base, "seeds": {"init": 4, "sampler": 4}}))
    assert not torch.equal(split(base), split({**base, "seeds": {"data": 4}}))


def test_the_sampler_seed_moves_the_proposals_only():
    optuna = pytest.importorskip("optuna")

    def first_draws(settings):
        study = optuna.create_study(sampler=make_sampler(settings))
        return [study.ask().suggest_int("x", 0, 10**6) for _ in range(3)]

    assert first_draws(OptunaSettings()) == first_draws(OptunaSettings(seeds={"init": 3}))
    assert first_draws(OptunaSettings()) != first_draws(OptunaSettings(seeds={"sampler": 3}))
    with pytest.raises(ConfigError, match="unknown stream"):
        OptunaSettings(seeds={"weights": 1})
