"""The DARTS genotype string and the cell graphs of a hand-made architecture."""

from __future__ import annotations

import pytest

from convnas.errors import ConfigError
from convnas.report.genotype import cell_graphs, darts_genotype
from convnas.search_space.architecture import Architecture, Choice

# DARTS_V2 of the DARTS paper (cnn/genotypes.py), as (node, input, op) per cell
NORMAL = [
    (2, 0, "sep_conv_3x3"),
    (2, 1, "sep_conv_3x3"),
    (3, 0, "sep_conv_3x3"),
    (3, 1, "sep_conv_3x3"),
    (4, 1, "sep_conv_3x3"),
    (4, 0, "skip_connect"),
    (5, 0, "skip_connect"),
    (5, 2, "dil_conv_3x3"),
]
REDUCE = [
    (2, 0, "max_pool_3x3"),
    (2, 1, "max_pool_3x3"),
    (3, 2, "skip_connect"),
    (3, 1, "max_pool_3x3"),
    (4, 0, "max_pool_3x3"),
    (4, 2, "skip_connect"),
    (5, 2, "skip_connect"),
    (5, 1, "max_pool_3x3"),
]


def _arch(steps=4, multiplier=4):
    choices = [Choice(f"reduce/{n}<-{s}", op) for n, s, op in REDUCE]  # any order in the file
    choices += [Choice(f"normal/{n}<-{s}", op) for n, s, op in NORMAL]
    settings = {"channels": 16, "layers": 8, "steps": steps, "multiplier": multiplier}
    return Architecture("darts", settings, tuple(choices))


def test_genotype_in_darts_notation():
    assert darts_genotype(_arch()) == (
        "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), "
        "('sep_conv_3x3', 1), ('skip_connect', 0), ('sep_conv_3x3', 1), ('skip_connect', 0), "
        "('dil_conv_3x3', 2)], normal_concat=range(2, 6), "
        "reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('max_pool_3x3', 1), "
        "('skip_connect', 2), ('max_pool_3x3', 0), ('skip_connect', 2), ('max_pool_3x3', 1), "
        "('skip_connect', 2)], reduce_concat=range(2, 6))"
    )


def test_cell_graphs_and_a_smaller_multiplier():
    normal, reduce = cell_graphs(_arch(multiplier=2))
    assert (normal.kind, reduce.kind) == ("normal", "reduce")
    assert normal.concat == (4, 5) and normal.steps == 4
    assert sorted((n, s, op) for s, n, op in normal.edges) == sorted(NORMAL)
    assert "normal_concat=range(4, 6)" in darts_genotype(_arch(multiplier=2))


def test_refuses_other_spaces_and_edge_names():
    with pytest.raises(ConfigError, match="'darts' space"):
        darts_genotype(Architecture("resnet", {}, (Choice("all", "c2sp"),)))
    bad = Architecture("darts", {"steps": 4}, (Choice("normal/2-0", "skip_connect"),))
    with pytest.raises(ConfigError, match="normal/2-0"):
        darts_genotype(bad)
