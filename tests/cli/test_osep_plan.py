"""``convnas osep-plan``: the table, JSON output and errors."""

from __future__ import annotations

import json

from convnas.cli import main


def test_table_for_the_hand_check(capsys):
    assert main(["osep-plan", "--in", "64", "--out", "64", "--kernel", "3"]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines()]
    assert ["1", "64->64", "3x3", "1x1", "22", "3->3", "2/2", "1,782", "1,782"] in rows
    assert ["2", "64->64", "1x1", "1x1", "3", "22->22", "2/2", "1,452", "1,452"] in rows
    assert ["total", "3,234", "3,234"] in rows
    assert "dense 3x3 conv: 36,864 params -> saving 11.40x" in out
    assert "depthwise-separable (3x3 dw + 1x1): 4,672 params -> saving 1.44x" in out
    assert "continuous optimum (Theorem 1): 3,072.0 params" in out
    assert "per output pixel" in out


def test_auto_spatial_and_stride(capsys):
    argv = ["osep-plan", "--in", "64", "--out", "64", "--kernel", "5", "--n-sep", "auto"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "N=4" in out.splitlines()[0] and "N=4: 2368" in out
    assert main(["osep-plan", "--in", "8", "--out", "8", "--spatial", "--stride", "2"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert [r[2:4] for r in rows if r and r[0] in ("1", "2")] == [["3x1", "2x1"], ["1x3", "1x2"]]


def test_json(capsys):
    argv = ["osep-plan", "--in", "58", "--out", "116", "--kernel", "3", "--json"]
    assert main(argv) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["groups"] == [15, 4] and data["layer_params"] == [2160, 1740]
    assert data["layers"][0]["shuffle"] is True and data["layers"][1]["shuffle"] is False


def test_rectangular_kernel_and_gamma(capsys):
    argv = ["osep-plan", "--in", "32", "--out", "32", "--kernel", "3x5", "--gamma", "0.5"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "kernel 3x5" in out and "gamma=0.5" in out and "dense 3x5 conv: 15,360" in out


def test_errors(capsys):
    assert main(["osep-plan", "--in", "0", "--out", "8"]) == 2
    assert "in_channels must be a positive int" in capsys.readouterr().err
    assert main(["osep-plan", "--in", "8", "--out", "8", "--gamma", "-1"]) == 2
    assert "gamma" in capsys.readouterr().err
