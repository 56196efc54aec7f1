"""What a command-line user expects: defaults in --help, -v anywhere, suggestions, units."""

from __future__ import annotations

import argparse
import pathlib
from types import SimpleNamespace

import pytest

from convnas.cli import build_parser, main
from convnas.cli.main import DefaultsFormatter
from convnas.cli.search import summary_lines
from convnas.search_space import get_space

QUICKSTART = pathlib.Path(__file__).resolve().parents[2] / "configs" / "quickstart.yaml"


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_subcommand_help_shows_its_defaults():
    subs = _subparsers(build_parser())
    assert {"search", "train", "export", "costs", "rank"} <= set(subs)
    formatter = DefaultsFormatter("convnas")
    for name, sub in subs.items():
        assert sub.formatter_class is DefaultsFormatter, name
        sub.format_help()  # every help text formats
        for action in sub._actions:
            if action.option_strings and action.default not in (
                None,
                False,
                [],
                argparse.SUPPRESS,
            ):
                text = formatter._get_help_string(action) or ""
                assert "default" in text, f"convnas {name} {action.option_strings[0]}"
    assert "(default: auto)" in subs["train"].format_help()
    assert "(default: 1)" in subs["search"].format_help()  # --workers


@pytest.mark.parametrize("flag", ["-v", "--verbose", "--debug"])
def test_global_flags_work_before_and_after_the_subcommand(flag):
    dest = "debug" if flag == "--debug" else "verbose"
    parser = build_parser()
    assert getattr(parser.parse_args(["search", "c.yaml", flag]), dest) is True
    assert getattr(parser.parse_args([flag, "search", "c.yaml"]), dest) is True
    assert getattr(parser.parse_args(["search", "c.yaml"]), dest) is False


def test_ops_runs_with_verbose_after_it(capsys):
    assert main(["ops", "-v"]) == 0
    assert "c2sp" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("strategy.n_trails=3", "strategy.n_trails: unknown key; did you mean 'n_trials'?"),
        ("strategy.evaluator.epoch=1", "did you mean 'epochs'?"),
        ("seeed=1", "seeed: unknown key; did you mean 'seed'"),
        ("space.kind=resnt", "space: unknown kind 'resnt'; did you mean 'resnet'?"),
        ("data.dataset=digts", "did you mean 'digits'?"),
        ("space.candidates=[conv_3x4]", "did you mean 'conv_3x3'"),
    ],
)
def test_unknown_names_get_suggestions(override, expected, tmp_path, capsys):
    args = ["search", str(QUICKSTART), "--set", f"output.root={tmp_path}", "--set", override]
    assert main(args) == 2
    assert expected in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_missing_cifar_names_the_cli_flag(tmp_path, capsys):
    args = ["search", str(QUICKSTART), "--set", f"output.root={tmp_path}"]
    args += ["--set", "data.dataset=cifar10", "--set", f"data.root={tmp_path / 'nowhere'}"]
    assert main(args) == 2
    assert "--set data.download=true" in capsys.readouterr().err


def _result(archs, info):
    results = [
        SimpleNamespace(
            trial=i,
            architecture=arch,
            metrics={"accuracy": 0.5, "params": 1e4, "macs": 2e5, "train_memory": 3.62e6},
        )
        for i, arch in enumerate(archs)
    ]
    return SimpleNamespace(strategy="optuna", results=results, pareto=results[:1], info=info)


def _archs():
    space = get_space(
        "resnet", candidates=["conv_3x3", "c2sp"], depth=8, widths=[4, 4, 8], num_classes=3
    )
    n = len(space.decisions())
    return space.architecture([0] * n), space.architecture([1] * n)


def test_summary_prints_training_memory_in_mib(tmp_path):
    a, b = _archs()
    lines = summary_lines(_result([a, b], {"complete": 2}), tmp_path)
    row = next(line for line in lines if line.lstrip().startswith("0 "))
    assert "3.45MiB" in row and "MB" not in row  # 3.62e6 bytes / 2**20
    assert any("MiB (2**20 bytes)" in line for line in lines)


def test_summary_counts_distinct_architectures(tmp_path):
    a, b = _archs()
    first = summary_lines(_result([a, b], {"complete": 2, "repeats": 3}), tmp_path)[0]
    assert first.startswith("optuna search finished: 2 distinct architecture(s) evaluated")
    assert "3 repeated proposal(s)" in first
    again = summary_lines(_result([a, a, b], {}), tmp_path)[0]  # a result list with a repeat
    assert "2 distinct architecture(s)" in again and "1 repeated proposal(s)" in again
