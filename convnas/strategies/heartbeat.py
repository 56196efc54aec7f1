"""Heartbeats, stale-trial failure and retry for every storage a convnas study can live in.

A worker that is killed (SIGKILL, a crashed node, a pre-empted job) leaves its trial RUNNING.
Optuna's RDB storages (SQLite, PostgreSQL, MySQL) record a heartbeat per running trial and,
at the start of every trial, fail the RUNNING trials whose last beat is older than the grace
period (``optuna.storages.fail_stale_trials``), then call a stale-trial callback. This module
keeps that native mechanism and closes its gaps:

- :class:`HeartbeatJournalStorage`: Optuna's ``JournalStorage`` has no heartbeat; this subclass
  implements Optuna's ``BaseHeartbeat`` interface (the beat is a trial system attribute holding
  the wall-clock time), so Optuna's own loop beats, detects and fails stale trials exactly as it
  does for RDB storages. Its file backend drops a log line torn by a writer killed mid-append.
- :class:`StaleAwareRDBStorage`: on SQLite every transaction begins ``IMMEDIATE``, which makes
  "read the state, then set it to FAIL" a compare-and-set (server databases get the same from
  ``SELECT ... FOR UPDATE``), so two workers can never both fail and retry one stale trial.
- On both, a RUNNING trial that never showed a sign of life (its worker died between creating
  it and its first beat) is failed too, once this process has watched it stay silent for twice
  the grace period (a monotonic clock: no clock skew between machines matters).
- :class:`RetryStaleTrial`, the stale-trial callback: it enqueues the failed trial's parameters
  again with ``user_attrs`` ``retried_from`` (first trial of the chain), ``retry_of`` (the failed
  trial) and ``attempt``, up to ``max_retry`` times. The callback runs only in the worker whose
  set-state-to-FAIL call succeeded, so each stale trial is retried at most once.
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import JournalStorage, RDBStorage
from optuna.storages._heartbeat import BaseHeartbeat, is_heartbeat_enabled
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock
from optuna.trial import FrozenTrial, TrialState

__all__ = [
    "BEAT_ATTR",
    "WORKER_ATTR",
    "HeartbeatJournalStorage",
    "RetryStaleTrial",
    "StaleAwareRDBStorage",
    "TornTailSafeJournalFileBackend",
    "mark_alive",
    "reap_stale_trials",
]

logger = logging.getLogger(__name__)

BEAT_ATTR = "convnas:heartbeat"  # trial system attr: time.time() of the last beat (Journal)
WORKER_ATTR = "worker"  # trial user attr "host:pid", set once the objective runs


class RetryStaleTrial:
    """Stale-trial callback: run the failed trial's parameters again as a new trial.

    A trial whose worker died while it was still sampling has only part of its parameters; it
    is not retried (a fresh trial takes its place). With ``complete_attr``, a trial counts as
    sampled once it carries that user attribute; without, once it has any parameter. A queued
    trial (a retry) knows its parameters from the start and is always retried.
    """

    def __init__(self, max_retry: int | None, complete_attr: str | None = None) -> None:
        self.max_retry, self.complete_attr = max_retry, complete_attr

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        attempt = int(trial.user_attrs.get("attempt", 0)) + 1
        fixed = trial.system_attrs.get("fixed_params") or {}  # a queued trial (a retry) knew them
        params = {**fixed, **trial.params}
        sampled = bool(fixed) or (
            bool(params) and (self.complete_attr is None or self.complete_attr in trial.user_attrs)
        )
        if not sampled:
            logger.warning("trial %d went stale before it was sampled; not retried", trial.number)
            return
        if self.max_retry is not None and attempt > self.max_retry:
            logger.warning(
                "trial %d went stale; retried %d times already, giving up",
                trial.number,
                attempt - 1,
            )
            return
        origin = int(trial.user_attrs.get("retried_from", trial.number))
        study.enqueue_trial(
            params,
            user_attrs={"retried_from": origin, "retry_of": trial.number, "attempt": attempt},
            skip_if_exists=False,
        )
        logger.warning(
            "trial %d lost its worker (no heartbeat): failed and queued again", trial.number
        )


class _SilentTrials:
    """Remembers since when this process has seen each RUNNING trial without a sign of life."""

    def __init__(self, limit_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit_s, self.clock = limit_s, clock
        self._first_seen: dict[int, float] = {}

    def expired(self, trial_ids: Iterable[int]) -> list[int]:
        now = self.clock()
        self._first_seen = {i: self._first_seen.get(i, now) for i in trial_ids}
        return [i for i, seen in self._first_seen.items() if now - seen > self.limit_s]


class StaleAwareRDBStorage(RDBStorage):
    """``RDBStorage`` whose state changes are compare-and-set on SQLite too, and which also
    fails RUNNING trials that never beat."""

    def __init__(self, url: str, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self._silent = _SilentTrials(2 * (self.grace_period or 2 * (self.heartbeat_interval or 1)))
        _serialise_sqlite(self.engine)

    def __setstate__(self, state: dict[Any, Any]) -> None:
        super().__setstate__(state)
        _serialise_sqlite(self.engine)

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        stale = set(super()._get_stale_trial_ids(study_id))
        running = self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
        silent = [t._trial_id for t in running if WORKER_ATTR not in t.user_attrs]
        return sorted(stale | set(self._silent.expired(silent)))


def _serialise_sqlite(engine: Any) -> None:
    """Make every SQLite transaction take the write lock at BEGIN (SQLAlchemy's documented
    recipe): a read followed by a write can then not interleave with another worker's."""
    if engine.name != "sqlite":
        return
    from sqlalchemy import event

    def on_connect(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None  # the driver must not issue its own BEGIN

    def on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    event.listen(engine, "connect", on_connect)
    event.listen(engine, "begin", on_begin)
    engine.dispose()  # connections opened before the listeners existed are not reused


class TornTailSafeJournalFileBackend(JournalFileBackend):
    """``JournalFileBackend`` that, under its lock, drops a trailing partial line (left by a
    writer killed mid-append) before appending. Optuna's reader skips a partial last line but
    fails on it once another line follows, so without this one torn write would break the study
    for good. The torn operation was never acknowledged to its writer, so dropping it is the
    same as the writer having died just before it."""

    def __init__(self, file_path: str, lock_grace_period: int = 30) -> None:
        self._path = file_path
        self._append_lock = JournalFileSymlinkLock(file_path, grace_period=lock_grace_period)
        super().__init__(file_path, lock_obj=self._append_lock)

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        data = ("\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n").encode()
        self._append_lock.acquire()
        try:
            fd = os.open(self._path, os.O_RDWR | os.O_APPEND)
            try:
                _drop_torn_tail(fd, self._path)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
        finally:
            self._append_lock.release()


def _drop_torn_tail(fd: int, path: str, chunk: int = 1 << 16) -> None:
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return
    end = size
    while end > 0:
        start = max(0, end - chunk)
        newline = os.pread(fd, end - start, start).rfind(b"\n")
        if newline >= 0:
            end = start + newline + 1
            break
        end = start
    os.ftruncate(fd, end)
    logger.warning("%s: dropped %d bytes of a log line torn by a killed writer", path, size - end)


class HeartbeatJournalStorage(JournalStorage, BaseHeartbeat):
    """``JournalStorage`` with heartbeats, so Optuna fails and retries its stale trials.

    The beat is the wall-clock time of the beating worker; workers on several machines sharing
    one journal file need synchronised clocks (NTP) to within a fraction of ``grace_period``.
    """

    def __init__(
        self,
        backend: Any,
        *,
        heartbeat_interval: int,
        grace_period: int,
        stale_trial_callback: Callable[[optuna.Study, FrozenTrial], None] | None = None,
    ) -> None:
        super().__init__(backend)
        self.heartbeat_interval, self.grace_period = heartbeat_interval, grace_period
        self.stale_trial_callback = stale_trial_callback
        self._silent = _SilentTrials(2 * grace_period)

    def record_heartbeat(self, trial_id: int) -> None:
        try:
            self.set_trial_system_attr(trial_id, BEAT_ATTR, time.time())
        except UpdateFinishedTrialError:
            logger.warning("trial id %d was finished by another worker while running", trial_id)

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        now, stale, silent = time.time(), [], []
        for t in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            beat = t.system_attrs.get(BEAT_ATTR)
            if beat is None:
                silent.append(t._trial_id)
            elif now - float(beat) > self.grace_period:
                stale.append(t._trial_id)
        return sorted(set(stale) | set(self._silent.expired(silent)))

    def get_heartbeat_interval(self) -> int:
        return self.heartbeat_interval

    def get_heartbeat_stale_trial_callback(
        self,
    ) -> Callable[[optuna.Study, FrozenTrial], None] | None:
        return self.stale_trial_callback


def reap_stale_trials(study: optuna.Study) -> None:
    """Fail the study's stale RUNNING trials now and retry them (Optuna's own routine)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def mark_alive(trial: optuna.Trial, worker: str) -> None:
    """Beat once, synchronously, then record the worker: a trial carrying ``WORKER_ATTR`` has
    a beat on record, so from then on the heartbeat alone decides whether it is stale."""
    storage = trial.study._storage
    if is_heartbeat_enabled(storage):
        storage.record_heartbeat(trial._trial_id)
    trial.set_user_attr(WORKER_ATTR, worker)
