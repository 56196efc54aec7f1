"""The default CSG generator is sized for the network it serves (issue: CSG never reached a
low-params front because its paper-sized generator outweighed a whole ResNet-8)."""

from __future__ import annotations

import math
import pathlib

import pytest

from convnas.operators.csg import GENERATOR_SIZES, generator_for
from convnas.run.config import build_space, load_config
from convnas.search_space import Architecture, build_model
from convnas.search_space.architecture import Choice

CONFIGS = pathlib.Path(__file__).resolve().parents[2] / "configs"
INPUT = {"digits": (1, 8, 8), "cifar10": (3, 32, 32), "fashion_mnist": (1, 28, 28)}


def _params(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_resnet56_gets_the_papers_generator():
    # 3x3 weights of ResNet-56 less the stem: 853,018 - 5,146 (OPERATORS.md 5.5).
    assert generator_for(847_872) == ((16, 16, 3, 3), 128)
    assert generator_for(73_728) == ((8, 8, 3, 3), 32)  # ResNet-8, widths 16/32/64
    assert generator_for(1) == GENERATOR_SIZES[-1]


def _uniform(space, op_of):
    choices = []
    for d in space.decisions():
        if d.sites:
            cand = op_of(d)
            choices.append(Choice(d.name, cand.op, dict(cand.hparams)))
    return Architecture(space.name, space.settings(), tuple(choices))


@pytest.mark.parametrize(
    "path", sorted(p for p in CONFIGS.glob("*.yaml") if "csg_conv_3x3" in p.read_text())
)
def test_csg_networks_are_lighter_than_their_plain_counterparts(path):
    config = load_config(path)
    space = build_space(config, input_shape=INPUT[config.data.dataset], num_classes=10)
    csg = next(c for c in space.candidates if c.op == "csg_conv_3x3")
    plain = next(c for c in space.candidates if c.op == "conv_3x3")
    with_csg = build_model(
        _uniform(space, lambda d: csg if csg in d.candidates else d.candidates[0])
    )
    without = build_model(
        _uniform(space, lambda d: plain if csg in d.candidates else d.candidates[0])
    )
    assert _params(with_csg) < _params(without), (path.name, csg.hparams)
    # The size chosen is written into the candidate (architecture files record it).
    assert math.prod(csg.hparams["slice_shape"]) * csg.hparams["code_size"] > 0


def test_an_explicit_generator_is_kept():
    from convnas.search_space import get_space

    space = get_space(
        "resnet",
        candidates=[{"op": "csg_conv_3x3", "hparams": {"code_size": 128}}],
        depth=8,
        input_shape=[3, 8, 8],
    )
    assert dict(space.candidates[0].hparams) == {"code_size": 128}
