"""Every decision's recorded sites are the shapes its MixedOps really see: the cost tables (and
so the MACs/memory penalties) price each candidate where it runs."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from convnas.search_space import MixedOp, get_space

SPACES = [
    (
        "darts",
        {
            "channels": 4,
            "layers": 3,
            "steps": 2,
            "multiplier": 2,
            "candidates": ["skip_connect", "conv_3x3"],
        },
    ),
    (
        "darts",
        {
            "channels": 4,
            "layers": 5,
            "steps": 3,
            "multiplier": 3,
            "candidates": ["max_pool_3x3", "c2sp"],
        },
    ),
    (
        "resnet",
        {
            "depth": 8,
            "widths": [4, 8, 16],
            "granularity": "layer",
            "candidates": ["conv_3x3", "c2sp"],
        },
    ),
    (
        "resnet",
        {
            "depth": 14,
            "widths": [4, 8, 16],
            "granularity": "block",
            "candidates": ["conv_3x3", "osep_3x3"],
        },
    ),
]


@pytest.mark.parametrize("name, settings", SPACES, ids=lambda v: str(v)[:40])
@pytest.mark.parametrize("hw", [(16, 16), (15, 13)])
def test_recorded_sites_equal_the_shapes_a_forward_hook_sees(name, settings, hw):
    space = get_space(name, input_shape=[3, *hw], num_classes=10, **settings)
    supernet = space.build_supernet("weighted")
    seen: dict[str, Counter] = {}

    def hook(module, args):
        x = args[0]
        seen.setdefault(module.decision, Counter())[(x.shape[1], *x.shape[2:])] += 1

    for m in supernet.modules():
        if isinstance(m, MixedOp):
            m.register_forward_pre_hook(hook)
    with torch.no_grad():
        supernet(torch.zeros(2, 3, *hw))
    recorded = {
        d.name: Counter((s.in_channels, *s.input_hw) for s in d.sites)
        for d in space.decisions()
        if d.sites
    }
    assert recorded == seen
