"""The operator contract, run over every registered operator (STYLE.md rule 10)."""

from __future__ import annotations

import math

import pytest
import torch

from convnas.operators import create_operator, list_operators, operator_info

C, H = 8, 9
ALL = list_operators()


def _cases(name):
    info = operator_info(name)
    out = []
    for stride in info.strides:
        out.append((C, C, stride))
        if info.channel_change:
            out.append((C, C + 4, stride))
    return out


CASES = [(name, *case) for name in ALL for case in _cases(name)]


@pytest.mark.parametrize(("name", "cin", "cout", "stride"), CASES)
def test_shapes_finite_and_gradients(name, cin, cout, stride):
    m = create_operator(name, cin, cout, stride)
    x = torch.randn(2, cin, H, H, requires_grad=True)
    y = m(x)
    assert y.shape == (2, cout, math.ceil(H / stride), math.ceil(H / stride))
    assert torch.isfinite(y).all()
    (y * torch.randn_like(y)).sum().backward()
    for pname, p in m.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, f"{name}: parameter {pname} got no gradient"
            assert torch.isfinite(p.grad).all()
            # DARTS, PC-DARTS and AutoDL flatten parameter gradients with .view(-1)
            assert p.is_contiguous() and p.grad.is_contiguous(), f"{name}: {pname}"
            p.grad.view(-1)
    if name != "none":
        assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ALL)
def test_state_dict_round_trip_and_repr(name):
    stride = operator_info(name).strides[0]
    torch.manual_seed(1)
    a = create_operator(name, C, C, stride)
    torch.manual_seed(2)
    b = create_operator(name, C, C, stride)
    b.load_state_dict(a.state_dict())
    a.eval(), b.eval()
    x = torch.randn(2, C, H, H)
    torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)
    assert type(a).__name__ in repr(a)


@pytest.mark.parametrize("name", ALL)
def test_device_and_dtype_arguments(name):
    stride = operator_info(name).strides[0]
    m = create_operator(name, C, C, stride, dtype=torch.float64)
    for t in [*m.parameters(), *m.buffers()]:
        if t.is_floating_point():
            assert t.dtype == torch.float64
    y = m(torch.randn(2, C, H, H, dtype=torch.float64))
    assert y.dtype == torch.float64
    meta = create_operator(name, C, C, stride, device="meta")
    for t in [*meta.parameters(), *meta.buffers()]:
        assert t.device.type == "meta"
    assert meta(torch.empty(2, C, H, H, device="meta")).shape[1] == C


def test_skip_connect_at_stride_1_is_an_nn_identity():
    """Hosts skip drop-path on identity edges by an isinstance test."""
    assert isinstance(create_operator("skip_connect", C, C, 1), torch.nn.Identity)
    assert not isinstance(create_operator("skip_connect", C, C, 2), torch.nn.Identity)


@pytest.mark.parametrize("name", ALL)
def test_gradients_flatten_with_view_as_darts_second_order_does(name):
    """The DARTS architect's idiom: ``torch.cat([g.view(-1) for g in grads])`` after
    ``torch.autograd.grad(loss, params)`` (the issue's DO-Conv report, at 16 channels)."""
    m = create_operator(name, 16, 16, 1)
    params = [p for p in m.parameters() if p.requires_grad]
    if not params:
        pytest.skip(f"{name} has no trainable parameters")
    grads = torch.autograd.grad(m(torch.randn(2, 16, 8, 8)).sum(), params, allow_unused=True)
    torch.cat([g.view(-1) for g in grads if g is not None])
