"""``convnas costs``: spec parsing, table and JSON output, errors."""

from __future__ import annotations

import argparse
import json

import pytest

from convnas.cli import costs as costs_command
from convnas.errors import ConfigError


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    costs_command.add_arguments(parser)
    return costs_command.run(parser.parse_args(argv))


def test_parse_spec_and_input():
    assert costs_command.parse_spec("resnet56:c2sp") == (56, "c2sp", {})
    assert costs_command.parse_spec("resnet20") == (20, "conv_3x3", {})
    assert costs_command.parse_spec("resnet20:csg_conv_3x3:code_size=72:mode=binary") == (
        20,
        "csg_conv_3x3",
        {"code_size": 72, "mode": "binary"},
    )
    assert costs_command.parse_spec("resnet20:x:slice_shape=[12,12,3,3]")[2] == {
        "slice_shape": [12, 12, 3, 3]
    }
    assert costs_command.parse_input_shape("3x32x32") == (3, 32, 32)
    with pytest.raises(ConfigError, match="resnetN"):
        costs_command.parse_spec("vgg16")
    with pytest.raises(ConfigError, match="key=value"):
        costs_command.parse_spec("resnet20:conv_3x3:oops")
    for bad in ("3xa", "0x32x32", ""):
        with pytest.raises(ConfigError, match="3x32x32"):
            costs_command.parse_input_shape(bad)


def test_json_output(capsys):
    assert _run(["resnet20", "--input", "3x32x32", "--batch", "4", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["params"] == 269_722
    assert data["macs"] == 40_551_040
    assert data["batch_size"] == 4 and data["optimizer"] == "sgd"
    assert data["train_memory_bytes"] == (
        data["weight_bytes"] + data["gradient_bytes"] + data["activation_bytes"]
    )


def test_table_output_with_shortcut_width_and_optimizer(capsys):
    assert _run(["resnet20", "--shortcut", "B", "--width", "0.5", "--optimizer", "adam"]) == 0
    out = capsys.readouterr().out
    assert "MACs / image (not 2xMACs)" in out
    assert "optimizer state (adam)" in out
    assert "training memory" in out and "simulated peak" in out


def test_through_main(capsys):
    from convnas.cli import main

    assert main(["costs", "resnet20", "--batch", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["params"] == 269_722
    assert main(["costs", "resnet21"]) == 2
    assert "6n+2" in capsys.readouterr().err
    assert main(["costs", "missing_architecture.yaml"]) == 2
    assert "does not exist" in capsys.readouterr().err
