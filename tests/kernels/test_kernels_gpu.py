"""CUDA checks (marker ``gpu``): every Triton kernel against the float64 reference.

The kernel's error must be at most twice that of the PyTorch composition run at the same
precision on the same device (plus a tiny absolute floor for exactly-representable cases).
"""

from __future__ import annotations

import math

import pytest
import torch

from convnas.kernels import even_conv as ev
from convnas.kernels import osep_conv as oc
from convnas.kernels import sw_shift_add as sw

pytestmark = pytest.mark.gpu
DTYPES = [torch.float32, torch.bfloat16]


def _err(got, ref):
    return float((got.double() - ref.double()).abs().max())


def _assert_within(kernel_outs, comp_outs, refs):
    for got, comp, ref in zip(kernel_outs, comp_outs, refs, strict=True):
        floor = 1e-6 * max(1.0, float(ref.abs().max()))
        assert _err(got, ref) <= 2 * _err(comp, ref) + floor


def _fmt(t, cl):
    return t.contiguous(memory_format=torch.channels_last) if cl else t.contiguous()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cl", [False, True])
def test_sw_shift_add(dtype, cl):
    big, small, edges, rep = 13, 3, 4, 16
    nk = math.ceil(big / small)
    dev = "cuda"
    sh = torch.rand(edges, rep, nk, device=dev).argsort(-1)
    sv = torch.rand(edges, rep, nk, device=dev).argsort(-1)
    rho = torch.randint(0, nk, (edges, rep), device=dev)
    z64 = torch.randn(4, rep * nk, 34, 34, device=dev, dtype=torch.float64)
    g64 = [torch.randn(4, rep, 32, 32, device=dev, dtype=torch.float64) for _ in range(3)]
    z, gs = _fmt(z64.to(dtype), cl), [_fmt(g.to(dtype), cl) for g in g64]
    refs = sw.shift_add_reference(z64, sh, sv, rho, big, small)
    comp = sw.shift_add_reference(z, sh, sv, rho, big, small)
    _assert_within(torch.ops.convnas.sw_shift_add(z, sh, sv, rho, big, small), comp, refs)
    gref = sw._backward_reference(*g64, sh, sv, rho, big, small)
    gcomp = sw._backward_reference(*gs, sh, sv, rho, big, small)
    got = torch.ops.convnas.sw_shift_add_backward(*gs, sh, sv, rho, big, small)
    _assert_within([got], [gcomp], [gref])


def _conv_checks(op, gi_op, gw_op, refs_fns, x64, w64, args, gi_tail, gw_tail, dtype, cl):
    fwd_ref, gi_ref, gw_ref = refs_fns
    y64 = fwd_ref(x64, w64, *args)
    g64 = torch.randn_like(y64)
    x, w, g = _fmt(x64.to(dtype), cl), w64.to(dtype), _fmt(g64.to(dtype), cl)
    _assert_within([op(x, w, *args)], [fwd_ref(x, w, *args)], [y64])
    _assert_within(
        [gi_op(g, w, *args, *gi_tail)],
        [gi_ref(g, w, *args, *gi_tail)],
        [gi_ref(g64, w64, *args, *gi_tail)],
    )
    _assert_within(
        [gw_op(g, x, *args, *gw_tail)],
        [gw_ref(g, x, *args, *gw_tail)],
        [gw_ref(g64, x64, *args, *gw_tail)],
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cl", [False, True])
@pytest.mark.parametrize(("k", "stride"), [(2, 1), (2, 2), (4, 1)])
def test_even_conv(dtype, cl, k, stride):
    groups = ev.quarter_group_pads(66, k)
    sizes, pads = [b - a for a, b, _ in groups], [p for grp in groups for p in grp[2]]
    x64 = torch.randn(8, 66, 17, 16, device="cuda", dtype=torch.float64)
    w64 = torch.randn(48, 66, k, k, device="cuda", dtype=torch.float64)
    ops = torch.ops.convnas
    _conv_checks(
        ops.even_conv2d,
        ops.even_conv2d_grad_input,
        ops.even_conv2d_grad_weight,
        (ev.even_conv2d_reference, ev._grad_input_reference, ev._grad_weight_reference),
        x64, w64, (sizes, pads, [stride, stride]), ([17, 16],), ([k, k],), dtype, cl,
    )  # fmt: skip


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cl", [False, True])
@pytest.mark.parametrize(("cin", "cout", "groups", "stride"), [(58, 58, 20, 1), (58, 116, 15, 2)])
def test_osep_group_conv(dtype, cl, cin, cout, groups, stride):
    n, m = -(-cin // groups), -(-cout // groups)
    dev = "cuda"
    in_index = torch.tensor(list(range(cin)) + [-1] * (groups * n - cin), device=dev)
    order = [(t % groups) * m + t // groups for t in range(groups * m)][:cout]
    out_index = torch.tensor(order, device=dev)
    x64 = torch.randn(8, cin, 16, 16, device=dev, dtype=torch.float64)
    w64 = torch.randn(groups * m, n, 3, 3, device=dev, dtype=torch.float64)
    ops = torch.ops.convnas
    args = (in_index, out_index, groups, [stride, stride], [1, 1])
    _conv_checks(
        ops.osep_group_conv,
        ops.osep_group_conv_grad_input,
        ops.osep_group_conv_grad_weight,
        (oc.osep_group_conv_reference, oc._grad_input_reference, oc._grad_weight_reference),
        x64, w64, args, ([8, cin, 16, 16],), (list(w64.shape),), dtype, cl,
    )  # fmt: skip
