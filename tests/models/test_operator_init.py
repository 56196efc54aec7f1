"""An operator starts the same standalone and inside every reference network: the networks
initialise only the layers they create themselves (stem, shortcuts, BN, classifier), so an
operator comparison is not confounded by a network re-initialising some operators' convs."""

from __future__ import annotations

import pytest
import torch

import convnas
from convnas.models import cifar_resnet
from convnas.search_space import get_space

# Conv operators that can serve a 32 -> 32, stride-1 position with their default settings.
CONV_OPS = [
    name
    for name in convnas.list_operators(kind="conv")
    if name not in ("csg_conv_3x3",)  # its kernels come from the network's shared generator
]
MIN_NUMEL = 512  # the std of fewer random draws is too noisy to compare


def _stats(module: torch.nn.Module) -> dict[str, tuple[int, float, float]]:
    return {
        name: (p.numel(), float(p.detach().std()), float(p.detach().mean()))
        for name, p in module.named_parameters()
    }


def _assert_same_start(standalone: dict, inside: dict, where: str) -> None:
    assert standalone.keys() == inside.keys(), where
    for name, (numel, std, mean) in standalone.items():
        numel_in, std_in, mean_in = inside[name]
        assert numel == numel_in, (where, name)
        if std == 0.0:  # deterministic start (identity, zeros, ones)
            assert (std_in, mean_in) == (0.0, mean), (where, name)
        elif numel >= MIN_NUMEL:
            assert std_in == pytest.approx(std, rel=0.1), (where, name, std, std_in)


@pytest.mark.parametrize("op", CONV_OPS)
def test_operator_starts_the_same_inside_the_cifar_resnet(op):
    if 2 not in convnas.operator_info(op).strides:
        pytest.skip(f"{op} cannot fill a whole ResNet (no stride 2); the space test covers it")
    g = torch.Generator().manual_seed(0)
    with torch.random.fork_rng():
        torch.manual_seed(int(torch.randint(2**31, (1,), generator=g)))
        standalone = _stats(convnas.create_operator(op, 32, 32, 1))
        net = cifar_resnet(8, op, widths=(32, 32, 32))
    conv = net.blocks[0].conv2  # a 32 -> 32, stride-1 position
    _assert_same_start(standalone, _stats(conv), f"{op} in cifar_resnet")


@pytest.mark.parametrize("op", CONV_OPS)
def test_operator_starts_the_same_inside_the_resnet_space_model(op):
    space = get_space(
        "resnet",
        candidates=list(dict.fromkeys([op, "conv_3x3"])),  # conv_3x3 where op cannot serve
        depth=8,
        widths=[32, 32, 32],
        num_classes=10,
        input_shape=[3, 8, 8],
    )
    with torch.random.fork_rng():
        torch.manual_seed(1)
        standalone = _stats(convnas.create_operator(op, 32, 32, 1))
        model = space.build_model(space.architecture([0] * len(space.decisions())))
    _assert_same_start(standalone, _stats(model.blocks[0].conv2), f"{op} in the resnet space")
