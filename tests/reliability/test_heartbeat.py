"""Heartbeats, stale-trial detection, compare-and-set failure, retry records and torn journal
lines, in-process; and that convnas reaches Optuna only through its public API.

Also: a trial whose training diverges (a real NaN loss) or runs out of memory ends FAIL with a
message saying what happened, and the study still reaches ``n_trials``.
"""

from __future__ import annotations

import ast
import csv
import pathlib
import re
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
State = optuna.trial.TrialState
CHOICE = optuna.distributions.CategoricalDistribution(["a", "b"])
GRACE = {"grace_period": 2, "max_retry": 3}
FAST = {
    "progress": False,
    "device": "cpu",
    "population_size": 4,
    "evaluator": "train",
    "evaluator_settings": {"epochs": 1, "batch_size": 16, "max_steps": 2},
    "heartbeat_interval": 1,
    "grace_period": 2,
}
SETTINGS = OptunaSettings(heartbeat_interval=1, grace_period=2)
REPO = pathlib.Path(__file__).resolve().parents[2]


def _journal(path):
    return make_storage(f"journal:{path}", SETTINGS)


def _url(tmp_path, kind):
    return f"sqlite:///{tmp_path / 's.db'}" if kind == "sqlite" else f"journal:{tmp_path / 'j'}"


def _running_trial(study, *, beat_age: float | None, worker: bool = True, sampled: bool = True):
    """A RUNNING trial with a sampled param, as a worker leaves it when it dies."""
    trial = study.ask({"x": CHOICE})
    if sampled:
        trial.set_user_attr("architecture", "sampled")  # what makes a stale trial worth a retry
    if beat_age is not None:
        trial.set_user_attr(heartbeat.BEAT_ATTR, time.time() - beat_age)
    if worker:
        trial.set_user_attr(heartbeat.WORKER_ATTR, "elsewhere:1")
    return trial


def test_journal_stale_trial_is_failed_and_retried_with_its_params(tmp_path):
    study = optuna.create_study(storage=_journal(tmp_path / "j.log"))
    dead = _running_trial(study, beat_age=10)
    alive = _running_trial(study, beat_age=0)
    assert heartbeat.reap_stale_trials(study, **GRACE) == [dead.number]
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [State.FAIL, State.RUNNING, State.WAITING]
    retry = trials[2]
    assert retry.user_attrs == {"retried_from": dead.number, "retry_of": dead.number, "attempt": 1}
    assert retry.system_attrs["fixed_params"] == trials[0].params
    assert trials[1].number == alive.number


def test_the_storages_are_plain_optuna_storages_without_optuna_heartbeat(tmp_path):
    rdb = make_storage(_url(tmp_path, "sqlite"), SETTINGS)
    assert type(rdb) is optuna.storages.RDBStorage and rdb.heartbeat_interval is None
    journal = make_storage(_url(tmp_path, "journal"), SETTINGS)
    assert type(journal) is optuna.storages.JournalStorage


def test_two_workers_cannot_both_retry_one_stale_trial(tmp_path):
    path = tmp_path / "j.log"
    first = optuna.create_study(storage=_journal(path), study_name="s")
    _running_trial(first, beat_age=10)
    second = optuna.load_study(storage=_journal(path), study_name="s")
    failed = [heartbeat.reap_stale_trials(study, **GRACE) for study in (first, second, first)]
    assert failed == [[0], [], []]
    states = [t.state for t in first.get_trials(deepcopy=False)]
    assert states == [State.FAIL, State.WAITING]


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_two_racing_reapers_fail_and_retry_a_stale_trial_once(tmp_path, kind, monkeypatch):
    """Both workers read the stale trial as RUNNING (tell's own check passes in both), then both
    try to set it to FAIL at once: the storage lets exactly one succeed, and only it retries."""
    url = _url(tmp_path, kind)
    study = optuna.create_study(storage=make_storage(url, SETTINGS), study_name="s")
    _running_trial(study, beat_age=10)
    cls = optuna.storages.RDBStorage if kind == "sqlite" else optuna.storages.JournalStorage
    both_read, seen = threading.Barrier(2, timeout=20), threading.local()
    get_trial = cls.get_trial

    def get_trial_then_wait(self, trial_id):
        trial = get_trial(self, trial_id)
        if not getattr(seen, "done", False):  # the first read of each thread: tell's check
            seen.done = True
            both_read.wait()
        return trial

    monkeypatch.setattr(cls, "get_trial", get_trial_then_wait)
    if kind == "sqlite":
        check = cls.check_trial_is_updatable

        def slow_check(self, trial_id, state):  # widen the read-then-write window
            check(self, trial_id, state)
            time.sleep(0.3)

        monkeypatch.setattr(cls, "check_trial_is_updatable", slow_check)
    reapers = [
        optuna.load_study(storage=make_storage(url, SETTINGS), study_name="s") for _ in range(2)
    ]
    failed, errors = [], []

    def reap(worker_study):
        try:
            failed.append(heartbeat.reap_stale_trials(worker_study, **GRACE))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reap, args=(s,)) for s in reapers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and sorted(failed) == [[], [0]]
    states = [t.state for t in study.get_trials(deepcopy=False)]
    assert states == [State.FAIL, State.WAITING]


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_a_trial_that_never_beat_is_failed_after_twice_the_grace_period(tmp_path, kind):
    study = optuna.create_study(storage=make_storage(_url(tmp_path, kind), SETTINGS))
    now = [0.0]
    reap = heartbeat.StaleTrialReaper(grace_period=1, max_retry=3, clock=lambda: now[0])
    _running_trial(study, beat_age=None, worker=False)  # died between ask and its first beat
    assert reap(study) == []
    now[0] = 1.9
    assert reap(study) == []
    assert study.get_trials(deepcopy=False)[0].state == State.RUNNING
    now[0] = 2.1
    assert reap(study) == [0]
    assert [t.state for t in study.get_trials(deepcopy=False)] == [State.FAIL, State.WAITING]


def test_reap_stale_trials_keeps_the_silent_clock_of_a_study_between_calls(tmp_path):
    study = optuna.create_study(storage=_journal(tmp_path / "j.log"))
    _running_trial(study, beat_age=None, worker=False)
    assert heartbeat.reap_stale_trials(study, grace_period=0.2, max_retry=3) == []
    time.sleep(0.5)
    assert heartbeat.reap_stale_trials(study, grace_period=0.2, max_retry=3) == [0]


def test_a_trial_stale_before_it_was_sampled_is_failed_but_not_retried(tmp_path):
    study = optuna.create_study(storage=_journal(tmp_path / "j.log"))
    _running_trial(study, beat_age=10, sampled=False)
    assert heartbeat.reap_stale_trials(study, **GRACE) == [0]
    assert [t.state for t in study.get_trials(deepcopy=False)] == [State.FAIL]


def test_a_stale_trial_is_failed_without_the_sampler_being_told(tmp_path):
    """BruteForceSampler.after_trial may call study.stop(), which raises outside optimize()."""
    study = optuna.create_study(
        storage=_journal(tmp_path / "j.log"), sampler=optuna.samplers.BruteForceSampler()
    )
    _running_trial(study, beat_age=10)
    assert heartbeat.reap_stale_trials(study, **GRACE) == [0]
    assert isinstance(study.sampler, optuna.samplers.BruteForceSampler)


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_heartbeat_beats_while_the_block_runs_and_stops_after_it(tmp_path, kind):
    study = optuna.create_study(storage=make_storage(_url(tmp_path, kind), SETTINGS))
    trial = study.ask()

    def attrs():
        return study.get_trials(deepcopy=False)[0].user_attrs

    before = time.time()
    with heartbeat.Heartbeat(trial, interval=0.05, worker="here:1") as beating:
        first = attrs()  # the first beat and the worker are on record before the work starts
        assert first[heartbeat.WORKER_ATTR] == "here:1"
        assert first[heartbeat.BEAT_ATTR] >= before
        # Outlive the grace period counted from the first beat: only the later beats keep the
        # trial fresh. The grace period is 40 intervals, so a loaded CI machine that stalls the
        # beating thread for a while does not make this fail (it did at 6 intervals).
        grace = 2.0
        time.sleep(grace + 0.3)
        later = attrs()[heartbeat.BEAT_ATTR]
        assert later > first[heartbeat.BEAT_ATTR] + 0.3
        assert time.time() - first[heartbeat.BEAT_ATTR] > grace
        assert heartbeat.StaleTrialReaper(grace_period=grace, max_retry=3)(study) == []
        thread = beating._thread
    assert thread is not None and not thread.is_alive()
    last = attrs()[heartbeat.BEAT_ATTR]
    time.sleep(0.2)
    assert attrs()[heartbeat.BEAT_ATTR] == last


def test_heartbeat_stops_quietly_when_another_worker_failed_the_trial(tmp_path):
    study = optuna.create_study(storage=_journal(tmp_path / "j.log"))
    trial = study.ask()
    with heartbeat.Heartbeat(trial, interval=0.05, worker="here:1") as beating:
        study.tell(trial.number, state=State.FAIL)  # as a reaper elsewhere would
        assert beating._thread is not None
        beating._thread.join(timeout=30)  # its next beat is refused and it ends by itself
        assert not beating._thread.is_alive()
    assert study.get_trials(deepcopy=False)[0].state == State.FAIL


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


def test_a_retry_that_goes_stale_is_retried_up_to_max_retry(tmp_path):
    study = optuna.create_study(storage=_journal(tmp_path / "j.log"))
    params = _running_trial(study, beat_age=10).params
    for attempt in (1, 2):
        assert heartbeat.reap_stale_trials(study, grace_period=2, max_retry=2) == [attempt - 1]
        retry = study.ask({"x": CHOICE})  # the queued retry, run by a worker that dies in turn
        assert retry.user_attrs["attempt"] == attempt and retry.params == params
        assert retry.user_attrs["retried_from"] == 0
        retry.set_user_attr(heartbeat.BEAT_ATTR, time.time() - 10)
    assert heartbeat.reap_stale_trials(study, grace_period=2, max_retry=2) == [2]
    states = [t.state for t in study.get_trials(deepcopy=False)]
    assert states == [State.FAIL, State.FAIL, State.FAIL]  # attempt 3 > max_retry: given up


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


_CHECKED = ["convnas/strategies/heartbeat.py", "convnas/strategies/optuna/*.py"]
_OPTUNA_PRIVATE_PATH = re.compile(r"\boptuna(\.[A-Za-z]\w*)*\._\w")


def _private_optuna_uses(path: pathlib.Path) -> list[str]:
    source = path.read_text()
    found = [f"private module path {m.group(0)}" for m in _OPTUNA_PRIVATE_PATH.finditer(source)]
    found += [f"access to .{name}" for name in ("_trial_id", "_storage") if f".{name}" in source]
    tree = ast.parse(source)
    from_optuna: set[str] = {"optuna"}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "optuna":
            parts = node.module.split(".") + [a.name for a in node.names]
            if any(p.startswith("_") for p in parts):
                found.append(f"line {node.lineno}: from {node.module} import ...")
            from_optuna |= {a.asname or a.name for a in node.names}
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "optuna":
                    if any(p.startswith("_") for p in alias.name.split(".")):
                        found.append(f"line {node.lineno}: import {alias.name}")
                    from_optuna.add((alias.asname or alias.name).split(".")[0])
    for node in ast.walk(tree):
        # A private attribute of anything but self/cls (e.g. trial._trial_id, study._storage);
        # convnas may hang its own ``_convnas_*`` attributes on an Optuna object.
        if isinstance(node, ast.Attribute) and _is_private(node.attr):
            owner = ast.unparse(node.value)
            if owner not in ("self", "cls") and not node.attr.startswith("_convnas"):
                found.append(f"line {node.lineno}: {owner}.{node.attr}")
        # A subclass of an Optuna class must not reach its base's private state through self.
        if isinstance(node, ast.ClassDef):
            bases = {ast.unparse(b).split(".")[0] for b in node.bases}
            if bases & from_optuna:
                for inner in ast.walk(node):
                    if (
                        isinstance(inner, ast.Attribute)
                        and ast.unparse(inner.value) == "self"
                        and _is_private(inner.attr)
                    ):
                        found.append(f"line {inner.lineno}: {node.name} uses self.{inner.attr}")
    return found


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def test_convnas_uses_only_public_optuna_api():
    files = sorted({p for pattern in _CHECKED for p in REPO.glob(pattern)})
    assert len(files) >= 5
    problems = {str(p.relative_to(REPO)): _private_optuna_uses(p) for p in files}
    assert {k: v for k, v in problems.items() if v} == {}


def test_the_private_api_check_finds_what_it_looks_for(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import optuna\n"
        "from optuna.storages._heartbeat import BaseHeartbeat\n"
        "from optuna.storages import JournalFileBackend\n"
        "x = optuna.storages._rdb.models\n"
        "def f(trial, study):\n"
        "    return trial._trial_id, study._storage, trial._convnas_ok\n"
        "class B(JournalFileBackend):\n"
        "    def f(self):\n"
        "        return self._file_path\n"
    )
    found = "\n".join(_private_optuna_uses(bad))
    for needle in (
        "optuna.storages._heartbeat",
        "optuna.storages._rdb",
        "trial._trial_id",
        "study._storage",
        "self._file_path",
    ):
        assert needle in found, needle
    assert "_convnas_ok" not in found


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
    dead.set_user_attr(heartbeat.BEAT_ATTR, time.time())  # its worker dies right after
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

    def flaky(self, arch, trial=None, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        if calls["n"] == 3:
            self.lr = 1e30  # a real divergence: the loss becomes inf/nan in training
        try:
            return original(self, arch, trial, **kwargs)
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

    def taken_over(self, arch, trial=None, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            # Another worker whose grace period this trial's beats miss fails and re-queues it.
            other = optuna.load_study(study_name="convnas", storage=_journal(path))
            failed = heartbeat.reap_stale_trials(other, grace_period=1e-6, max_retry=3)
            assert failed == [trial.number]
        return original(self, arch, trial, **kwargs)

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
