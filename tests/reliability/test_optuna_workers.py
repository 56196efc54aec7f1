"""Four worker processes on one study of 40 trials, one of them SIGKILLed mid-trial.

Each worker is a separate ``python -m convnas search CONFIG`` (the same command run on four
machines), on SQLite, on Optuna's Journal file storage and on PostgreSQL. The killed worker's
trial must end FAIL, be retried (same parameters, ``retry_of`` pointing to it) by a survivor, and
the study must end with exactly 40 COMPLETE trials, none counted twice, nothing left RUNNING.
"""

from __future__ import annotations

import socket
import time

import pytest

from tests.reliability import harness

pytest.importorskip("optuna")

N_TRIALS, WORKERS = 40, 4


class _Watch:
    """Finds the victim's RUNNING trial once it is training (its architecture is recorded)."""

    def __init__(self, config, pid: int) -> None:
        self.config, self.worker, self.study = config, f"{socket.gethostname()}:{pid}", None

    def trial_in_training(self) -> int | None:
        import optuna

        try:
            self.study = self.study or harness.open_study(harness.storage_url(self.config))
        except Exception:  # the workers have not created the storage or the study yet
            return None
        running = self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        for t in running:
            if t.user_attrs.get("worker") == self.worker and "architecture" in t.user_attrs:
                return t.number
        return None


def _four_workers_one_killed(tmp_path, storage: str | None, label: str):
    config = harness.write_config(tmp_path, n_trials=N_TRIALS, storage=storage)
    started = time.monotonic()
    procs = [
        harness.start(config, env={"CONVNAS_NODE_INDEX": str(i)}, log=tmp_path / f"w{i}.log")
        for i in range(WORKERS)
    ]
    victim, killed = procs[1], []
    watch = _Watch(config, victim.pid)

    def killed_mid_trial() -> bool:
        number = watch.trial_in_training()
        if number is not None and harness.kill(victim):
            killed.append(number)
            return True
        assert victim.poll() is None, "the victim exited before it could be killed"
        return False

    try:
        harness.wait_for(killed_mid_trial, 60, "the victim to train a trial", poll=0.1)
        for p in procs:
            if p is not victim:
                assert p.wait(timeout=120) == 0, (tmp_path / "w0.log").read_text()[-3000:]
    finally:
        for p in procs:
            harness.kill(p)
    elapsed = time.monotonic() - started
    result = harness.audit(config, N_TRIALS, csv_complete=True)
    lost = result.trials[killed[0]]
    assert lost.state.name == "FAIL"
    retry = result.trials[result.retries[lost.number]]
    assert retry.params == lost.params and retry.user_attrs["retried_from"] == lost.number
    workers = {t.user_attrs.get("worker") for t in result.trials if t.state.name == "COMPLETE"}
    assert len(workers) >= 2  # the study really was shared
    print(
        f"\n[{label}] 1 worker killed in trial {lost.number}, retried as "
        f"{retry.number} ({retry.state.name}); trials: {dict(result.states)}, "
        f"{elapsed:.1f} s"
    )
    return result


@pytest.mark.slow
def test_four_workers_on_sqlite(tmp_path):
    _four_workers_one_killed(tmp_path, None, "sqlite")


@pytest.mark.slow
def test_four_workers_on_journal_file(tmp_path):
    _four_workers_one_killed(tmp_path, f"journal:{tmp_path / 'study.journal'}", "journal")


@pytest.mark.slow
def test_four_workers_on_postgresql(tmp_path, postgres_url):
    _four_workers_one_killed(tmp_path, postgres_url, "postgresql")
