"""Stale-trial detection, compare-and-set failure, retry records and torn journal lines, in-process.

Also: a trial whose training diverges (a real NaN loss) or runs out of memory ends FAIL with a
message saying what happened, and the study still reaches ``n_trials``.
"""

from __future__ import annotations

import csv
import threading
import time

import pytest
import torch

from convnas.data import load_dataset
from convnas.errors import ConfigError
from convnas.search_space import get_space
from convnas.strategies import heartbeat
from convnas.strategies.evaluators import TrainEvaluator
from convnas.strategies.optuna import (
    OptunaSettings,
    OptunaStrategy,
    make_storage,
    node_index,
)
from convnas.strategies.optuna.sampling import sample_architecture

optuna = pytest.importorskip("optuna")
# study.ask() outside Study.optimize stands for a worker's trial here; Optuna warns about that.
pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")
State = optuna.trial.TrialState
CHOICE = optuna.distributions.CategoricalDistribution(["a", "b"])
FAST = {
    "progress": False,
    "device": "cpu",
    "population_size": 4,
    "evaluator": "train",
    "evaluator_settings": {"epochs": 1, "batch_size": 16, "max_steps": 2},
    "heartbeat_interval": 1,
    "grace_period": 2,
}


def _journal(path):
    return make_storage(f"journal:{path}", OptunaSettings(heartbeat_interval=1, grace_period=2))


def _running_trial(study, *, beat_age: float | None, worker: bool = True):
    """A RUNNING trial with a sampled param, as a worker leaves it when it dies."""
    trial = study.ask({"x": CHOICE})
    trial.set_user_attr("architecture", "sampled")  # what makes a stale trial worth a retry
    storage = study._storage
    if beat_age is not None:
        storage.set_trial_system_attr(trial._trial_id, heartbeat.BEAT_ATTR, time.time() - beat_age)
    if worker:
        trial.set_user_attr(heartbeat.WORKER_ATTR, "elsewhere:1")
    return trial


def test_journal_stale_trial_is_failed_and_retried_with_its_params(tmp_path):
    study = optuna.create_study(storage=_journal(tmp_path / "j.log"))
    dead = _running_trial(study, beat_age=10)
    alive = _running_trial(study, beat_age=0)
    heartbeat.reap_stale_trials(study)
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [State.FAIL, State.RUNNING, State.WAITING]
    retry = trials[2]
    assert retry.user_attrs == {"retried_from": dead.number, "retry_of": dead.number, "attempt": 1}
    assert retry.system_attrs["fixed_params"] == trials[0].params
    assert trials[1].number == alive.number


def test_two_workers_cannot_both_retry_one_stale_trial(tmp_path):
    path = tmp_path / "j.log"
    first = optuna.create_study(storage=_journal(path), study_name="s")
    _running_trial(first, beat_age=10)
    second = optuna.load_study(storage=_journal(path), study_name="s")
    for study in (first, second, first):
        heartbeat.reap_stale_trials(study)
    states = [t.state for t in first.get_trials(deepcopy=False)]
    assert states == [State.FAIL, State.WAITING]


def test_sqlite_fail_is_compare_and_set(tmp_path, monkeypatch):
    """Two workers read the stale trial as RUNNING at the same time; one FAIL wins."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    settings = OptunaSettings(heartbeat_interval=1, grace_period=2)
    study = optuna.create_study(storage=make_storage(url, settings), study_name="s")
    trial_id = study.ask()._trial_id
    original = optuna.storages.RDBStorage.check_trial_is_updatable

    def slow_check(self, trial_id, state):  # widen the read-then-write window
        original(self, trial_id, state)
        time.sleep(0.3)

    monkeypatch.setattr(optuna.storages.RDBStorage, "check_trial_is_updatable", slow_check)
    outcomes = []

    def fail_it():
        try:
            outcomes.append(
                make_storage(url, settings).set_trial_state_values(trial_id, State.FAIL)
            )
        except optuna.exceptions.UpdateFinishedTrialError:
            outcomes.append("already finished")

    threads = [threading.Thread(target=fail_it) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(map(str, outcomes)) == ["True", "already finished"]


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_a_trial_that_never_beat_is_failed_after_twice_the_grace_period(tmp_path, kind):
    url = f"sqlite:///{tmp_path / 's.db'}" if kind == "sqlite" else f"journal:{tmp_path / 'j'}"
    storage = make_storage(url, OptunaSettings(heartbeat_interval=1, grace_period=2))
    now = [0.0]
    storage._silent = heartbeat._SilentTrials(2.0, clock=lambda: now[0])
    study = optuna.create_study(storage=storage)
    _running_trial(study, beat_age=None, worker=False)  # died between ask and its first beat
    heartbeat.reap_stale_trials(study)
    now[0] = 1.9
    heartbeat.reap_stale_trials(study)
    assert study.get_trials(deepcopy=False)[0].state == State.RUNNING
    now[0] = 2.1
    heartbeat.reap_stale_trials(study)
    assert [t.state for t in study.get_trials(deepcopy=False)] == [State.FAIL, State.WAITING]


def test_retry_gives_up_after_max_retry_and_skips_unsampled_trials(tmp_path):
    study = optuna.create_study(storage=_journal(tmp_path / "j.log"))
    retry = heartbeat.RetryStaleTrial(max_retry=2)
    exhausted = optuna.trial.create_trial(
        state=State.FAIL,
        params={"x": "a"},
        distributions={"x": CHOICE},
        user_attrs={"retried_from": 0, "retry_of": 1, "attempt": 2},
    )
    unsampled = optuna.trial.create_trial(state=State.FAIL)
    partly_sampled = optuna.trial.create_trial(
        state=State.FAIL, params={"x": "a"}, distributions={"x": CHOICE}
    )
    retry(study, exhausted)
    retry(study, unsampled)
    heartbeat.RetryStaleTrial(2, complete_attr="architecture")(study, partly_sampled)
    assert study.get_trials(deepcopy=False) == []
    retry(
        study,
        optuna.trial.create_trial(
            state=State.FAIL,
            params={"x": "b"},
            distributions={"x": CHOICE},
            user_attrs={"retried_from": 0, "attempt": 1},
        ),
    )
    (queued,) = study.get_trials(deepcopy=False)
    assert queued.user_attrs["attempt"] == 2 and queued.user_attrs["retried_from"] == 0


def test_a_torn_journal_line_is_dropped_before_the_next_append(tmp_path):
    path = tmp_path / "j.log"
    study = optuna.create_study(storage=_journal(path), study_name="s")
    study.set_user_attr("before", 1)
    with open(path, "ab") as f:
        f.write(b'{"op_code": 2, "worker_id": "dead", "stu')  # a writer killed mid-line
    study.set_user_attr("after", 2)
    text = path.read_bytes()
    assert text.endswith(b"\n") and b'"worker_id": "dead"' not in text
    reloaded = optuna.load_study(storage=_journal(path), study_name="s")
    assert reloaded.user_attrs == {"before": 1, "after": 2}


def _space():
    return get_space(
        "resnet",
        candidates=["conv_3x3", "c2sp", "conv_1x1"],
        depth=8,
        widths=[4, 8, 8],
        num_classes=4,
        input_shape=[3, 8, 8],
    )


def _data():
    return load_dataset(
        "synthetic",
        num_classes=4,
        input_shape=(3, 8, 8),
        size=96,
        seed=0,
        val_fraction=0.25,
        limit_test=16,
    )


def test_a_dead_workers_trial_blocks_no_slot_and_is_run_again(tmp_path):
    """The dead trial holds the last slot until it is failed; its retry then completes."""
    url = f"journal:{tmp_path / 'study.journal'}"
    strategy = OptunaStrategy(n_trials=3, storage=url, **FAST)
    study = strategy.open_study(_space(), tmp_path)
    dead = study.ask()
    arch = sample_architecture(dead, _space(), sample_hparams=True)  # died while training it
    dead.set_user_attr("architecture", arch.to_dict())
    study._storage.set_trial_system_attr(dead._trial_id, heartbeat.BEAT_ATTR, time.time())
    dead.set_user_attr(heartbeat.WORKER_ATTR, "elsewhere:1")
    result = strategy.search(_space(), _data(), tmp_path, resume=True)
    trials = optuna.load_study(study_name="convnas", storage=_journal(tmp_path / "study.journal"))
    states = [t.state for t in trials.get_trials(deepcopy=False)]
    assert result.info["complete"] == 3 and states.count(State.COMPLETE) == 3
    assert states[0] == State.FAIL and State.RUNNING not in states
    retry = next(t for t in trials.trials if t.user_attrs.get("retry_of") == 0)
    assert retry.state == State.COMPLETE and retry.params == trials.trials[0].params


def test_nan_and_out_of_memory_fail_the_trial_with_their_reason(tmp_path, monkeypatch):
    calls = {"n": 0}
    original = TrainEvaluator.score

    def flaky(self, arch, trial=None):
        calls["n"] += 1
        if calls["n"] == 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        if calls["n"] == 3:
            self.lr = 1e30  # a real divergence: the loss becomes inf/nan in training
        try:
            return original(self, arch, trial)
        finally:
            self.lr = 0.05

    monkeypatch.setattr(TrainEvaluator, "score", flaky)
    result = OptunaStrategy(n_trials=3, **FAST).search(_space(), _data(), tmp_path)
    assert result.info["complete"] == 3 and result.info["failed"] == 2
    with open(tmp_path / "trials.csv") as f:
        failed = [r["fail_reason"] for r in csv.DictReader(f) if r["state"] == "FAIL"]
    assert "out of memory" in failed[0] and "batch_size" in failed[0]
    assert "diverged" in failed[1] and ("nan" in failed[1] or "inf" in failed[1])


def test_heartbeat_settings_and_node_index_are_validated(monkeypatch):
    with pytest.raises(ConfigError, match="grace_period > heartbeat_interval must hold"):
        OptunaSettings(heartbeat_interval=5, grace_period=5)
    monkeypatch.setenv("CONVNAS_NODE_INDEX", "3")
    assert node_index() == 3
    monkeypatch.setenv("CONVNAS_NODE_INDEX", "two")
    with pytest.raises(ConfigError, match="CONVNAS_NODE_INDEX must be an integer"):
        node_index()


def test_a_live_trial_failed_by_another_worker_does_not_stop_the_search(tmp_path, monkeypatch):
    """A heartbeat later than grace_period (an overloaded machine): another worker fails and
    re-queues the trial while it runs; this worker logs it and goes on."""
    path = tmp_path / "study.journal"
    calls = {"n": 0}
    original = TrainEvaluator.score

    def taken_over(self, arch, trial=None):
        calls["n"] += 1
        if calls["n"] == 1:
            other = optuna.load_study(study_name="convnas", storage=_journal(path))
            other._storage.set_trial_system_attr(
                trial._trial_id, heartbeat.BEAT_ATTR, time.time() - 100
            )
            heartbeat.reap_stale_trials(other)
        return original(self, arch, trial)

    monkeypatch.setattr(TrainEvaluator, "score", taken_over)
    result = OptunaStrategy(n_trials=3, storage=f"journal:{path}", **FAST).search(
        _space(), _data(), tmp_path
    )
    trials = result.info
    study = optuna.load_study(study_name="convnas", storage=_journal(path))
    states = [t.state for t in study.get_trials(deepcopy=False)]
    assert trials["complete"] == 3 and states[0] == State.FAIL
    retry = next(t for t in study.trials if t.user_attrs.get("retry_of") == 0)
    assert retry.state == State.COMPLETE and State.RUNNING not in states
