"""TorchScript: scripted == eager for every scriptable operator; a reason for the rest."""

from __future__ import annotations

import pytest
import torch

from convnas import list_operators, operator_info
from convnas.operators import create_operator

SCRIPTABLE = [
    (n, s)
    for n in list_operators()
    if operator_info(n).scriptable
    for s in operator_info(n).strides
]


@pytest.mark.parametrize(("name", "stride"), SCRIPTABLE)
@pytest.mark.parametrize("size", [8, 9])
def test_scripted_matches_eager(name: str, stride: int, size: int) -> None:
    torch.manual_seed(0)
    module = create_operator(name, 8, 8, stride).eval()
    scripted = torch.jit.script(module)
    x = torch.randn(2, 8, size, size)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), module(x), atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", list_operators())
def test_unscriptable_has_reason(name: str) -> None:
    info = operator_info(name)
    assert info.scriptable or info.script_note.strip()
    assert info.to_dict()["scriptable"] == info.scriptable


def test_small_channel_factorized_reduce_scripts() -> None:
    module = create_operator("skip_connect", 1, 1, 2).eval()
    x = torch.randn(1, 1, 5, 5)
    torch.testing.assert_close(torch.jit.script(module)(x), module(x), atol=1e-6, rtol=0)
