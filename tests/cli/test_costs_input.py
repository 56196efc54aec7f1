"""``convnas costs ARCH.yaml`` measures at the file's input shape; ``--input HxW`` keeps its
channels; a bad ``--input`` is one line naming the flag; memory is printed in MiB."""

from __future__ import annotations

import json
import re

import yaml

from convnas.cli import main

DIGITS_ARCH = {  # what the quickstart writes: 1x8x8 digits
    "schema": "convnas/architecture/v1",
    "space": "resnet",
    "settings": {
        "depth": 8,
        "widths": [4, 4, 8],
        "num_classes": 10,
        "input_shape": [1, 8, 8],
        "granularity": "network",
    },
    "choices": [{"decision": "all", "op": "c2sp"}],
    "metadata": {},
}


def _arch(tmp_path):
    path = tmp_path / "digits.yaml"
    path.write_text(yaml.safe_dump(DIGITS_ARCH))
    return str(path)


def test_input_shape_defaults_to_the_architecture_file(tmp_path, capsys):
    assert main(["costs", _arch(tmp_path), "--batch", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["input_shape"] == [1, 8, 8]
    assert main(["costs", _arch(tmp_path), "--batch", "2"]) == 0
    out = capsys.readouterr().out
    assert "input 1x8x8" in out
    assert re.search(r"training memory\s+\d+\.\d\d MiB", out)


def test_input_hxw_keeps_the_file_channels(tmp_path, capsys):
    assert main(["costs", _arch(tmp_path), "--input", "16x16", "--batch", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["input_shape"] == [1, 16, 16]
    assert main(["costs", "resnet20", "--input", "16x16", "--batch", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["input_shape"] == [3, 16, 16]


def test_bad_input_is_one_line_naming_the_flag(tmp_path, capsys):
    for bad in ("32", "1x2x3x4", "3xfoo"):
        assert main(["costs", _arch(tmp_path), "--input", bad]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "--input" in err, err
