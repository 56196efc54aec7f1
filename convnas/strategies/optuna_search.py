"""Multi-objective search with Optuna: accuracy against params, MACs and training memory.

Each trial samples one architecture (a categorical operator per decision, plus conditional
hyper-parameters), measures its costs with the cost model before any training, records the
constraints with ``Trial.set_constraint`` (infeasible trials are not trained), and scores it with
an evaluator. The study lives in an Optuna storage (SQLite in the run directory by default, any
RDB or Journal URL by setting), so several workers, on one machine or many, share one study;
a worker's trial whose heartbeat stops is failed and re-queued (see ``docs/scaling.md``). The
study ends with exactly ``n_trials`` COMPLETE trials: no worker starts a trial beyond that, and
none exits while another's trial may still need a retry.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import os
import pathlib
import socket
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from convnas.errors import ConfigError, OptionalDependencyError, TrainingDivergedError
from convnas.io import atomic_write_text
from convnas.search_space.architecture import Architecture, build_model
from convnas.search_space.space import SearchSpace
from convnas.strategies.base import ArchitectureResult, SearchResult, SearchStrategy, config_hash
from convnas.strategies.evaluators import make_evaluator
from convnas.strategies.optuna_space import sample_architecture
from convnas.train import resolve_device

__all__ = ["OBJECTIVES", "SAMPLERS", "OptunaSettings", "OptunaStrategy", "RandomStrategy"]

logger = logging.getLogger(__name__)

OBJECTIVES = {
    "accuracy": "maximize",
    "params": "minimize",
    "deploy_params": "minimize",
    "macs": "minimize",
    "train_memory": "minimize",
}
SAMPLERS = ("nsga2", "nsga3", "tpe", "gp", "random", "bruteforce")
NODE_INDEX_ENV = "CONVNAS_NODE_INDEX"
_CAUGHT = (TrainingDivergedError, torch.OutOfMemoryError, MemoryError)  # fail the trial only
_POLL_S = 0.5  # how often a waiting worker looks at the study again
CONSTRAINTS = {"max_params": "params", "max_macs": "macs", "max_train_memory": "train_memory"}


def _optuna():
    try:
        import optuna
    except ImportError:
        raise OptionalDependencyError("optuna", "the Optuna search strategy") from None
    # Heartbeats, stale-trial retry and metric names are stable in practice but still carry
    # Optuna's "experimental" label; the warning says nothing actionable to our users.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


@dataclass(frozen=True)
class OptunaSettings:
    """Settings of the Optuna strategy.

    ``n_trials`` counts COMPLETE trials of the whole study (all workers together).
    ``evaluator`` is "supernet" (one-shot) or "train"; ``evaluator_settings`` go to it.
    ``storage`` is an Optuna URL (``sqlite:///...``, ``postgresql://...``, ``mysql://...``) or
    ``journal:PATH`` for a Journal file; None means SQLite at ``RUN_DIR/study.db``.
    Workers of one study share every setting but ``worker_index``, which varies the sampler's
    random stream. A RUNNING trial beats every ``heartbeat_interval`` seconds; one silent for
    ``grace_period`` seconds is failed and queued again, at most ``max_retry`` times
    (:mod:`convnas.strategies.heartbeat`).
    """

    n_trials: int = 30
    objectives: tuple[str, ...] = ("accuracy", "params")
    max_params: float | None = None
    max_macs: float | None = None
    max_train_memory: float | None = None
    sampler: str = "nsga2"
    population_size: int = 16
    seed: int = 0
    worker_index: int = 0
    storage: str | None = None
    study_name: str = "convnas"
    evaluator: str = "supernet"
    evaluator_settings: dict[str, Any] = field(default_factory=dict)
    sample_hparams: bool | None = None
    memory_batch_size: int = 64
    pruner: str = "none"
    heartbeat_interval: int = 5
    grace_period: int = 20
    max_retry: int = 3
    max_failed: int | None = None
    timeout: float | None = None
    device: str = "auto"
    progress: bool = True

    def __post_init__(self) -> None:
        objectives = tuple(self.objectives)
        object.__setattr__(self, "objectives", objectives)
        if not objectives or len(set(objectives)) != len(objectives):
            raise ConfigError(
                f"must be a non-empty list without repeats, got {objectives}", key="objectives"
            )
        for name in objectives:
            if name not in OBJECTIVES:
                raise ConfigError(
                    f"unknown objective {name!r}; choose from {list(OBJECTIVES)}", key="objectives"
                )
        if self.n_trials < 1:
            raise ConfigError(f"must be >= 1, but got {self.n_trials}", key="n_trials")
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"must be one of {SAMPLERS}, but got {self.sampler!r}", key="sampler")
        if self.pruner not in ("none", "median"):
            raise ConfigError(f"must be 'none' or 'median', but got {self.pruner!r}", key="pruner")
        if self.pruner == "median" and len(objectives) > 1:
            raise ConfigError(
                "Optuna cannot prune multi-objective studies (Trial.should_prune is not "
                "supported there); use a single objective or pruner: none",
                key="pruner",
            )
        if self.pruner == "median" and self.evaluator != "train":
            raise ConfigError("pruning needs the 'train' evaluator", key="pruner")
        if self.evaluator == "supernet" and self.sample_hparams:
            raise ConfigError(
                "the supernet evaluator holds one set of weights per candidate, so it cannot "
                "score sampled hyper-parameters; list them as separate candidates instead",
                key="sample_hparams",
            )
        for key in CONSTRAINTS:
            value = getattr(self, key)
            if value is not None and value <= 0:
                raise ConfigError(f"must be > 0 or null, but got {value}", key=key)
        for key in ("population_size", "memory_batch_size", "heartbeat_interval", "grace_period"):
            if getattr(self, key) < 1:
                raise ConfigError(f"must be >= 1, but got {getattr(self, key)}", key=key)
        if self.grace_period <= self.heartbeat_interval:
            raise ConfigError(
                f"grace_period > heartbeat_interval must hold (a live trial beats every "
                f"heartbeat_interval seconds), but got grace_period={self.grace_period}, "
                f"heartbeat_interval={self.heartbeat_interval}",
                key="grace_period",
            )

    @property
    def hparams_sampled(self) -> bool:
        if self.sample_hparams is None:
            return self.evaluator == "train"
        return self.sample_hparams

    def fingerprint(self) -> dict[str, Any]:
        keep = (
            "objectives",
            "max_params",
            "max_macs",
            "max_train_memory",
            "evaluator",
            "evaluator_settings",
            "sample_hparams",
            "memory_batch_size",
            "seed",
        )
        return {k: v for k, v in asdict(self).items() if k in keep}


def make_storage(url: str, settings: OptunaSettings) -> Any:
    """An Optuna storage for ``url``, with heartbeats and stale-trial retry on every kind.

    RDB URLs use Optuna's own heartbeat; ``journal:PATH`` gets ours (Optuna's Journal storage
    has none). See :mod:`convnas.strategies.heartbeat`.
    """
    _optuna()
    from convnas.strategies import heartbeat

    retry = heartbeat.RetryStaleTrial(settings.max_retry, complete_attr="architecture")
    if url.startswith("journal:"):
        path = pathlib.Path(url[len("journal:") :]).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        backend = heartbeat.TornTailSafeJournalFileBackend(
            str(path), lock_grace_period=max(3, settings.grace_period)
        )
        return heartbeat.HeartbeatJournalStorage(
            backend,
            heartbeat_interval=settings.heartbeat_interval,
            grace_period=settings.grace_period,
            stale_trial_callback=retry,
        )
    if "://" not in url:
        raise ConfigError(
            f"expected an Optuna storage URL (sqlite:///PATH, postgresql://..., mysql://...) or "
            f"journal:PATH, but got {url!r}",
            key="strategy.storage",
        )
    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None
    try:
        return heartbeat.StaleAwareRDBStorage(
            url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=settings.heartbeat_interval,
            grace_period=settings.grace_period,
            heartbeat_stale_trial_callback=retry,
        )
    except ImportError as exc:
        raise OptionalDependencyError(
            _DRIVERS.get(url.split(":", 1)[0].split("+", 1)[0], "a database driver"),
            f"the storage {url.split('://', 1)[0]}://",
        ) from exc


_DRIVERS = {"postgresql": "psycopg2-binary", "mysql": "pymysql"}


def node_index() -> int:
    """This machine's index among those sharing one study: ``CONVNAS_NODE_INDEX`` (default 0).

    It only varies the sampler's random stream, so that nodes running the same command draw
    different proposals; the study and its results are shared either way.
    """
    raw = os.environ.get(NODE_INDEX_ENV, "0")
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if not 0 <= value < 10_000:
        raise ConfigError(f"{NODE_INDEX_ENV} must be an integer in [0, 10000), but got {raw!r}")
    return value


def make_sampler(settings: OptunaSettings) -> Any:
    """The sampler named in the settings; Optuna 5 samplers read ``Trial.set_constraint``."""
    optuna = _optuna()
    # Workers of one study draw different proposals: the sampler seed includes the worker index
    # (local workers) and the node index (machines running the same command; docs/scaling.md).
    seed = settings.seed * 1000 + node_index() * 100 + settings.worker_index
    name = settings.sampler
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(population_size=settings.population_size, seed=seed)
    if name == "nsga3":
        return optuna.samplers.NSGAIIISampler(population_size=settings.population_size, seed=seed)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if name == "bruteforce":
        return optuna.samplers.BruteForceSampler(seed=seed)
    return optuna.samplers.RandomSampler(seed=seed)


class OptunaStrategy(SearchStrategy):
    """Multi-objective Optuna search (NSGA-II by default)."""

    name = "optuna"

    def __init__(self, **settings: Any) -> None:
        try:
            self.settings = OptunaSettings(**settings)
        except TypeError as exc:
            raise ConfigError(f"unknown {self.name} setting: {exc}") from None
        self._evaluator = make_evaluator(
            self.settings.evaluator, dict(self.settings.evaluator_settings)
        )

    def open_study(self, space: SearchSpace, run_dir: pathlib.Path) -> Any:
        """Create or join the study of this run (the same call from every worker)."""
        optuna = _optuna()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        s = self.settings
        url = s.storage or f"sqlite:///{(run_dir / 'study.db').resolve()}"
        pruner = optuna.pruners.MedianPruner(n_warmup_steps=0) if s.pruner == "median" else None
        # Workers starting together would race to create the schema and the study: take turns.
        with _file_lock(run_dir / ".study.lock"):
            storage = make_storage(url, s)
            study = optuna.create_study(
                storage=storage,
                sampler=make_sampler(s),
                pruner=pruner,
                study_name=s.study_name,
                directions=[OBJECTIVES[o] for o in s.objectives],
                load_if_exists=True,
            )
            fingerprint = config_hash(
                space.name,
                space.settings(),
                [[c.to_dict() for c in d.candidates] for d in space.decisions()],
                s.fingerprint(),
            )
            existing = study.user_attrs.get("config_hash")
            if existing is None:
                study.set_user_attr("config_hash", fingerprint)
                study.set_user_attr("objectives", list(s.objectives))
                study.set_metric_names(list(s.objectives))
        if existing is not None and existing != fingerprint:
            raise ConfigError(
                f"study {s.study_name!r} in {url} was created by another configuration; use "
                f"another run directory, study_name or storage",
                key="strategy.study_name",
            )
        return study

    def search(
        self, space: SearchSpace, data: Any, run_dir: str | pathlib.Path, *, resume: bool = False
    ) -> SearchResult:
        optuna = _optuna()
        s = self.settings
        run_dir = pathlib.Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        device = resolve_device(s.device)
        study = self.open_study(space, run_dir)
        done = _count(study, optuna.trial.TrialState.COMPLETE)
        if done and not resume:
            logger.info("joining study %r with %d completed trial(s)", s.study_name, done)
        with _file_lock(run_dir / ".evaluator.lock"):  # one worker trains a shared supernet
            self._evaluator.prepare(
                space, data, run_dir, seed=s.seed, device=device, show_progress=s.progress
            )
        self._space, self._cost_cache, self._score_cache = space, {}, {}
        self._worker = f"{socket.gethostname()}:{os.getpid()}"
        bar = None
        if s.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=s.n_trials, desc="trials", dynamic_ncols=True, disable=None)
        started = time.time()
        try:
            self._run_until_done(study, bar)
        finally:
            if bar is not None:
                bar.close()
        return self.collect(study, run_dir, time.time() - started)

    def _run_until_done(self, study: Any, bar: Any = None) -> None:
        """Run trials until the study holds ``n_trials`` COMPLETE trials and nothing is left
        RUNNING or WAITING.

        Every worker runs this loop. Stale trials (of killed workers) are failed and queued
        again first; a worker whose trial would exceed ``n_trials`` (counting the RUNNING trials
        of other workers) waits instead, so that it is still there to run the retry of a trial
        whose worker dies.
        """
        optuna = _optuna()
        from convnas.strategies.heartbeat import reap_stale_trials

        s, state = self.settings, optuna.trial.TrialState
        deadline = None if s.timeout is None else time.monotonic() + s.timeout
        max_failed = s.max_failed or 2 * s.n_trials + 5
        while True:
            reap_stale_trials(study)
            counts = Counter(t.state for t in study.get_trials(deepcopy=False))
            if bar is not None:
                bar.update(min(counts[state.COMPLETE], s.n_trials) - bar.n)
            if counts[state.COMPLETE] >= s.n_trials and not (
                counts[state.RUNNING] or counts[state.WAITING]
            ):
                return
            if counts[state.FAIL] >= max_failed:
                logger.error("stopping: %d trials failed (max_failed)", counts[state.FAIL])
                return
            if deadline is not None and time.monotonic() >= deadline:
                logger.warning("stopping: timeout of %s s reached", s.timeout)
                return
            if counts[state.WAITING] or counts[state.COMPLETE] + counts[state.RUNNING] < s.n_trials:
                self._optimize_one(study)
            else:
                time.sleep(_POLL_S)

    def _optimize_one(self, study: Any) -> None:
        """Run one trial. If its heartbeat was so late that another worker failed it (and queued
        it again), recording its result fails; that is logged, not fatal."""
        self._current, self._ended_cleanly = None, False
        try:
            study.optimize(self._objective, n_trials=1, catch=_CAUGHT, gc_after_trial=False)
        except Exception as exc:
            if not (self._ended_cleanly and self._current is not None):
                raise  # the objective itself failed with an error we do not catch
            trial = next(t for t in study.get_trials(deepcopy=False) if t.number == self._current)
            if trial.state.name != "FAIL":
                raise
            logger.warning(
                "trial %d was failed by another worker while it ran here (its heartbeat came "
                "later than grace_period=%s s; consider raising it) and has been queued again: %s",
                trial.number,
                self.settings.grace_period,
                exc,
            )

    def _costs(self, arch: Architecture) -> dict[str, float]:
        key = arch.to_yaml()
        if key not in self._cost_cache:
            from convnas.search_space.cost_model import measure

            costs = measure(
                build_model(arch),
                self._space.input_shape,
                batch_size=self.settings.memory_batch_size,
            )
            self._cost_cache[key] = {
                "params": float(costs.params),
                "deploy_params": float(costs.deploy_params),
                "macs": float(costs.macs),
                "train_memory": float(costs.train_memory_bytes),
            }
        return self._cost_cache[key]

    def _objective(self, trial: Any) -> list[float]:
        optuna = _optuna()
        self._current, self._ended_cleanly = trial.number, False
        try:
            values = self._run_trial(trial)
        except (optuna.TrialPruned, optuna.exceptions.UpdateFinishedTrialError, *_CAUGHT):
            self._ended_cleanly = True
            raise
        self._ended_cleanly = True
        return values

    def _run_trial(self, trial: Any) -> list[float]:
        optuna = _optuna()
        s = self.settings
        from convnas.strategies.heartbeat import mark_alive

        mark_alive(trial, self._worker)
        # Capacity: COMPLETE trials plus the RUNNING/WAITING ones created before this one. The
        # order by number is the same for every worker, so of two trials racing for the last
        # slot exactly one runs; a stale trial keeps its slot until it is failed and retried.
        state = optuna.trial.TrialState
        ahead = sum(
            t.state == state.COMPLETE
            or (t.state in (state.RUNNING, state.WAITING) and t.number < trial.number)
            for t in trial.study.get_trials(deepcopy=False)
        )
        if ahead >= s.n_trials:
            trial.set_user_attr("note", "not run: the study already has n_trials trials")
            raise optuna.TrialPruned("the study already has n_trials complete or running trials")
        try:
            return self._evaluate(trial)
        except (optuna.TrialPruned, optuna.exceptions.UpdateFinishedTrialError):
            raise
        except Exception as exc:  # recorded, then handled by Optuna: FAIL (caught) or re-raised
            with contextlib.suppress(Exception):
                trial.set_user_attr("fail_reason", _describe_failure(exc))
            raise

    def _evaluate(self, trial: Any) -> list[float]:
        s = self.settings
        arch = sample_architecture(trial, self._space, sample_hparams=s.hparams_sampled)
        trial.set_user_attr("architecture", arch.to_dict())  # complete: a retry may rerun it
        costs = self._costs(arch)
        for key, value in costs.items():
            trial.set_user_attr(key, value)
        violations = {
            key: costs[metric] - limit
            for key, metric in CONSTRAINTS.items()
            if (limit := getattr(s, key)) is not None
        }
        for key, value in violations.items():
            trial.set_constraint(key, value)
        feasible = all(v <= 0 for v in violations.values())
        accuracy = float("nan")
        if "accuracy" in s.objectives:
            if feasible:
                trial._convnas_prunable = s.pruner == "median"
                key = arch.to_yaml()
                if self._evaluator.deterministic and key in self._score_cache:
                    accuracy = self._score_cache[key]
                    trial.set_user_attr("note", "same network as an earlier trial: reused")
                else:
                    accuracy = self._evaluator.score(arch, trial)
                    self._score_cache[key] = accuracy
            else:
                accuracy = 0.0
                trial.set_user_attr("note", "infeasible: not trained, accuracy recorded as 0")
            trial.set_user_attr("accuracy", accuracy)
        values = {"accuracy": accuracy, **costs}
        return [values[o] for o in s.objectives]

    def collect(self, study: Any, run_dir: pathlib.Path, wall_time: float = 0.0) -> SearchResult:
        """Write ``trials.csv`` and the Pareto front; return them as a :class:`SearchResult`."""
        optuna = _optuna()
        from convnas.strategies.heartbeat import reap_stale_trials

        reap_stale_trials(study)  # a search that stopped early may leave a dead worker's trial
        trials = study.get_trials(deepcopy=False)
        _write_trials_csv(run_dir / "trials.csv", trials, self.settings.objectives)
        complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
        results = [_result(t, self.settings.objectives) for t in complete]
        pareto, seen = [], []
        for t in sorted(study.best_trials, key=lambda t: t.number) if complete else []:
            result = _result(t, self.settings.objectives)
            if any(result.architecture.same_network(a) for a in seen):
                continue  # samplers may propose the same network twice
            seen.append(result.architecture)
            result.architecture.with_metadata(
                metrics=dict(result.metrics),
                trial=t.number,
                strategy=self.name,
            ).save(run_dir / "architectures" / f"pareto_{t.number:04d}.yaml")
            pareto.append(result)
        keep = {f"pareto_{r.trial:04d}.yaml" for r in pareto}
        for old in (run_dir / "architectures").glob("pareto_*.yaml"):
            if old.name not in keep:  # on the front of an earlier, shorter run only
                old.unlink(missing_ok=True)
        state = optuna.trial.TrialState
        failed = sum(t.state == state.FAIL for t in trials)
        return SearchResult(
            self.name,
            results,
            pareto,
            run_dir,
            {
                "complete": len(complete),
                "failed": failed,
                "pruned": sum(t.state == state.PRUNED for t in trials),
                "retried": sum("retry_of" in t.user_attrs for t in trials),
                "total": len(trials),
                "wall_time_s": wall_time,
                "objectives": list(self.settings.objectives),
            },
        )


class RandomStrategy(OptunaStrategy):
    """Random search: the Optuna strategy with the random sampler."""

    name = "random"

    def __init__(self, **settings: Any) -> None:
        if settings.setdefault("sampler", "random") != "random":
            raise ConfigError("the random strategy always uses sampler 'random'", key="sampler")
        super().__init__(**settings)


@contextlib.contextmanager
def _file_lock(path: pathlib.Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (a no-op where ``fcntl`` is unavailable)."""
    try:
        import fcntl
    except ImportError:  # Windows: workers on one machine then rely on the storage's retries
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _count(study: Any, state: Any) -> int:
    return len(study.get_trials(deepcopy=False, states=(state,)))


def _result(trial: Any, objectives: tuple[str, ...]) -> ArchitectureResult:
    arch = Architecture.from_dict(trial.user_attrs["architecture"], validate=False)
    metrics = {
        k: float(trial.user_attrs[k])
        for k in ("params", "deploy_params", "macs", "train_memory")
        if k in trial.user_attrs
    }
    for name, value in zip(objectives, trial.values, strict=True):
        metrics[name] = float(value)
    return ArchitectureResult(arch, metrics, trial.number)


def _write_trials_csv(path: pathlib.Path, trials: list[Any], objectives: tuple[str, ...]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    cost_keys = ["params", "deploy_params", "macs", "train_memory"]
    writer.writerow(
        [
            "number",
            "state",
            "duration_s",
            *[f"objective_{o}" for o in objectives],
            *cost_keys,
            "feasible",
            "operators",
            "fail_reason",
            "note",
            "retry_of",
            "retried_from",
            "worker",
        ]
    )
    retried_as = {t.user_attrs["retry_of"]: t.number for t in trials if "retry_of" in t.user_attrs}
    for t in trials:
        duration = (
            (t.datetime_complete - t.datetime_start).total_seconds()
            if (t.datetime_complete and t.datetime_start)
            else ""
        )
        values = list(t.values) if t.values is not None else [""] * len(objectives)
        arch = t.user_attrs.get("architecture")
        ops = ""
        if arch:
            ops = " ".join(
                c["op"] + (f"{c['hparams']}" if c.get("hparams") else "") for c in arch["choices"]
            )
        feasible = all(v <= 0 for v in t.constraints.values()) if t.constraints else ""
        writer.writerow(
            [
                t.number,
                t.state.name,
                duration,
                *values,
                *[t.user_attrs.get(k, "") for k in cost_keys],
                feasible,
                ops,
                _fail_reason(t, retried_as),
                t.user_attrs.get("note", ""),
                t.user_attrs.get("retry_of", ""),
                t.user_attrs.get("retried_from", ""),
                t.user_attrs.get("worker", ""),
            ]
        )
    atomic_write_text(path, buffer.getvalue())


def _describe_failure(exc: BaseException) -> str:
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return (
            f"out of memory while training this candidate ({type(exc).__name__}: {exc}); "
            f"lower the evaluator's batch_size or set max_train_memory"
        )
    if isinstance(exc, TrainingDivergedError):
        return f"training diverged (loss not finite): {exc}"
    return f"{type(exc).__name__}: {exc}"


def _fail_reason(trial: Any, retried_as: dict[int, int]) -> str:
    if trial.state.name != "FAIL" or "fail_reason" in trial.user_attrs:
        return trial.user_attrs.get("fail_reason", "")
    reason = "no heartbeat within grace_period: its worker was killed, crashed or stalled"
    if trial.number in retried_as:
        return f"{reason}; retried as trial {retried_as[trial.number]}"
    return reason
