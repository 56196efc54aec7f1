"""The data of a run report, as plain objects: built from the run directory, rendered elsewhere.

:func:`build_report_data` reads ``trials.csv`` (Optuna/random), ``alphas.json`` (DARTS),
``architectures/*.yaml``, and, when present, ``config.yaml`` and ``run_info.json``. Nothing here
imports matplotlib; :mod:`convnas.report.render` draws these objects. The hypervolume series
is normalised as :mod:`convnas.report` describes.

Honest labels: an infeasible trial (a constraint violated, so not trained) is a point with
``feasible=False`` and no accuracy, never a complete trial of accuracy 0. A run whose best
accuracy is within :data:`NEAR_CHANCE` of chance (1/num_classes) gets a ``warning`` line in the
summary. A DARTS run whose alphas stayed near uniform, that is, where at the last epoch every
decision's largest softmax(alpha) is below 1/K + :data:`UNIFORM_MARGIN` (K candidates), gets
``alphas_note``: its derived architecture is then close to an arbitrary pick, not a finding.
"""

from __future__ import annotations

import json
import logging
import math
import pathlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from convnas.io import read_yaml
from convnas.report.genotype import CellGraph, cell_graphs, darts_genotype
from convnas.report.pareto import hypervolume, non_dominated
from convnas.report.ranking import RankingData, ranking_data
from convnas.report.tables import (
    Table,
    darts_tables,
    finite,
    metric_label,
    operator_comparison_table,
    read_trials_csv,
    single_operator,
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
NEAR_CHANCE = 0.02  # accuracy points above 1/num_classes that still count as chance
UNIFORM_MARGIN = 0.05  # max softmax(alpha) below 1/K + this counts as uniform


@dataclass(frozen=True)
class Point:
    """One trial in a 2-D plot; an infeasible one (``feasible=False``) has ``y`` NaN unless it
    was measured. ``label`` is drawn beside the point (empty: none)."""

    trial: int | None
    x: float
    y: float
    pareto: bool
    feasible: bool = True
    label: str = ""


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
    ranking: RankingData | None = None  # from rank.json (convnas rank)
    operator_comparison: Table | None = None  # one operator per trial (granularity network)
    genotype: str | None = None  # DARTS notation of darts_final.yaml
    cells: tuple[CellGraph, ...] = ()
    alphas_note: str | None = None


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
    single = single_operator(rows)
    infeasible = [r for r in complete if not r["feasible"]]

    def label(number: int) -> str:
        if single is not None:
            return single[number]
        return str(number) if number in pareto_numbers else ""

    plots = []
    for cost in costs:
        pts = [
            Point(
                r["number"],
                r["values"][cost],
                r["values"][y],
                r["number"] in pareto_numbers,
                label=label(r["number"]),
            )
            for r in usable
        ]
        pts += [
            Point(
                r["number"],
                r["values"].get(cost, math.nan),
                _unmeasured(r["values"].get(y, math.nan)),
                False,
                feasible=False,
                label=label(r["number"]),
            )
            for r in infeasible
            if finite(r["values"].get(cost))
        ]
        front = _front_2d([(p.x, p.y if y == "accuracy" else -p.y) for p in pts if p.feasible])
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
    comparison = None
    if single is not None:
        comparison = operator_comparison_table(rows, single, links)
    return {
        "objectives": tuple(objectives),
        "pareto_plots": tuple(plots),
        "scatter_matrix": matrix,
        "hypervolume": hypervolume_series(complete, objectives),
        "tables": (("Trials", trials_table(rows, objectives, pareto_numbers, links)),),
        "operator_comparison": comparison,
    }


def _unmeasured(accuracy: float) -> float:
    """An infeasible trial's accuracy: NaN when it was recorded as 0 without training."""
    return math.nan if not finite(accuracy) or accuracy == 0 else accuracy


def best_accuracy(rows: Sequence[dict[str, Any]]) -> float | None:
    """The best accuracy among the complete feasible trials of trials.csv rows, if any."""
    values = [
        r["values"].get("accuracy")
        for r in rows
        if r["state"] == "COMPLETE" and r["feasible"] and finite(r["values"].get("accuracy"))
    ]
    return max(values) if values else None


def near_chance_warning(accuracy: float | None, num_classes: Any) -> str | None:
    """The summary's warning when ``accuracy`` is within :data:`NEAR_CHANCE` of chance."""
    if accuracy is None or not isinstance(num_classes, int) or num_classes < 2:
        return None
    chance = 1.0 / num_classes
    if accuracy > chance + NEAR_CHANCE:
        return None
    return (
        f"near chance: the best accuracy {accuracy:.4f} is within {NEAR_CHANCE:.2f} of chance "
        f"(1/{num_classes} = {chance:.4f}), so the search's accuracies say little; train longer "
        f"(more epochs or steps per epoch)"
    )


def uniform_alphas_note(alphas: Sequence[AlphaSeries]) -> str | None:
    """The alphas section's note when every decision ended near uniform (module docstring)."""
    if not alphas or not all(s.epochs for s in alphas):
        return None
    margins = []
    for s in alphas:
        top = max(p[-1] for p in s.probabilities)
        margins.append(top - 1.0 / len(s.candidates))
    if max(margins) >= UNIFORM_MARGIN:
        return None
    return (
        f"the alphas stayed near uniform: at the last epoch no decision's largest softmax(alpha) "
        f"exceeds 1/K + {UNIFORM_MARGIN} (largest excess {max(margins):+.3f}), so the derived "
        f"architecture is close to an arbitrary pick, not a finding; search longer "
        f"(more epochs or steps per epoch)"
    )


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
    out: dict[str, Any] = {
        "alphas": tuple(alphas),
        "supernet_curve": {"epoch": tuple(float(e) for e in epochs), **curve},
        "tables": darts_tables(history, archs),
        "alphas_note": uniform_alphas_note(alphas),
    }
    if archs and archs[0][1].space == "darts":
        try:
            out["genotype"] = darts_genotype(archs[0][1])
            out["cells"] = cell_graphs(archs[0][1])
        except ValueError as exc:  # a hand-edited file: the rest of the report still stands
            logger.warning("cannot read the DARTS genotype of darts_final.yaml: %s", exc)
    return out


def accuracy_kind(config: dict[str, Any]) -> str:
    """What an Optuna run's accuracy is: one-shot (inherited weights) or trained."""
    evaluator = ((config.get("strategy") or {}).get("evaluator")) or {}
    kind = evaluator.get("kind", "supernet")
    if kind == "supernet":
        return (
            "one-shot: each architecture scored with weights inherited from the trained "
            "supernet, on the validation split (a ranking proxy, not its accuracy when trained "
            "alone; see convnas rank)"
        )
    if kind == "train":
        return (
            f"trained: each architecture trained from scratch for {evaluator.get('epochs', '?')} "
            f"epoch(s), on the validation split"
        )
    return f"from the {kind!r} evaluator, on the validation split"


def _supernet_part(run_dir: pathlib.Path, summary: list[tuple[str, str]]) -> dict[str, Any]:
    """The supernet's per-epoch training metrics (``supernet_metrics.csv``), if any."""
    import csv

    path = run_dir / "supernet_metrics.csv"
    if not path.is_file():
        return {}
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    curve = {
        key: tuple(float(r[key]) for r in rows)
        for key in ("epoch", "train_accuracy", "train_loss")
        if all(finite_text(r.get(key)) for r in rows)
    }
    seconds = sum(float(r["seconds"]) for r in rows if finite_text(r.get("seconds")))
    last = rows[-1]
    summary.append(
        (
            "supernet training",
            f"{len(rows)} epoch(s) in {seconds:.1f} s; last epoch: train loss "
            f"{float(last['train_loss']):.4f}, accuracy of the sampled paths "
            f"{float(last['train_accuracy']):.4f}",
        )
    )
    return {"supernet_curve": curve}


def retrained_table(run_dir: pathlib.Path) -> Table | None:
    """The architectures retrained by ``convnas train`` (``trained/*/train_result.json``),
    with the accuracy the search gave them beside the retrained one."""
    rows, links = [], []
    for path in sorted(run_dir.glob("trained/*/train_result.json")):
        record = _read_json(path)
        if not isinstance(record, dict):
            continue
        arch = pathlib.Path(str(record.get("architecture", "")))
        rows.append(
            (
                arch.stem or path.parent.name,
                record.get("trial"),
                record.get("searched_accuracy"),
                record.get("val_accuracy"),
                record.get("test_accuracy"),
                (record.get("settings") or {}).get("epochs"),
            )
        )
        links.append(f"architectures/{arch.name}" if arch.parent.name == "architectures" else None)
    if not rows:
        return None
    return Table(
        (
            "architecture",
            "trial",
            "accuracy in the search",
            "retrained val accuracy",
            "retrained test accuracy",
            "epochs",
        ),
        tuple(rows),
        tuple(links),
    )


def finite_text(value: Any) -> bool:
    try:
        return finite(float(value))
    except (TypeError, ValueError):
        return False


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
    num_classes = (config.get("space") or {}).get("num_classes") or (
        first.settings.get("num_classes") if first else None
    )
    if (run_dir / "trials.csv").is_file():
        summary.append(("accuracy axis", accuracy_kind(config)))
        parts = _optuna_part(run_dir, summary)
        warning = near_chance_warning(
            best_accuracy(read_trials_csv(run_dir / "trials.csv")[1]), num_classes
        )
        if warning:
            summary.append(("warning", warning))
        parts.update(_supernet_part(run_dir, summary))
        retrained = retrained_table(run_dir)
        if retrained is not None:
            parts["tables"] = (*parts["tables"], ("Retrained stand-alone", retrained))
    elif (run_dir / "alphas.json").is_file():
        parts = _darts_part(run_dir, config, summary)
        curve = parts["supernet_curve"].get("val_accuracy") or ()
        warning = near_chance_warning(max(curve) if curve else None, num_classes)
        if warning:
            summary.append(("warning", warning))
    else:
        summary.append(
            ("note", "no trials.csv or alphas.json yet: the search has not written results")
        )
    usage = operator_usage([a for _, a in archs]) if archs else None
    return ReportData(
        run_dir.name,
        strategy,
        tuple(summary),
        operator_usage=usage,
        ranking=ranking_data(run_dir),
        **parts,
    )
