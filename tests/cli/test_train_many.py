"""``convnas train`` retrains several architectures (a run's front) on the data they were
searched on (it used to fall back to digits and a 0.1 validation share)."""

from __future__ import annotations

import json
import shutil

import pytest

from convnas.cli import main
from convnas.search_space import load_architecture
from tests.report.test_report import tiny_optuna_run

pytest.importorskip("optuna")

FAST = ["--epochs", "1", "--batch-size", "12", "--device", "cpu", "--no-progress"]


@pytest.fixture
def run(tmp_path_factory, tmp_path):
    shutil.copytree(tiny_optuna_run(tmp_path_factory.getbasetemp()), tmp_path / "run")
    return tmp_path / "run"


def test_architectures_record_the_data_they_were_searched_on(run):
    arch = load_architecture(sorted((run / "architectures").glob("pareto_*.yaml"))[0])
    data = dict(arch.metadata["data"])
    assert data["dataset"] == "synthetic" and data["val_fraction"] == 0.25
    assert dict(data["options"])["num_classes"] == 3
    assert arch.metadata["accuracy_kind"] == "one-shot"


def test_a_run_directory_retrains_its_whole_front_on_the_search_data(run, capsys):
    front = sorted((run / "architectures").glob("pareto_*.yaml"))
    assert main(["train", str(run), *FAST]) == 0
    out = capsys.readouterr().out
    for path in front:
        result = json.loads((run / "trained" / path.stem / "train_result.json").read_text())
        assert result["dataset"] == "synthetic" and result["data"]["val_fraction"] == 0.25
        assert result["data"]["limit_test"] == 8 and 0 <= result["val_accuracy"] <= 1
        assert str(path) in out
    assert "one-shot accuracy in the search" in out


def test_out_with_several_architectures_is_refused(run, tmp_path, capsys):
    front = sorted((run / "architectures").glob("pareto_*.yaml"))
    if len(front) < 2:
        front = front * 2
    assert main(["train", *map(str, front), *FAST, "--out", str(tmp_path / "x")]) == 2
    assert "--out names one output directory" in capsys.readouterr().err


def test_a_directory_without_architectures_says_what_to_pass(tmp_path, capsys):
    assert main(["train", str(tmp_path), *FAST]) == 2
    assert "pass a run directory of a finished search" in capsys.readouterr().err


def test_the_report_shows_the_retrained_accuracy_beside_the_searched_one(run):
    from convnas.report import build_report_data

    assert main(["train", str(run), *FAST]) == 0
    tables = dict(build_report_data(run).tables)
    table = tables["Retrained stand-alone"]
    front = sorted((run / "architectures").glob("pareto_*.yaml"))
    assert len(table.rows) == len(front)
    assert all(0 <= row[3] <= 1 and row[2] is not None for row in table.rows)
