"""Multi-objective search with Optuna: accuracy against params, MACs and training memory.

Each trial samples one architecture (a categorical operator per decision, plus conditional
hyper-parameters), measures its costs with the cost model before any training, records the
constraints with ``Trial.set_constraint`` (infeasible trials are not trained), and scores it with
an evaluator. The study lives in an Optuna storage (SQLite in the run directory by default, any
RDB or Journal URL by setting), so several workers, on one machine or many, share one study;
a worker's trial whose heartbeat stops is failed and re-queued (see ``docs/scaling.md``). The
study ends with exactly ``n_trials`` COMPLETE trials: no worker starts a trial beyond that, and
none exits while another's trial may still need a retry.

A network is never scored twice: a trial that samples a network an earlier COMPLETE trial
already scored is answered from that trial (``duplicate_of`` in ``trials.csv``), so the sampler
learns nothing false, and it does not count toward ``n_trials``. Two workers that draw the same
new network at the same moment may still both score it (the check reads the study, not a lock).
"""

from __future__ import annotations

import contextlib
import logging
import os
import pathlib
import socket
import time
from collections import Counter
from typing import Any

import torch

from convnas.costs import measure, objective_values
from convnas.errors import ConfigError, TrainingDivergedError
from convnas.registry import check_keywords
from convnas.search_space import Architecture, SearchSpace, build_model
from convnas.seeding import forked_rng, stream_seed
from convnas.strategies.base import SearchResult, SearchStrategy, config_hash, register_strategy
from convnas.strategies.evaluators import get_evaluator
from convnas.strategies.optuna.progress_log import ProgressLog
from convnas.strategies.optuna.results import (
    collect,
    count_trials,
    counts_toward_budget,
    describe_failure,
    write_trials_csv,
)
from convnas.strategies.optuna.sampling import sample_architecture
from convnas.strategies.optuna.settings import (
    CONSTRAINTS,
    OBJECTIVES,
    OptunaSettings,
    import_optuna,
    make_sampler,
)
from convnas.strategies.optuna.storage import file_lock, make_storage
from convnas.strategies.training import resolve_device

__all__ = ["OptunaStrategy", "RandomStrategy"]

logger = logging.getLogger(__name__)

_CAUGHT = (TrainingDivergedError, torch.OutOfMemoryError, MemoryError)  # fail the trial only
_POLL_S = 0.5  # how often a waiting worker looks at the study again


@register_strategy
class OptunaStrategy(SearchStrategy):
    """Multi-objective Optuna search (NSGA-II by default)."""

    name = "optuna"
    settings_class = OptunaSettings

    def __init__(self, **settings: Any) -> None:
        check_keywords(OptunaSettings, settings, f"strategy {self.name!r}")
        self.settings = OptunaSettings(**settings)
        self._evaluator = get_evaluator(
            self.settings.evaluator, **dict(self.settings.evaluator_settings)
        )

    def fingerprint(self, space: SearchSpace) -> str:
        """The hash of everything that changes this study's results (stored in the study)."""
        return config_hash(
            space.name,
            space.settings(),
            [[c.to_dict() for c in d.candidates] for d in space.decisions()],
            self.settings.fingerprint(),
        )

    def check_resume(self, space: SearchSpace, run_dir: pathlib.Path, *, resume: bool) -> None:
        """Refuse, before anything is written, a search this run's study cannot take."""
        from convnas.strategies.optuna.resume import check_resume

        s = self.settings
        check_resume(
            run_dir=run_dir,
            storage=s.storage,
            study_name=s.study_name,
            fingerprint=self.fingerprint(space),
            resume=resume,
        )

    def open_study(self, space: SearchSpace, run_dir: pathlib.Path) -> Any:
        """Create or join the study of this run (the same call from every worker)."""
        optuna = import_optuna()
        s = self.settings
        url = s.storage or f"sqlite:///{(run_dir / 'study.db').resolve()}"
        pruner = optuna.pruners.MedianPruner(n_warmup_steps=0) if s.pruner == "median" else None
        # Workers starting together would race to create the schema and the study: take turns.
        with file_lock(run_dir / ".study.lock"):
            storage = make_storage(url, s)
            study = optuna.create_study(
                storage=storage,
                sampler=make_sampler(s),
                pruner=pruner,
                study_name=s.study_name,
                directions=[OBJECTIVES[o] for o in s.objectives],
                load_if_exists=True,
            )
            fingerprint = self.fingerprint(space)
            joined_with = len(study.get_trials(deepcopy=False))
            if joined_with:  # a resume (or another worker's study): do not replay the stream
                study.sampler = make_sampler(s, restart=joined_with)
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
        optuna = import_optuna()
        s = self.settings
        run_dir = pathlib.Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        device = resolve_device(s.device)
        study = self.open_study(space, run_dir)
        if getattr(data, "settings", None) and "data" not in study.user_attrs:
            study.set_user_attr("data", dict(data.settings))  # written into the results
        if "accuracy_kind" not in study.user_attrs:
            kind = "one-shot" if s.evaluator == "supernet" else "trained"
            study.set_user_attr(
                "accuracy_kind", kind if s.evaluator in ("supernet", "train") else s.evaluator
            )
        done = count_trials(study, optuna.trial.TrialState.COMPLETE)
        if done and not resume and s.storage is None:
            # The run directory's own study holds results: continuing it is a decision the
            # user states (the same rule as DARTS). A shared storage is joined by design.
            raise ConfigError(
                f"{run_dir} already holds a study with {done} completed trial(s); pass "
                f"--resume (resume=True) to continue it, or choose another run name",
                key="output.run_dir",
            )
        if done:
            logger.info("continuing study %r with %d completed trial(s)", s.study_name, done)
        started = time.time()  # the wall time covers the evaluator's preparation (supernet)
        with file_lock(run_dir / ".evaluator.lock"):  # one worker trains a shared supernet
            self._evaluator.prepare(
                space,
                data,
                run_dir,
                seed=stream_seed(s.seed, s.seeds, "init"),
                batch_seed=stream_seed(s.seed, s.seeds, "batches"),
                device=device,
                show_progress=s.progress,
            )
        self._space = space
        self._run_dir = run_dir
        self._cost_cache: dict[str, dict[str, float]] = {}
        self._worker = f"{socket.gethostname()}:{os.getpid()}"
        bar = None
        if s.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=s.n_trials, desc="trials", dynamic_ncols=True, disable=None)
            if bar.disable:  # no terminal: periodic log lines instead
                bar.close()
                kind = "one-shot " if s.evaluator == "supernet" else ""
                bar = ProgressLog(s.n_trials, label=kind)
        try:
            self._run_until_done(study, bar)
        finally:
            if bar is not None and not isinstance(bar, ProgressLog):
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
        optuna = import_optuna()
        from convnas.strategies.heartbeat import reap_stale_trials

        s, state = self.settings, optuna.trial.TrialState
        deadline = None if s.timeout is None else time.monotonic() + s.timeout
        max_failed = s.max_failed or 2 * s.n_trials + 5
        max_repeats = max(50, 5 * s.n_trials)
        written = -1
        while True:
            reap_stale_trials(study, grace_period=s.grace_period, max_retry=s.max_retry)
            trials = study.get_trials(deepcopy=False)
            counts = Counter(t.state for t in trials)
            ended = len(trials) - counts[state.RUNNING] - counts[state.WAITING]
            run_dir = getattr(self, "_run_dir", None)
            if s.worker_index == 0 and ended != written and run_dir is not None:
                # trials.csv follows the study as it runs: `convnas report` mid-search is current
                write_trials_csv(run_dir / "trials.csv", trials, s.objectives)
                written = ended
            distinct = sum(counts_toward_budget(t) for t in trials)
            repeats, counts[state.COMPLETE] = counts[state.COMPLETE] - distinct, distinct
            if isinstance(bar, ProgressLog):
                scored = [
                    float(t.user_attrs["accuracy"])
                    for t in trials
                    if counts_toward_budget(t) and "accuracy" in t.user_attrs
                ]
                bar.update(counts[state.COMPLETE], max(scored, default=None))
            elif bar is not None:
                bar.update(min(counts[state.COMPLETE], s.n_trials) - bar.n)
            if counts[state.COMPLETE] >= s.n_trials and not (
                counts[state.RUNNING] or counts[state.WAITING]
            ):
                return
            if counts[state.FAIL] >= max_failed:
                logger.error("stopping: %d trials failed (max_failed)", counts[state.FAIL])
                return
            if repeats >= max_repeats:
                logger.warning(
                    "stopping: the sampler proposed %d networks that were already scored; the "
                    "space may hold fewer than n_trials=%d distinct networks (%d found)",
                    repeats,
                    s.n_trials,
                    counts[state.COMPLETE],
                )
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
            with forked_rng(0):  # costs do not depend on the weights' values
                model = build_model(arch)
            costs = measure(
                model, self._space.input_shape, batch_size=self.settings.memory_batch_size
            )
            self._cost_cache[key] = objective_values(costs)
        return self._cost_cache[key]

    def _objective(self, trial: Any) -> list[float]:
        optuna = import_optuna()
        self._current, self._ended_cleanly = trial.number, False
        try:
            values = self._run_trial(trial)
        except (optuna.TrialPruned, optuna.exceptions.UpdateFinishedTrialError, *_CAUGHT):
            self._ended_cleanly = True
            raise
        self._ended_cleanly = True
        return values

    def _run_trial(self, trial: Any) -> list[float]:
        optuna = import_optuna()
        s = self.settings
        from convnas.strategies.heartbeat import Heartbeat

        with Heartbeat(trial, interval=s.heartbeat_interval, worker=self._worker):
            # Capacity: COMPLETE trials plus the RUNNING/WAITING ones created before this one.
            # The order by number is the same for every worker, so of two trials racing for the
            # last slot exactly one runs; a stale trial keeps its slot until it is failed and
            # retried.
            state = optuna.trial.TrialState
            ahead = sum(
                counts_toward_budget(t)
                or (t.state in (state.RUNNING, state.WAITING) and t.number < trial.number)
                for t in trial.study.get_trials(deepcopy=False)
            )
            if ahead >= s.n_trials:
                trial.set_user_attr("note", "not run: the study already has n_trials trials")
                raise optuna.TrialPruned(
                    "the study already has n_trials complete or running trials"
                )
            try:
                return self._evaluate(trial)
            except (optuna.TrialPruned, optuna.exceptions.UpdateFinishedTrialError):
                raise
            except Exception as exc:  # recorded, then handled by Optuna: FAIL (caught) or raised
                with contextlib.suppress(Exception):
                    trial.set_user_attr("fail_reason", describe_failure(exc))
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
        network = arch.network_id()
        trial.set_user_attr("network", network)
        accuracy = float("nan")
        if "accuracy" in s.objectives:
            earlier = _scored_before(trial, network)
            if earlier is not None:
                accuracy = float(earlier.user_attrs["accuracy"])
                trial.set_user_attr("duplicate_of", earlier.number)
                trial.set_user_attr(
                    "note",
                    f"same network as trial {earlier.number}: answered from it, not scored "
                    f"again; not counted toward n_trials",
                )
            elif feasible:
                accuracy = self._evaluator.score(arch, trial, prune=s.pruner == "median")
            else:
                accuracy = 0.0
                trial.set_user_attr("note", "infeasible: not trained, accuracy recorded as 0")
            trial.set_user_attr("accuracy", accuracy)
        values = {"accuracy": accuracy, **costs}
        return [values[o] for o in s.objectives]

    def collect(self, study: Any, run_dir: pathlib.Path, wall_time: float = 0.0) -> SearchResult:
        """Write ``trials.csv`` and the Pareto front; return them as a :class:`SearchResult`."""
        s = self.settings
        return collect(
            study,
            run_dir,
            s.objectives,
            self.name,
            wall_time,
            grace_period=s.grace_period,
            max_retry=s.max_retry,
        )


def _scored_before(trial: Any, network: str) -> Any:
    """The earliest COMPLETE, non-repeat trial of ``trial``'s study that scored ``network``."""
    for t in trial.study.get_trials(deepcopy=False):
        if (
            t.number != trial.number
            and counts_toward_budget(t)
            and t.user_attrs.get("network") == network
            and "accuracy" in t.user_attrs
        ):
            return t
    return None


@register_strategy
class RandomStrategy(OptunaStrategy):
    """Random search: the Optuna strategy with the random sampler."""

    name = "random"

    def __init__(self, **settings: Any) -> None:
        if settings.setdefault("sampler", "random") != "random":
            raise ConfigError("the random strategy always uses sampler 'random'", key="sampler")
        super().__init__(**settings)
