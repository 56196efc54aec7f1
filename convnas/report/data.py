"""The data of a run report, as plain objects: built from the run directory, rendered elsewhere.

:func:`build_report_data` reads ``trials.csv`` (Optuna/random), ``alphas.json`` (DARTS),
``architectures/*.yaml``, and, when present, ``config.yaml`` and ``run_info.json``. Nothing here
imports matplotlib; :mod:`convnas.report.render` draws these objects. The hypervolume series
is normalised as :mod:`convnas.report` describes.
"""

from __future__ import annotations

import json
import logging
import pathlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from convnas.io import read_yaml
from convnas.report.pareto import hypervolume, non_dominated
from convnas.report.tables import (
    Table,
    darts_tables,
    finite,
    metric_label,
    read_trials_csv,
    trials_table,
)

__all__ = [
    "AlphaSeries",
    "HypervolumeSeries",
    "OperatorUsage",
    "ParetoPlot",
    "Point",
    "ReportData",
    "ScatterMatrix",
    "Table",
    "build_report_data",
    "hypervolume_series",
    "operator_usage",
    "read_trials_csv",
]

logger = logging.getLogger(__name__)

HV_REFERENCE = 1.1


@dataclass(frozen=True)
class Point:
    """One trial in a 2-D plot."""

    trial: int | None
    x: float
    y: float
    pareto: bool


@dataclass(frozen=True)
class ParetoPlot:
    """``y_metric`` (accuracy) against one cost; ``front`` is the 2-D front, sorted by x."""

    x_metric: str
    y_metric: str
    x_label: str
    y_label: str
    points: tuple[Point, ...]
    front: tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class ScatterMatrix:
    """Every objective against every other; ``values[m][i]`` belongs to ``trials[i]``."""

    metrics: tuple[str, ...]
    labels: tuple[str, ...]
    values: dict[str, tuple[float, ...]]
    trials: tuple[int, ...]
    pareto: tuple[bool, ...]


@dataclass(frozen=True)
class HypervolumeSeries:
    """Normalised hypervolume of the feasible trials up to each trial number (non-decreasing)."""

    trials: tuple[int, ...]
    values: tuple[float, ...]
    objectives: tuple[str, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    reference: float = HV_REFERENCE


@dataclass(frozen=True)
class OperatorUsage:
    """How often each operator is chosen among the result architectures."""

    members: int
    counts: dict[str, int]
    member_counts: dict[str, int]


@dataclass(frozen=True)
class AlphaSeries:
    """softmax(alpha) of one DARTS decision: ``probabilities[c][e]`` for candidate c, epoch e."""

    decision: str
    candidates: tuple[str, ...]
    epochs: tuple[int, ...]
    probabilities: tuple[tuple[float, ...], ...]


@dataclass(frozen=True)
class ReportData:
    """Everything the report shows, as plain values."""

    run_name: str
    strategy: str
    summary: tuple[tuple[str, str], ...]
    objectives: tuple[str, ...] = ()
    pareto_plots: tuple[ParetoPlot, ...] = ()
    scatter_matrix: ScatterMatrix | None = None
    hypervolume: HypervolumeSeries | None = None
    operator_usage: OperatorUsage | None = None
    alphas: tuple[AlphaSeries, ...] = ()
    supernet_curve: dict[str, tuple[float, ...]] = field(default_factory=dict)
    tables: tuple[tuple[str, Table], ...] = ()


def _direction(metric: str) -> str:
    return "maximize" if metric == "accuracy" else "minimize"


def _minimised(row: dict[str, float], objectives: Sequence[str]) -> tuple[float, ...]:
    return tuple(-row[o] if _direction(o) == "maximize" else row[o] for o in objectives)


def _read_json(path: pathlib.Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        logger.warning("cannot read %s: %s", path, exc)
        return None


def _architectures(run_dir: pathlib.Path) -> list[tuple[str, Any]]:
    from convnas.search_space.architecture import Architecture

    arch_dir = run_dir / "architectures"
    files = sorted(arch_dir.glob("pareto_*.yaml")) + sorted(arch_dir.glob("darts_final.yaml"))
    return [(f.name, Architecture.from_dict(read_yaml(f), validate=False)) for f in files]


def operator_usage(architectures: Sequence[Any]) -> OperatorUsage:
    counts: dict[str, int] = {}
    members: dict[str, int] = {}
    for arch in architectures:
        for op, n in arch.ops_used().items():
            counts[op] = counts.get(op, 0) + n
            members[op] = members.get(op, 0) + 1
    order = sorted(counts, key=lambda op: (-counts[op], op))
    return OperatorUsage(
        len(architectures), {o: counts[o] for o in order}, {o: members[o] for o in order}
    )


def _front_2d(points: list[tuple[float, float]]) -> tuple[tuple[float, float], ...]:
    """Non-dominated (min x, max y) points, sorted by x."""
    keep = non_dominated([(x, -y) for x, y in points])
    return tuple(sorted({points[i] for i in keep}))


def hypervolume_series(
    rows: Sequence[dict[str, Any]], objectives: Sequence[str]
) -> HypervolumeSeries | None:
    """The normalised hypervolume after each complete trial (see the module docstring)."""
    feasible = [
        r for r in rows if r["feasible"] and all(finite(r["values"].get(o)) for o in objectives)
    ]
    if not feasible:
        return None
    vectors = {r["number"]: _minimised(r["values"], objectives) for r in feasible}
    lower = tuple(min(v[k] for v in vectors.values()) for k in range(len(objectives)))
    upper = tuple(max(v[k] for v in vectors.values()) for k in range(len(objectives)))
    span = [u - lo if u > lo else 1.0 for lo, u in zip(lower, upper, strict=True)]
    ref = (HV_REFERENCE,) * len(objectives)
    scale = HV_REFERENCE ** len(objectives)
    trials, values, seen, current = [], [], [], 0.0
    for r in sorted(rows, key=lambda r: r["number"]):
        if r["number"] in vectors:
            v = vectors[r["number"]]
            seen.append(tuple((x - lo) / s for x, lo, s in zip(v, lower, span, strict=True)))
            current = hypervolume(seen, ref) / scale
        trials.append(r["number"])
        values.append(current)
    return HypervolumeSeries(tuple(trials), tuple(values), tuple(objectives), lower, upper)


def _optuna_part(run_dir: pathlib.Path, summary: list[tuple[str, str]]) -> dict[str, Any]:
    objectives, rows = read_trials_csv(run_dir / "trials.csv")
    complete = [r for r in rows if r["state"] == "COMPLETE"]
    usable = [
        r for r in complete if r["feasible"] and all(finite(r["values"].get(o)) for o in objectives)
    ]
    vectors = [_minimised(r["values"], objectives) for r in usable]
    pareto_numbers = {usable[i]["number"] for i in non_dominated(vectors)}
    states: dict[str, int] = {}
    for r in rows:
        states[r["state"]] = states.get(r["state"], 0) + 1
    summary += [
        ("objectives", ", ".join(objectives) + " (MACs are multiply-accumulates, not 2xMACs)"),
        (
            "trials",
            ", ".join(f"{n} {s.lower()}" for s, n in sorted(states.items()))
            + f" ({len(rows)} in all)",
        ),
        ("infeasible trials", str(sum(not r["feasible"] for r in complete))),
        (
            "Pareto front",
            f"{len(pareto_numbers)} trial(s): " + ", ".join(map(str, sorted(pareto_numbers))),
        ),
    ]
    durations = [r["duration_s"] for r in rows if finite(r["duration_s"])]
    if durations:
        summary.append(("sum of trial durations", f"{sum(durations):.1f} s"))
    y = "accuracy" if "accuracy" in objectives else objectives[0]
    costs = [o for o in objectives if o != y]
    plots = []
    for cost in costs:
        pts = [
            Point(r["number"], r["values"][cost], r["values"][y], r["number"] in pareto_numbers)
            for r in usable
        ]
        front = _front_2d([(p.x, p.y if y == "accuracy" else -p.y) for p in pts])
        if y != "accuracy":
            front = tuple((x, -v) for x, v in front)
        plots.append(ParetoPlot(cost, y, metric_label(cost), metric_label(y), tuple(pts), front))
    matrix = None
    if len(costs) > 2:
        matrix = ScatterMatrix(
            tuple(objectives),
            tuple(metric_label(o) for o in objectives),
            {o: tuple(r["values"][o] for r in usable) for o in objectives},
            tuple(r["number"] for r in usable),
            tuple(r["number"] in pareto_numbers for r in usable),
        )
    links = {
        int(n.split("_")[1].split(".")[0]): f"architectures/{n}"
        for n, _ in _architectures(run_dir)
        if n.startswith("pareto_")
    }
    return {
        "objectives": tuple(objectives),
        "pareto_plots": tuple(plots),
        "scatter_matrix": matrix,
        "hypervolume": hypervolume_series(complete, objectives),
        "tables": (("Trials", trials_table(rows, objectives, pareto_numbers, links)),),
    }


def _candidate_labels(run_dir: pathlib.Path, config: dict[str, Any]) -> dict[str, list[str]]:
    """Candidate labels per decision, from the space the config and final architecture describe."""
    candidates = (config.get("space") or {}).get("candidates")
    final = run_dir / "architectures" / "darts_final.yaml"
    if not candidates or not final.is_file():
        return {}
    try:
        from convnas.search_space import get_space

        arch = read_yaml(final)
        space = get_space(arch["space"], candidates=candidates, **arch["settings"])
        return {d.name: [c.label for c in d.candidates] for d in space.decisions()}
    except Exception as exc:  # labels are a nicety: fall back to candidate indices
        logger.warning("cannot label the DARTS candidates: %s", exc)
        return {}


def _darts_part(run_dir: pathlib.Path, config: dict[str, Any], summary: list) -> dict[str, Any]:
    history = _read_json(run_dir / "alphas.json") or []
    labels = _candidate_labels(run_dir, config)
    epochs = tuple(int(h["epoch"]) for h in history)
    alphas = []
    for decision in history[0]["probabilities"] if history else []:
        rows = [h["probabilities"][decision] for h in history]
        names = labels.get(decision, [])
        if len(names) != len(rows[0]):
            names = [f"candidate {i}" for i in range(len(rows[0]))]
        probs = tuple(tuple(float(r[c]) for r in rows) for c in range(len(names)))
        alphas.append(AlphaSeries(decision, tuple(names), epochs, probs))
    curve = {
        k: tuple(float(h[k]) for h in history)
        for k in ("train_accuracy", "val_accuracy", "train_loss", "val_loss")
        if history and k in history[0]
    }
    if history:
        summary += [
            ("epochs", str(len(history))),
            ("final supernet val accuracy", f"{history[-1]['val_accuracy']:.4f}"),
        ]
    archs = [(n, a) for n, a in _architectures(run_dir) if n == "darts_final.yaml"]
    return {
        "alphas": tuple(alphas),
        "supernet_curve": {"epoch": tuple(float(e) for e in epochs), **curve},
        "tables": darts_tables(history, archs),
    }


def build_report_data(run_dir: str | pathlib.Path) -> ReportData:
    """Read a run directory into a :class:`ReportData`."""
    run_dir = pathlib.Path(run_dir)
    config = read_yaml(run_dir / "config.yaml") if (run_dir / "config.yaml").is_file() else None
    config = config if isinstance(config, dict) else {}
    info = _read_json(run_dir / "run_info.json") if (run_dir / "run_info.json").is_file() else None
    info = info if isinstance(info, dict) else {}
    archs = _architectures(run_dir)
    strategy = (config.get("strategy") or {}).get("kind") or info.get("strategy")
    if not strategy:
        strategy = "darts" if (run_dir / "alphas.json").is_file() else "optuna"
    first = archs[0][1] if archs else None
    dataset = (
        info.get("dataset")
        or (config.get("data") or {}).get("dataset")
        or (first.metadata.get("dataset") if first else None)
    )
    space = (config.get("space") or {}).get("kind") or (first.space if first else None)
    summary: list[tuple[str, str]] = [
        ("run", run_dir.name),
        ("strategy", strategy),
        ("search space", space or "unknown"),
        ("dataset", dataset or "unknown"),
    ]
    if finite(info.get("wall_time_s")):
        summary.append(("wall time", f"{info['wall_time_s']:.1f} s"))
    for key in ("started", "finished", "convnas", "torch", "device", "git_commit"):
        if info.get(key):
            summary.append((key.replace("_", " "), str(info[key])))
    parts: dict[str, Any] = {}
    if (run_dir / "trials.csv").is_file():
        parts = _optuna_part(run_dir, summary)
    elif (run_dir / "alphas.json").is_file():
        parts = _darts_part(run_dir, config, summary)
    else:
        summary.append(
            ("note", "no trials.csv or alphas.json yet: the search has not written results")
        )
    usage = operator_usage([a for _, a in archs]) if archs else None
    return ReportData(run_dir.name, strategy, tuple(summary), operator_usage=usage, **parts)
