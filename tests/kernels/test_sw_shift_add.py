"""ShiftwiseConv shift-add op: gather reference vs the strip-conv oracle, opcheck, gradcheck."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from convnas.errors import OperatorArgumentError
from convnas.kernels import (
    register_flop_formulas,
    shift_add,
    strip_conv,
    strip_weights,
    use_kernels,
)
from convnas.kernels.sw_shift_add import shift_add_reference

F64 = torch.float64


def _tables(big, small, edges, rep, perm=True):
    nk = math.ceil(big / small)
    if perm:
        sh = torch.rand(edges, rep, nk).argsort(-1)
        sv = torch.rand(edges, rep, nk).argsort(-1)
    else:
        sh = torch.randint(0, nk, (edges, rep, nk))
        sv = torch.randint(0, nk, (edges, rep, nk))
    return nk, sh, sv, torch.randint(0, nk, (edges, rep))


def _case(big, small, edges, rep=3, size=(6, 7), dtype=F64, perm=True):
    nk, sh, sv, rho = _tables(big, small, edges, rep, perm)
    x = torch.randn(2, rep, *size, dtype=dtype)
    w = torch.randn(rep * nk, 1, small, small, dtype=dtype)
    z = F.conv2d(x, w, padding=small - 1, groups=rep)
    return x, w, z, sh, sv, rho


@pytest.mark.parametrize(
    ("big", "small", "edges"),
    [(13, 3, 2), (11, 3, 2), (9, 3, 4), (7, 3, 1), (15, 5, 2), (49, 3, 1)],
)
def test_gather_equals_strip_depthwise_convs(big, small, edges):
    """OPERATORS.md 4.4: each branch equals one depthwise conv with the assembled kernel."""
    x, w, z, sh, sv, rho = _case(big, small, edges, size=(6, 30) if big == 49 else (6, 7))
    got = shift_add_reference(z, sh, sv, rho, big, small)
    want = strip_conv(x, *strip_weights(w, sh, sv, rho, small), big)
    for a, b in zip(got, want, strict=True):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_strip_kernel_layout_k13():
    """K=13, k=3: nk=5 slots, strip length 15 spanning [-6, +8] (OPERATORS.md 4.4)."""
    _, w, _, sh, sv, rho = _case(13, 3, 2)
    w_h, w_v, w_i = strip_weights(w, sh, sv, rho, 3)
    assert w_h.shape == (3, 1, 3, 15) and w_v.shape == (3, 1, 15, 3) and w_i.shape == (3, 1, 3, 3)
    # every slot of every channel holds the sum of E filters: the total is E * sum of filters
    torch.testing.assert_close(w_h.sum(), 2 * w.sum())
    torch.testing.assert_close(w_v.sum(), 2 * w.sum())


def test_spec_shapes_on_meta():
    """OPERATORS.md 4.10: (2, 80, 56, 56), K=51, R=60 -> Z (2, 1020, 58, 58), Y (2, 60, 56, 56)."""
    nk, sh, sv, rho = _tables(51, 3, 4, 60)
    z = torch.empty(2, 60 * nk, 58, 58, device="meta")
    for flag in (True, False):
        with use_kernels(flag):
            outs = shift_add(z, sh.to("meta"), sv.to("meta"), rho.to("meta"), 51, 3)
        assert nk == 17 and [tuple(y.shape) for y in outs] == [(2, 60, 56, 56)] * 3


@pytest.mark.parametrize("channels_last", [False, True])
def test_opcheck(channels_last):
    _, _, z, sh, sv, rho = _case(13, 3, 2)
    if channels_last:
        z = z.contiguous(memory_format=torch.channels_last)
    torch.library.opcheck(torch.ops.convnas.sw_shift_add, (z.requires_grad_(), sh, sv, rho, 13, 3))
    grads = [torch.randn(2, 3, 6, 7, dtype=F64) for _ in range(3)]
    torch.library.opcheck(torch.ops.convnas.sw_shift_add_backward, (*grads, sh, sv, rho, 13, 3))


@pytest.mark.parametrize("perm", [True, False])
def test_gradcheck_custom_op(perm):
    """The registered backward (scatter form) is the adjoint of the gather forward."""
    _, _, z, sh, sv, rho = _case(7, 3, 2, rep=2, size=(4, 5), perm=perm)
    z = z.detach().requires_grad_()
    assert torch.autograd.gradcheck(
        lambda t: torch.ops.convnas.sw_shift_add(t, sh, sv, rho, 7, 3), (z,)
    )


def test_dispatcher_matches_op_and_counts_no_flops():
    _, _, z, sh, sv, rho = _case(13, 3, 2)
    register_flop_formulas()
    via_op = torch.ops.convnas.sw_shift_add(z.requires_grad_(), sh, sv, rho, 13, 3)
    with FlopCounterMode(display=False) as counter:
        sum(y.sum() for y in torch.ops.convnas.sw_shift_add(z, sh, sv, rho, 13, 3)).backward()
    assert counter.get_total_flops() == 0  # additions only, like the papers' counters
    for a, b in zip(shift_add(z, sh, sv, rho, 13, 3), via_op, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_shape_errors():
    _, _, z, sh, sv, rho = _case(13, 3, 2)
    with pytest.raises(OperatorArgumentError, match="R\\*nk"):
        shift_add(z[:, :-1], sh, sv, rho, 13, 3)
    with pytest.raises(OperatorArgumentError, match="odd"):
        shift_add(z, sh, sv, rho, 13, 4)
    with pytest.raises(OperatorArgumentError, match="nk"):
        shift_add(z, sh, sv, rho, 16, 3)
