"""The quickstart, shortened, end to end through ``convnas.cli.main``."""

from __future__ import annotations

import csv
import json
import pathlib

import yaml

from convnas.cli import main
from convnas.search_space import build_model, load_architecture

QUICKSTART = pathlib.Path(__file__).resolve().parents[2] / "configs" / "quickstart.yaml"
SHORT = [
    "strategy.n_trials=4",
    "strategy.population_size=4",
    "strategy.evaluator.epochs=1",
    "strategy.evaluator.batch_size=32",
    "data.limit_train=300",
    "data.limit_test=50",
    "space.candidates=[conv_3x3, c2sp, osep_3x3, csg_conv_3x3]",
]


def _args(root: pathlib.Path, *extra: str) -> list[str]:
    args = ["search", str(QUICKSTART), "--set", f"output.root={root}"]
    for item in [*SHORT, *extra]:
        args += ["--set", item]
    return args


def test_quickstart_runs_end_to_end(tmp_path, capsys):
    assert main(_args(tmp_path)) == 0
    out = capsys.readouterr().out
    assert "Pareto front" in out and "run directory:" in out
    run = tmp_path / "quickstart"
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["strategy"]["n_trials"] == 4 and config["data"]["dataset"] == "digits"
    info = json.loads((run / "run_info.json").read_text())
    assert info["torch"] and info["convnas"] and info["result"]["complete"] == 4
    rows = list(csv.DictReader(open(run / "trials.csv")))
    assert sum(r["state"] == "COMPLETE" for r in rows) == 4
    pareto = sorted((run / "architectures").glob("pareto_*.yaml"))
    assert pareto
    model = build_model(load_architecture(pareto[0]))
    import torch

    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    # resuming with a larger budget adds trials to the same study
    assert main(_args(tmp_path, "strategy.n_trials=6") + ["--resume"]) == 0
    rows = list(csv.DictReader(open(run / "trials.csv")))
    assert sum(r["state"] == "COMPLETE" for r in rows) == 6


def test_bad_config_and_missing_cifar_give_clear_messages(tmp_path, capsys):
    assert main(_args(tmp_path, "strategy.n_trials=zero")) == 2
    assert "strategy.n_trials" in capsys.readouterr().err
    args = _args(tmp_path, "data.dataset=cifar10", f"data.root={tmp_path / 'nowhere'}")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "cifar-10-batches-py" in err and "nowhere" in err


def test_a_second_search_without_resume_is_refused_before_touching_the_run(tmp_path, capsys):
    assert main(_args(tmp_path, "strategy.n_trials=4")) == 0
    run = next(p for p in tmp_path.rglob("run_info.json")).parent
    before = {f.name: f.read_bytes() for f in run.iterdir() if f.is_file()}
    assert main(_args(tmp_path, "strategy.n_trials=4")) == 2
    assert "--resume" in capsys.readouterr().err
    assert {f.name: f.read_bytes() for f in run.iterdir() if f.is_file()} == before
