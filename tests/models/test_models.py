from __future__ import annotations

import pytest
import torch

from convnas.errors import OperatorArgumentError
from convnas.models import cifar_resnet, resnet_layout


def _count(m):
    return sum(p.numel() for p in m.parameters() if p.requires_grad)


@pytest.mark.parametrize(("depth", "params"), [(20, 269_722), (56, 853_018), (110, 1_727_962)])
def test_cifar_resnet_param_counts_option_a(depth, params):
    assert _count(cifar_resnet(depth)) == params


def test_forward_and_option_b_shortcuts():
    net = cifar_resnet(20, shortcut="B", num_classes=7, in_channels=1)
    assert net(torch.randn(2, 1, 16, 16)).shape == (2, 7)
    # option B adds two 1x1 projections with BN: 16*32 + 64 and 32*64 + 128
    assert _count(net) - _count(cifar_resnet(20, num_classes=7, in_channels=1)) == 576 + 2176


def test_layout_and_bad_depth():
    layout = resnet_layout(20, width_multiplier=2.0)
    assert len(layout) == 18 and layout[0] == (32, 32, 1) and layout[6] == (32, 64, 2)
    with pytest.raises(OperatorArgumentError, match="6n\\+2"):
        resnet_layout(21)
