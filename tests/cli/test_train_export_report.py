from __future__ import annotations

import json

import pytest
import torch

from convnas.cli import build_parser, main
from convnas.cli import export as export_command
from convnas.run.export import FORMATS, deploy_model, load_exported, load_trained
from tests.report.test_report import tiny_optuna_run

pytest.importorskip("optuna")

SYNTHETIC = [
    "--data",
    "synthetic",
    "--data-option",
    "num_classes=3",
    "--data-option",
    "input_shape=(3, 8, 8)",
    "--data-option",
    "size=64",
    "--val-fraction",
    "0.25",
    "--limit-test",
    "8",
]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return tiny_optuna_run(tmp_path_factory.getbasetemp())


def test_commands_are_registered():
    text = build_parser().format_help()
    assert all(name in text for name in ("train", "export", "report"))
    assert export_command.FORMATS == FORMATS  # the CLI keeps torch out of parser building


def test_train_then_export_the_trained_weights(run, tmp_path, capsys):
    arch_file = sorted((run / "architectures").glob("pareto_*.yaml"))[0]
    out = tmp_path / "trained"
    rc = main(
        [
            "train",
            str(arch_file),
            *SYNTHETIC,
            "--epochs",
            "1",
            "--batch-size",
            "12",
            "--device",
            "cpu",
            "--no-progress",
            "--out",
            str(out),
        ]
    )
    printed = capsys.readouterr().out
    assert rc == 0 and "test accuracy" in printed
    result = json.loads((out / "train_result.json").read_text())
    assert 0.0 <= result["test_accuracy"] <= 1.0 and len(result["history"]) == 1
    assert (out / "architecture.yaml").is_file()
    model, arch = load_trained(out / "model.pt")
    assert arch.metadata["trained_metrics"]["test_accuracy"] == result["test_accuracy"]

    rc = main(
        [
            "export",
            "--weights",
            str(out / "model.pt"),
            "--format",
            "state_dict",
            "torchscript",
            "--out",
            str(tmp_path / "exp"),
        ]
    )
    assert rc == 0
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        expected = deploy_model(model)(x)
        assert torch.equal(load_exported(tmp_path / "exp" / "trained.pt")(x), expected)
        torch.testing.assert_close(
            load_exported(tmp_path / "exp" / "trained.torchscript.pt")(x),
            expected,
            atol=1e-6,
            rtol=1e-6,
        )


def test_train_refuses_a_dataset_the_architecture_does_not_fit(run, tmp_path, capsys):
    arch_file = sorted((run / "architectures").glob("pareto_*.yaml"))[0]
    rc = main(
        ["train", str(arch_file), "--data", "digits", "--epochs", "1", "--out", str(tmp_path / "t")]
    )
    assert rc == 2
    assert "expects input [3, 8, 8] and 3 classes" in capsys.readouterr().err


def test_export_pareto_and_report(run, tmp_path, capsys):
    rc = main(["export", str(run), "--pareto", "--format", "yaml", "--out", str(tmp_path)])
    assert rc == 0
    pareto = sorted(p.name for p in (run / "architectures").glob("pareto_*.yaml"))
    assert sorted(p.name for p in tmp_path.glob("*.yaml")) == pareto
    assert "freshly initialised" in capsys.readouterr().out
    assert main(["export", str(run), "--trial", "999", "--out", str(tmp_path)]) == 2
    assert "trial 999" in capsys.readouterr().err

    assert main(["report", str(run)]) == 0
    assert capsys.readouterr().out.strip() == str(run / "report.html")
    assert (run / "report.html").read_text().startswith("<!DOCTYPE html>")
