"""Heartbeats, stale-trial failure and retry for every storage a convnas study can live in.

A worker that is killed (SIGKILL, a crashed node, a pre-empted job) leaves its trial RUNNING.
This module finds such trials and runs them again, on any Optuna storage, through Optuna's public
API only (Optuna's own heartbeat is left off: ``RDBStorage`` is built without
``heartbeat_interval``, and ``JournalStorage`` has none):

- :class:`Heartbeat`: while a trial's objective runs, its worker beats. On entering, it beats
  once synchronously (the user attribute :data:`BEAT_ATTR`, set to ``time.time()`` with the
  public ``Trial.set_user_attr``) and records :data:`WORKER_ATTR` ("host:pid"); a daemon thread
  then beats every ``heartbeat_interval`` seconds until the context exits, and the exit waits for
  that thread, so no beat lands after the trial's work ended. A beat refused because the trial
  is finished (another worker failed it) stops the beating; any other failed beat is logged and
  tried again at the next interval.
- :func:`reap_stale_trials`, which every worker calls at each iteration of its loop and at
  collect time: it fails, with ``Study.tell(number, state=FAIL)``, the RUNNING trials whose last
  beat is older than ``grace_period`` seconds (wall clock: workers on several machines need
  clocks synchronised, e.g. by NTP, to within a fraction of ``grace_period``), and the RUNNING
  trials that never beat (their worker died between creating the trial and its first beat) once
  this process has watched them stay silent for ``2 * grace_period`` seconds (a monotonic clock,
  so clock skew between machines does not matter for them; a new process starts watching anew).
- Failing is a compare-and-set, so of several workers reaping one stale trial exactly one
  succeeds, and only that one retries it: ``tell`` raises ``ValueError`` when it already sees
  the trial finished, and the storage raises ``UpdateFinishedTrialError`` when the trial was
  finished between that check and its own write. That second check is atomic with the write
  because PostgreSQL/MySQL ``RDBStorage`` reads the row ``SELECT ... FOR UPDATE``, SQLite
  transactions begin ``IMMEDIATE`` (:func:`rdb_storage` installs this with SQLAlchemy's public
  event API on the public ``RDBStorage.engine``; plain Optuna lets two SQLite workers both fail,
  and both retry, one trial), and ``JournalStorage`` replays the log in order, so the second
  writer's FAIL is rejected. As Optuna's own stale-trial routine does, the sampler is not told
  about these failures (``tell`` runs with a neutral sampler).
- :class:`RetryStaleTrial`: the winner enqueues the failed trial's parameters again with
  ``user_attrs`` ``retried_from`` (first trial of the chain), ``retry_of`` (the failed trial) and
  ``attempt``, up to ``max_retry`` times. A trial that went stale before it was sampled (no
  ``architecture`` user attribute, and not a queued trial) is not retried: a fresh trial takes its
  place. A worker that dies between failing a trial and enqueueing its retry leaves that trial
  FAIL without a retry; the search then samples a fresh trial instead.
- :class:`TornTailSafeJournalFileBackend`: a ``JournalFileBackend`` that drops a log line torn by
  a writer killed mid-append; :func:`journal_storage` wraps it in a plain ``JournalStorage``.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock
from optuna.trial import FrozenTrial, TrialState

__all__ = [
    "BEAT_ATTR",
    "WORKER_ATTR",
    "Heartbeat",
    "RetryStaleTrial",
    "StaleTrialReaper",
    "TornTailSafeJournalFileBackend",
    "journal_storage",
    "rdb_storage",
    "reap_stale_trials",
]

logger = logging.getLogger(__name__)

BEAT_ATTR = "convnas:heartbeat"  # trial user attr: time.time() of the last beat
WORKER_ATTR = "worker"  # trial user attr "host:pid", set right after the first beat


class Heartbeat:
    """Beat for ``trial`` while the ``with`` block runs (see the module docstring).

    ``with Heartbeat(trial, interval=5, worker="host:pid"): ...`` beats once before the block,
    records ``worker``, then beats every ``interval`` seconds in a daemon thread until the block
    ends. Only this object's thread writes the beat after the first one, and only to the key set
    by the first beat, so the trial object can be used by the block meanwhile.
    """

    def __init__(self, trial: optuna.Trial, *, interval: float, worker: str) -> None:
        if interval <= 0:
            raise ValueError(f"the heartbeat interval must be positive, got {interval}")
        self.trial, self.interval, self.worker = trial, interval, worker
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self) -> bool:
        """Record one beat now; False when the trial is finished (stop beating)."""
        try:
            self.trial.set_user_attr(BEAT_ATTR, time.time())
        except UpdateFinishedTrialError:
            logger.warning(
                "trial %d was finished by another worker while running here (its heartbeat came "
                "too late); it no longer beats",
                self.trial.number,
            )
            return False
        return True

    def __enter__(self) -> Heartbeat:
        if self.beat():  # synchronous: a trial carrying WORKER_ATTR has a beat on record
            self.trial.set_user_attr(WORKER_ATTR, self.worker)
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._run, name=f"convnas-heartbeat-{self.trial.number}", daemon=True
            )
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                if not self.beat():
                    return
            except Exception as exc:  # a busy or unreachable database: try again next time
                logger.warning("trial %d: heartbeat failed (%s)", self.trial.number, exc)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if exc_type is not None and not issubclass(exc_type, Exception):
            # Ctrl-C or SIGTERM: the trial fails as interrupted, not as "no heartbeat".
            try:
                self.trial.set_user_attr(
                    "fail_reason",
                    f"interrupted ({str(exc) or exc_type.__name__}) before it finished; "
                    f"--resume continues the search",
                )
            except Exception as error:  # the interrupt matters more than its record
                logger.debug("trial %d: reason not recorded (%s)", self.trial.number, error)


class RetryStaleTrial:
    """Run a failed stale trial's parameters again as a new (queued) trial.

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

    def expired(self, numbers: Iterable[int]) -> list[int]:
        now = self.clock()
        self._first_seen = {i: self._first_seen.get(i, now) for i in numbers}
        return [i for i, seen in self._first_seen.items() if now - seen > self.limit_s]


class StaleTrialReaper:
    """Fails a study's stale RUNNING trials and retries them; keeps the silent-trial clock.

    Use one reaper per study object (:func:`reap_stale_trials` keeps one for each), so that a
    trial that never beats is failed once it has been silent for ``2 * grace_period`` seconds of
    this reaper's ``clock``.
    """

    def __init__(
        self,
        grace_period: float,
        max_retry: int | None,
        *,
        complete_attr: str | None = "architecture",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if grace_period <= 0:
            raise ValueError(f"grace_period must be positive, got {grace_period}")
        self.grace_period = grace_period
        self.retry = RetryStaleTrial(max_retry, complete_attr=complete_attr)
        self.silent = _SilentTrials(2 * grace_period, clock=clock)

    def stale_trials(self, study: optuna.Study) -> list[int]:
        """Numbers of the RUNNING trials that are stale now."""
        now, stale, silent = time.time(), [], []
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            beat = t.user_attrs.get(BEAT_ATTR)
            try:
                age = now - float(beat) if beat is not None else None
            except (TypeError, ValueError):
                age = None  # not a beat of ours: treated as no sign of life
            if age is None:
                silent.append(t.number)
            elif age > self.grace_period:
                stale.append(t.number)
        return sorted(set(stale) | set(self.silent.expired(silent)))

    def __call__(self, study: optuna.Study) -> list[int]:
        """Fail the stale trials now and retry each one this call failed; return their numbers."""
        failed = []
        for number in self.stale_trials(study):
            trial = _fail(study, number)
            if trial is None:
                continue  # finished meanwhile, by its worker or by another reaper
            failed.append(number)
            self.retry(study, trial)
        return failed


_NEUTRAL_SAMPLER = optuna.samplers.RandomSampler()  # its after_trial does nothing


def _fail(study: optuna.Study, number: int) -> FrozenTrial | None:
    """Set trial ``number`` to FAIL; the failed trial, or None when it was already finished."""
    sampler, study.sampler = study.sampler, _NEUTRAL_SAMPLER  # e.g. BruteForce would stop()
    try:
        return study.tell(number, state=TrialState.FAIL)
    except (ValueError, UpdateFinishedTrialError) as exc:
        logger.debug("trial %d was finished meanwhile: %s", number, exc)
        return None
    finally:
        study.sampler = sampler


_REAPERS: weakref.WeakKeyDictionary[optuna.Study, StaleTrialReaper] = weakref.WeakKeyDictionary()


def reap_stale_trials(
    study: optuna.Study,
    *,
    grace_period: float,
    max_retry: int | None,
    complete_attr: str | None = "architecture",
) -> list[int]:
    """Fail the study's stale RUNNING trials now and retry them; return the numbers failed.

    The silent-trial clock of ``study`` (this study object) persists between calls.
    """
    reaper = _REAPERS.get(study)
    if (
        reaper is None
        or reaper.grace_period != grace_period
        or reaper.retry.max_retry != max_retry
        or reaper.retry.complete_attr != complete_attr
    ):
        reaper = StaleTrialReaper(grace_period, max_retry, complete_attr=complete_attr)
        _REAPERS[study] = reaper
    return reaper(study)


def rdb_storage(url: str, engine_kwargs: dict[str, Any] | None = None) -> RDBStorage:
    """A plain ``RDBStorage`` (Optuna's heartbeat off: ours runs), compare-and-set on SQLite."""
    storage = RDBStorage(url, engine_kwargs=engine_kwargs)
    _serialise_sqlite(storage.engine)
    return storage


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


def journal_storage(path: str | os.PathLike[str], lock_grace_period: int = 30) -> JournalStorage:
    """A plain ``JournalStorage`` on a :class:`TornTailSafeJournalFileBackend` at ``path``."""
    return JournalStorage(
        TornTailSafeJournalFileBackend(os.fspath(path), lock_grace_period=lock_grace_period)
    )


class TornTailSafeJournalFileBackend(JournalFileBackend):
    """``JournalFileBackend`` that, under its lock, drops a trailing partial line (left by a
    writer killed mid-append) before appending. Optuna's reader skips a partial last line but
    fails on it once another line follows, so without this one torn write would break the study
    for good. The torn operation was never acknowledged to its writer, so dropping it is the
    same as the writer having died just before it."""

    def __init__(self, file_path: str, lock_grace_period: int = 30) -> None:
        self.convnas_path = file_path
        self.convnas_lock = JournalFileSymlinkLock(file_path, grace_period=lock_grace_period)
        super().__init__(file_path, lock_obj=self.convnas_lock)

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        data = ("\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n").encode()
        self.convnas_lock.acquire()
        try:
            fd = os.open(self.convnas_path, os.O_RDWR | os.O_APPEND)
            try:
                _drop_torn_tail(fd, self.convnas_path)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
        finally:
            self.convnas_lock.release()


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
