"""Every operator at 1..7 channels: works with the right shape, or refuses clearly."""

from __future__ import annotations

import pytest
import torch

from convnas import list_operators, operator_info
from convnas.errors import ConvNASError, OperatorArgumentError
from convnas.integrations import darts, nasbench201
from convnas.operators import create_operator

CHANNELS = range(1, 8)
CASES = [
    (name, c, s) for name in list_operators() for s in operator_info(name).strides for c in CHANNELS
]


def _check(build, c: int, stride: int, *, error=OperatorArgumentError) -> None:
    try:
        module = build()
    except error as exc:
        assert str(c) in str(exc)
        return
    x = torch.randn(2, c, 9, 9, requires_grad=True)
    y = module(x)
    assert tuple(y.shape) == (2, c, -(-9 // stride), -(-9 // stride))
    if y.requires_grad:
        y.square().sum().backward()
        if x.grad is not None:
            assert torch.isfinite(x.grad).all()
        for p in module.parameters():
            if p.grad is not None:
                assert torch.isfinite(p.grad).all()


@pytest.mark.parametrize(("name", "c", "stride"), CASES)
def test_registry(name: str, c: int, stride: int) -> None:
    _check(lambda: create_operator(name, c, c, stride), c, stride)


@pytest.mark.parametrize(("name", "c", "stride"), CASES)
def test_darts_ops(name: str, c: int, stride: int) -> None:
    table = darts.ops()
    if name not in table:
        pytest.skip("not in the DARTS table")
    _check(lambda: table[name](c, stride, True), c, stride, error=ConvNASError)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("c", CHANNELS)
@pytest.mark.parametrize("name", sorted(nasbench201.ops()))
def test_nasbench201_ops(name: str, c: int, stride: int) -> None:
    factory = nasbench201.ops()[name]
    _check(lambda: factory(c, c, stride, True, True), c, stride, error=ConvNASError)


def test_factorized_reduce_one_channel() -> None:
    module = create_operator("skip_connect", 1, 1, 2)
    assert module(torch.randn(1, 1, 5, 5)).shape == (1, 1, 3, 3)
