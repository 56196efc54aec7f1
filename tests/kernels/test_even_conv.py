"""Even-kernel conv op (C2sp/C4sp): closed form, the all-ones reference, opcheck, gradcheck."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from convnas.errors import OperatorArgumentError
from convnas.kernels import even_conv2d, register_flop_formulas, use_kernels
from convnas.kernels.even_conv import quarter_group_pads

F64 = torch.float64


def _closed_form(x, w, stride):
    """OPERATORS.md 1.1: Y[o,p] = sum_c,a,b W[o,c,a,b] X[c, p*s + (a,b) - (t, l) of c's group]."""
    b, c, h, wd = x.shape
    k = w.shape[-1]
    offsets = []
    for start, stop, (left, _, top, _) in quarter_group_pads(c, k):
        offsets += [(top, left)] * (stop - start)
    ho, wo = -(-h // stride), -(-wd // stride)
    y = torch.zeros(b, w.shape[0], ho, wo, dtype=x.dtype)
    for ch in range(c):
        top, left = offsets[ch]
        for i in range(ho):
            for j in range(wo):
                for a in range(k):
                    for bb in range(k):
                        r, q = i * stride + a - top, j * stride + bb - left
                        if 0 <= r < h and 0 <= q < wd:
                            y[:, :, i, j] += w[:, ch, a, bb] * x[:, ch, r, q].unsqueeze(1)
    return y


def _layout(c, k):
    groups = quarter_group_pads(c, k)
    return [b - a for a, b, _ in groups], [p for g in groups for p in g[2]]


@pytest.mark.parametrize(("channels", "k", "stride"), [(5, 2, 1), (6, 2, 2), (7, 4, 1), (4, 4, 2)])
def test_matches_closed_form(channels, k, stride):
    x = torch.randn(2, channels, 5, 6, dtype=F64)
    w = torch.randn(3, channels, k, k, dtype=F64)
    want = _closed_form(x, w, stride)
    torch.testing.assert_close(even_conv2d(x, w, stride=stride), want, rtol=0, atol=1e-12)
    sizes, pads = _layout(channels, k)
    got = torch.ops.convnas.even_conv2d(x, w, sizes, pads, [stride, stride])
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("m", [1, 3])
def test_all_ones_reference_numbers(m):
    """OPERATORS.md 1.5: C = 4m, all ones -> corners 9m, interior 16m, flip invariant."""
    x = torch.ones(1, 4 * m, 6, 6, dtype=F64)
    w = torch.ones(1, 4 * m, 2, 2, dtype=F64)
    sizes, pads = _layout(4 * m, 2)
    y = torch.ops.convnas.even_conv2d(x, w, sizes, pads, [1, 1])[0, 0]
    assert y[0, 0] == y[0, -1] == y[-1, 0] == y[-1, -1] == 9 * m
    assert y[2, 3] == 16 * m
    assert torch.equal(y, y.flip(0)) and torch.equal(y, y.flip(1))


def test_agrees_with_operator_module():
    from convnas.operators.even_kernels import even_conv2d as module_even_conv2d

    x, w = torch.randn(2, 9, 7, 7, dtype=F64), torch.randn(4, 9, 4, 4, dtype=F64)
    for stride in (1, 2):
        want = module_even_conv2d(x, w, None, stride)
        torch.testing.assert_close(even_conv2d(x, w, stride=stride), want, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    ("k", "stride", "channels_last"), [(2, 1, False), (2, 2, True), (4, 2, False)]
)
def test_opcheck(k, stride, channels_last):
    x = torch.randn(2, 6, 5, 6, dtype=F64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    w = torch.randn(3, 6, k, k, dtype=F64)
    sizes, pads, s = *_layout(6, k), [stride, stride]
    torch.library.opcheck(torch.ops.convnas.even_conv2d, (x.requires_grad_(), w, sizes, pads, s))
    y = torch.ops.convnas.even_conv2d(x, w, sizes, pads, s)
    g = torch.randn_like(y)
    torch.library.opcheck(torch.ops.convnas.even_conv2d_grad_input, (g, w, sizes, pads, s, [5, 6]))
    torch.library.opcheck(
        torch.ops.convnas.even_conv2d_grad_weight, (g, x.detach(), sizes, pads, s, [k, k])
    )


@pytest.mark.parametrize(("k", "stride"), [(2, 1), (2, 2), (4, 2)])
def test_gradcheck(k, stride):
    x = torch.randn(1, 5, 4, 5, dtype=F64, requires_grad=True)
    w = torch.randn(2, 5, k, k, dtype=F64, requires_grad=True)
    sizes, pads = _layout(5, k)
    assert torch.autograd.gradcheck(
        lambda a, b: torch.ops.convnas.even_conv2d(a, b, sizes, pads, [stride, stride]), (x, w)
    )


def test_flops_same_with_kernels_on_and_off():
    """On meta the op's formula and aten's conv count agree: 2*B*C_out*C*k*k*H_out*W_out."""
    register_flop_formulas()
    totals = []
    for flag in (True, False):
        x = torch.empty(4, 8, 9, 9, device="meta", requires_grad=True)
        w = torch.empty(16, 8, 2, 2, device="meta", requires_grad=True)
        with use_kernels(flag), FlopCounterMode(display=False) as counter:
            even_conv2d(x, w, stride=2).sum().backward()
        totals.append(counter.get_total_flops())
    assert totals[0] == totals[1] == 3 * 2 * 4 * 16 * 8 * 4 * 5 * 5


def test_bad_layout_raises():
    x, w = torch.randn(1, 4, 3, 3), torch.randn(2, 4, 2, 2)
    with pytest.raises(OperatorArgumentError, match="cover the 4"):
        even_conv2d(x, w, group_pads=[(0, 3, (0, 1, 0, 1))])
    with pytest.raises(OperatorArgumentError, match="equal pad totals"):
        even_conv2d(x, w, group_pads=[(0, 2, (0, 1, 0, 1)), (2, 4, (0, 0, 1, 1))])
    with pytest.raises(OperatorArgumentError, match="C_out, C, k, k"):
        even_conv2d(x, torch.randn(2, 3, 2, 2))
