"""The tables of a run report (trials, DARTS architectures and epochs) and the labels of its
metrics, read from ``trials.csv`` and the architecture files."""

from __future__ import annotations

import csv
import math
import pathlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from convnas.costs import COST_OBJECTIVES

__all__ = [
    "COSTS",
    "LABELS",
    "Table",
    "darts_tables",
    "finite",
    "metric_label",
    "operator_comparison_table",
    "read_trials_csv",
    "single_operator",
    "split_operators",
    "trials_table",
]

COSTS = COST_OBJECTIVES

LABELS = {
    "accuracy": "accuracy",
    "params": "params (trainable)",
    "deploy_params": "deploy params (folded)",
    "macs": "MACs / image (not 2xMACs)",
    "train_memory": "training memory (bytes)",
}


def metric_label(metric: str) -> str:
    return LABELS.get(metric, metric)


def finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _float(text: str) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


@dataclass(frozen=True)
class Table:
    """A sortable table: ``links[i]`` is the architecture file of row i (relative), or None."""

    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    links: tuple[str | None, ...]


def read_trials_csv(path: pathlib.Path) -> tuple[list[str], list[dict[str, Any]]]:
    """``(objectives, rows)``; each row has number, state, duration_s, values (objectives and
    costs as floats), feasible (False only when the trial violated a constraint), operators,
    fail_reason, note."""
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        fields = reader.fieldnames or []
        objectives = [f[len("objective_") :] for f in fields if f.startswith("objective_")]
        rows = []
        for raw in reader:
            values = {o: _float(raw[f"objective_{o}"]) for o in objectives}
            for key in COSTS:
                if key in raw and key not in values:
                    values[key] = _float(raw[key])
            rows.append(
                {
                    "number": int(raw["number"]),
                    "state": raw["state"],
                    "duration_s": _float(raw.get("duration_s", "")),
                    "values": values,
                    "feasible": raw.get("feasible", "") != "False",
                    "operators": raw.get("operators", ""),
                    "fail_reason": raw.get("fail_reason", ""),
                    "note": raw.get("note", ""),
                }
            )
    return objectives, rows


def trials_table(
    rows: Sequence[dict[str, Any]],
    objectives: Sequence[str],
    pareto: set[int],
    links: dict[int, str],
) -> Table:
    metrics = list(objectives) + [c for c in COSTS if c not in objectives]
    columns = (
        "trial",
        "state",
        "Pareto",
        *[metric_label(m) for m in metrics],
        "duration (s)",
        "operators",
        "note",
    )
    out, out_links = [], []
    for r in sorted(rows, key=lambda r: r["number"]):
        values = [r["values"].get(m, math.nan) for m in metrics]
        note = r["fail_reason"] or r["note"] or ("infeasible" if not r["feasible"] else "")
        infeasible = r["state"] == "COMPLETE" and not r["feasible"]
        if infeasible and "accuracy" in metrics:  # not trained: its recorded 0 is no accuracy
            values[metrics.index("accuracy")] = math.nan
        out.append(
            (
                r["number"],
                "infeasible" if infeasible else r["state"],
                "yes" if r["number"] in pareto else "",
                *values,
                r["duration_s"],
                r["operators"],
                note,
            )
        )
        out_links.append(links.get(r["number"]))
    return Table(columns, tuple(out), tuple(out_links))


def split_operators(text: str) -> list[str]:
    """The operator names of a trials.csv ``operators`` cell, hyper-parameters dropped:
    ``"c2sp csg_conv_3x3{'code_size': 8}"`` -> ``["c2sp", "csg_conv_3x3"]``."""
    names, depth, current = [], 0, ""
    for char in text:
        if char == "{":
            depth += 1
        elif char == "}":
            depth = max(0, depth - 1)
        elif depth == 0 and char.isspace():
            if current:
                names.append(current)
            current = ""
        elif depth == 0:
            current += char
    if current:
        names.append(current)
    return names


def single_operator(rows: Sequence[dict[str, Any]]) -> dict[int, str] | None:
    """``{trial: operator}`` when every complete trial uses one operator everywhere (a space of
    granularity ``network``), else None."""
    out = {}
    for r in rows:
        if r["state"] != "COMPLETE":
            continue
        names = set(split_operators(r["operators"]))
        if len(names) != 1:
            return None
        out[r["number"]] = names.pop()
    return out or None


def operator_comparison_table(
    rows: Sequence[dict[str, Any]], operators: dict[int, str], links: dict[int, str]
) -> Table:
    """One row per complete trial of a single-operator comparison, best accuracy first;
    infeasible trials (not trained) last, with "infeasible" for their accuracy."""
    complete = [r for r in rows if r["number"] in operators]
    repeated = {o for o in operators.values() if list(operators.values()).count(o) > 1}

    def key(r: dict[str, Any]) -> tuple[bool, float, int]:
        acc = r["values"].get("accuracy", math.nan)
        return (not r["feasible"], -acc if finite(acc) else math.inf, r["number"])

    out, out_links = [], []
    for r in sorted(complete, key=key):
        op = operators[r["number"]]
        label = f"{op} {r['operators'][len(op) :].strip()}" if op in repeated else op
        memory = r["values"].get("train_memory", math.nan)
        out.append(
            (
                label.strip(),
                r["values"].get("params", math.nan),
                r["values"].get("macs", math.nan),
                memory / 2**20 if finite(memory) else math.nan,
                r["values"].get("accuracy", math.nan) if r["feasible"] else "infeasible",
                r["number"],
            )
        )
        out_links.append(links.get(r["number"]))
    columns = ("operator", "params", "MACs", "train memory (MiB)", "accuracy", "trial")
    return Table(columns, tuple(out), tuple(out_links))


def darts_tables(
    history: Sequence[dict[str, Any]], archs: Sequence[tuple[str, Any]]
) -> tuple[tuple[str, Table], ...]:
    """The final architecture(s) with their costs, and the per-epoch supernet history."""
    rows, links = [], []
    for name, arch in archs:
        metrics = dict(arch.metadata.get("metrics") or {})
        ops = " ".join(f"{op}\u00d7{n}" for op, n in arch.ops_used().items())
        rows.append(
            (
                name,
                metrics.get("supernet_val_accuracy", math.nan),
                *[metrics.get(c, math.nan) for c in COSTS],
                ops,
            )
        )
        links.append(f"architectures/{name}")
    final = Table(
        ("architecture", "supernet val accuracy", *[metric_label(c) for c in COSTS], "operators"),
        tuple(rows),
        tuple(links),
    )
    keys = ("train_loss", "train_accuracy", "val_loss", "val_accuracy")
    epochs = Table(
        ("epoch", *[k.replace("_", " ") for k in keys]),
        tuple((h["epoch"], *[h.get(k, math.nan) for k in keys]) for h in history),
        (None,) * len(history),
    )
    return (("Architectures", final), ("Supernet epochs", epochs))
