"""Honest labels: infeasible trials, near-chance accuracies, near-uniform DARTS alphas, the
genotype and cell diagram of a DARTS run (hand-made run directories, no training)."""

from __future__ import annotations

import csv
import json
import math

import pytest
import yaml

from convnas.report import build_report_data, render_html
from convnas.report.data import UNIFORM_MARGIN, near_chance_warning, uniform_alphas_note
from convnas.report.render import figures

FIELDS = [
    "number",
    "state",
    "duration_s",
    "objective_accuracy",
    "objective_params",
    "params",
    "deploy_params",
    "macs",
    "train_memory",
    "feasible",
    "operators",
    "fail_reason",
    "note",
]


def _optuna_dir(path, accuracies, num_classes=10):
    """A run directory with trials.csv (trial 1 infeasible, recorded as accuracy 0)."""
    path.mkdir()
    with open(path / "trials.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, FIELDS)
        writer.writeheader()
        for i, acc in enumerate(accuracies):
            params = 1000.0 * (i + 1)
            writer.writerow(
                {
                    "number": i,
                    "state": "COMPLETE",
                    "duration_s": 1.0,
                    "objective_accuracy": 0.0 if i == 1 else acc,
                    "objective_params": params,
                    "params": params,
                    "deploy_params": params,
                    "macs": 10 * params,
                    "train_memory": 2**20 * (i + 1),
                    "feasible": i != 1,
                    "operators": "conv_3x3 c2sp",
                    "note": "infeasible: not trained, accuracy recorded as 0" if i == 1 else "",
                }
            )
    config = {
        "space": {"kind": "resnet", "num_classes": num_classes},
        "strategy": {"kind": "optuna", "max_params": 1500},
    }
    (path / "config.yaml").write_text(yaml.safe_dump(config))
    return path


def test_infeasible_trials_are_labelled_not_plotted_as_accuracy_zero(tmp_path):
    data = build_report_data(_optuna_dir(tmp_path / "run", [0.6, 0.9, 0.5, 0.7]))
    (plot,) = data.pareto_plots
    points = {p.trial: p for p in plot.points}
    assert sorted(points) == [0, 1, 2, 3]
    assert not points[1].feasible and math.isnan(points[1].y) and not points[1].pareto
    assert all(p.feasible for n, p in points.items() if n != 1)
    assert (1000.0 * 2, 0.0) not in plot.front
    ((_, table),) = data.tables
    row = table.rows[1]
    assert row[1] == "infeasible" and math.isnan(row[table.columns.index("accuracy")])
    assert "COMPLETE" not in [r[1] for r in table.rows if r[0] == 1]
    assert dict(data.summary)["infeasible trials"] == "1"
    assert "warning" not in dict(data.summary)  # 0.7 is far from chance (0.1)
    html_text = render_html(data)
    assert "infeasible" in html_text and "orange crosses" in html_text


def test_near_chance_accuracies_get_a_warning(tmp_path):
    data = build_report_data(_optuna_dir(tmp_path / "run", [0.10, 0.9, 0.115, 0.09]))
    warning = dict(data.summary)["warning"]
    assert warning.startswith("near chance") and "train longer" in warning
    assert "1/10" in warning
    assert 'class="warning"' in render_html(data)
    assert near_chance_warning(0.121, 10) is None  # more than 2 points above chance
    assert near_chance_warning(0.5, None) is None  # unknown number of classes: no claim
    assert near_chance_warning(0.34, 3) is not None


def _darts_dir(path, final_probs):
    """alphas.json over 2 epochs (2 decisions, 4 candidates) and a darts_final.yaml."""
    path.mkdir()
    uniform = [0.25, 0.25, 0.25, 0.25]
    history = [
        {
            "epoch": e + 1,
            "probabilities": {"normal/2<-0": p, "reduce/2<-1": p},
            "train_accuracy": 0.3,
            "val_accuracy": 0.6,
            "train_loss": 1.0,
            "val_loss": 1.0,
        }
        for e, p in enumerate([uniform, final_probs])
    ]
    (path / "alphas.json").write_text(json.dumps(history))
    (path / "architectures").mkdir()
    final = {
        "schema": "convnas/architecture/v1",
        "space": "darts",
        "settings": {"steps": 1, "multiplier": 1, "num_classes": 3},
        "choices": [
            {"decision": "normal/2<-0", "op": "conv_3x3"},
            {"decision": "normal/2<-1", "op": "skip_connect"},
            {"decision": "reduce/2<-0", "op": "conv_1x1"},
            {"decision": "reduce/2<-1", "op": "conv_3x3"},
        ],
        "metadata": {},
    }
    (path / "architectures" / "darts_final.yaml").write_text(yaml.safe_dump(final))
    (path / "config.yaml").write_text(
        yaml.safe_dump(
            {
                "space": {
                    "kind": "darts",
                    "candidates": ["none", "skip_connect", "conv_1x1", "conv_3x3"],
                },
                "strategy": {"kind": "darts"},
            }
        )
    )
    return path


@pytest.mark.parametrize(
    ("probs", "uniform"),
    [([0.27, 0.24, 0.25, 0.24], True), ([0.31, 0.23, 0.23, 0.23], False)],
)
def test_near_uniform_alphas_get_a_note(tmp_path, probs, uniform):
    data = build_report_data(_darts_dir(tmp_path / "run", probs))
    assert (data.alphas_note is not None) == uniform
    if uniform:
        assert "near uniform" in data.alphas_note and str(UNIFORM_MARGIN) in data.alphas_note
        assert "near uniform" in render_html(data) and "not a finding" in render_html(data)
    assert uniform_alphas_note(()) is None


def test_darts_report_shows_genotype_and_cells(tmp_path):
    data = build_report_data(_darts_dir(tmp_path / "run", [0.7, 0.1, 0.1, 0.1]))
    assert data.genotype == (
        "Genotype(normal=[('conv_3x3', 0), ('skip_connect', 1)], normal_concat=range(2, 3), "
        "reduce=[('conv_1x1', 0), ('conv_3x3', 1)], reduce_concat=range(2, 3))"
    )
    assert [c.kind for c in data.cells] == ["normal", "reduce"]
    assert "warning" not in dict(data.summary)  # 0.6 with 3 classes is above chance
    figs = figures(data)
    assert figs["cells"][:8] == b"\x89PNG\r\n\x1a\n"
    html_text = render_html(data)
    assert "Genotype(normal=[(&#x27;conv_3x3&#x27;, 0)" in html_text
    assert 'alt="normal and reduction cells"' in html_text


def test_alpha_colours_are_distinct_and_shared_across_decisions(tmp_path):
    from convnas.report.render import candidate_colors

    data = build_report_data(_darts_dir(tmp_path / "run", [0.7, 0.1, 0.1, 0.1]))
    colors = candidate_colors(data)
    assert list(colors) == ["none", "skip_connect", "conv_1x1", "conv_3x3"]
    assert len(set(colors.values())) == 4


def test_cell_diagram_names_nodes_as_darts_does():
    from convnas.report.render import _cell_positions, _node_name

    names = [_node_name(n) for n in _cell_positions(4)]
    assert names == ["c_{k-2}", "c_{k-1}", "0", "1", "2", "3", "c_{k}"]
