"""What a study holds, as files and as a :class:`SearchResult`: ``trials.csv``, the Pareto
front as architecture files, and the failure reason of every failed trial."""

from __future__ import annotations

import csv
import io
import math
import pathlib
from typing import Any

import torch

from convnas.costs import COST_OBJECTIVES
from convnas.errors import ConfigError, TrainingDivergedError
from convnas.io import atomic_write_text
from convnas.search_space import Architecture
from convnas.strategies.base import ArchitectureResult, SearchResult
from convnas.strategies.optuna.settings import import_optuna

__all__ = ["collect", "describe_failure", "trial_result", "write_trials_csv"]


def count_trials(study: Any, state: Any) -> int:
    return len(study.get_trials(deepcopy=False, states=(state,)))


def counts_toward_budget(trial: Any) -> bool:
    """COMPLETE and not a repeat of an earlier trial's network (those are answered from it)."""
    return trial.state.name == "COMPLETE" and "duplicate_of" not in trial.user_attrs


def collect(
    study: Any,
    run_dir: pathlib.Path,
    objectives: tuple[str, ...],
    strategy: str,
    wall_time: float = 0.0,
    *,
    grace_period: float = 20,
    max_retry: int | None = 3,
) -> SearchResult:
    """Write ``trials.csv`` and the Pareto front of ``study``; return them as a result.

    Stale trials are failed (and retried) first, with ``grace_period`` and ``max_retry`` as in
    :class:`~convnas.strategies.optuna.OptunaSettings`.
    """
    optuna = import_optuna()
    from convnas.rundir import forget_written, record_written, remove_written, written_files
    from convnas.strategies.heartbeat import reap_stale_trials

    # A search that stopped early may leave a dead worker's trial RUNNING.
    reap_stale_trials(study, grace_period=grace_period, max_retry=max_retry)
    trials = study.get_trials(deepcopy=False)
    write_trials_csv(run_dir / "trials.csv", trials, objectives)
    complete = [t for t in trials if counts_toward_budget(t)]  # distinct networks
    results = [trial_result(t, objectives) for t in complete]
    pareto: list[ArchitectureResult] = []
    seen: list[Architecture] = []
    arch_dir = run_dir / "architectures"
    if arch_dir.is_symlink():
        raise ConfigError(
            f"{arch_dir} is a symbolic link; convnas does not write or delete through links: "
            f"remove the link, or use another run directory",
            key="output.run_dir",
        )
    for t in sorted(study.best_trials, key=lambda t: t.number) if complete else []:
        result = trial_result(t, objectives)
        if any(result.architecture.same_network(a) for a in seen):
            continue  # samplers may propose the same network twice
        seen.append(result.architecture)
        result.architecture.with_metadata(
            metrics=dict(result.metrics),
            trial=t.number,
            strategy=strategy,
            **_data_metadata(study),
        ).save(arch_dir / f"pareto_{t.number:04d}.yaml")
        pareto.append(result)
    keep = {f"architectures/pareto_{r.trial:04d}.yaml" for r in pareto}
    # Only Pareto files convnas recorded writing are replaced, never through a link.
    stale = [f for f in written_files(run_dir) if f.startswith("architectures/pareto_")]
    removed = [f for f in stale if f not in keep and remove_written(run_dir, f)]
    forget_written(run_dir, removed)
    record_written(run_dir, [run_dir / f for f in sorted(keep)])
    state = optuna.trial.TrialState
    return SearchResult(
        strategy,
        results,
        pareto,
        run_dir,
        {
            "complete": len(complete),
            "repeats": sum("duplicate_of" in t.user_attrs for t in trials),
            "failed": sum(t.state == state.FAIL for t in trials),
            "pruned": sum(t.state == state.PRUNED for t in trials),
            "retried": sum("retry_of" in t.user_attrs for t in trials),
            "total": len(trials),
            "wall_time_s": wall_time,
            "objectives": list(objectives),
        },
    )


def _data_metadata(study: Any) -> dict[str, Any]:
    """``dataset`` and ``data`` (the settings the search loaded its data with), if recorded."""
    data = study.user_attrs.get("data")
    out = {"dataset": data["dataset"], "data": data} if isinstance(data, dict) else {}
    if "accuracy_kind" in study.user_attrs:
        out["accuracy_kind"] = study.user_attrs["accuracy_kind"]
    return out


def trial_result(trial: Any, objectives: tuple[str, ...]) -> ArchitectureResult:
    arch = Architecture.from_dict(trial.user_attrs["architecture"], validate=False)
    metrics = {k: float(trial.user_attrs[k]) for k in COST_OBJECTIVES if k in trial.user_attrs}
    for name, value in zip(objectives, trial.values, strict=True):
        metrics[name] = float(value)
    return ArchitectureResult(arch, metrics, trial.number)


def write_trials_csv(path: pathlib.Path, trials: list[Any], objectives: tuple[str, ...]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    cost_keys = list(COST_OBJECTIVES)
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
            "duplicate_of",
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
                t.user_attrs.get("duplicate_of", ""),
                t.user_attrs.get("worker", ""),
            ]
        )
    atomic_write_text(path, buffer.getvalue())


def describe_failure(exc: BaseException) -> str:
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
    bad = [
        k
        for k in ("accuracy", *COST_OBJECTIVES)
        if isinstance(v := trial.user_attrs.get(k), float) and not math.isfinite(v)
    ]
    if bad:  # the objective returned, and Optuna refused its value
        return f"the objective returned a non-finite {', '.join(bad)} (NaN or inf)"
    reason = "no heartbeat within grace_period: its worker was killed, crashed or stalled"
    if trial.number in retried_as:
        return f"{reason}; retried as trial {retried_as[trial.number]}"
    return reason
