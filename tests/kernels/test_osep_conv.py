"""osep grouped-conv op: uneven groups and shuffle folded into indexing, vs the explicit chain."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from convnas.errors import OperatorArgumentError
from convnas.kernels import osep_group_conv, register_flop_formulas, use_kernels
from convnas.operators.osep_plan import osep_plan

F64 = torch.float64


def _explicit_layer(x, weight, layer):
    """OPERATORS.md 3.1/3.2 step 7: zero-pad channels, grouped conv, shuffle, drop surplus."""
    g = layer.groups
    x = F.pad(x, (0, 0, 0, 0, 0, g * weight.shape[1] - x.shape[1]))
    y = F.conv2d(x, weight, None, layer.stride, layer.padding, 1, g)
    if layer.shuffle:
        b, c, h, w = y.shape
        y = y.view(b, g, c // g, h, w).transpose(1, 2).reshape(b, c, h, w)
    return y[:, : layer.out_channels]


@pytest.mark.parametrize(
    ("cin", "cout", "kernel", "stride", "spatial", "n_sep"),
    [
        (58, 58, 3, 1, False, 2),
        (10, 10, 3, 2, False, 2),
        (16, 32, 3, 2, True, 2),
        (12, 12, 3, 1, False, 3),
    ],
)
def test_chain_matches_explicit_composition(cin, cout, kernel, stride, spatial, n_sep):
    plan = osep_plan(cin, cout, kernel, n_sep=n_sep, spatial=spatial, stride=stride)
    if (cin, cout) == (58, 58):
        assert plan.groups == (20, 3)  # the OPERATORS.md 3.6 test vector: padded groups
    x = torch.randn(2, cin, 7, 6, dtype=F64)
    ours, ref = x, x
    for layer in plan.layers:
        w = torch.randn(layer.padded_out, layer.in_per_group, *layer.kernel_size, dtype=F64)
        ours = osep_group_conv(
            ours, w, layer.groups, layer.output_index, layer.stride, layer.padding
        )
        ref = _explicit_layer(ref, w, layer)
        assert ours.shape == ref.shape
        torch.testing.assert_close(ours, ref, rtol=0, atol=1e-12)


def _op_args(cin=10, cout=7, groups=4, kernel=(3, 3)):
    n, m = -(-cin // groups), -(-cout // groups)
    in_index = torch.tensor(list(range(cin)) + [-1] * (groups * n - cin))
    out_index = torch.tensor([(t % groups) * m + t // groups for t in range(groups * m)][:cout])
    x = torch.randn(2, cin, 5, 6, dtype=F64)
    w = torch.randn(groups * m, n, *kernel, dtype=F64)
    return x, w, in_index, out_index, groups


@pytest.mark.parametrize(("stride", "channels_last"), [(1, False), (2, True), (2, False)])
def test_opcheck(stride, channels_last):
    x, w, in_index, out_index, groups = _op_args()
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    conf = (groups, [stride, stride], [1, 1])
    torch.library.opcheck(
        torch.ops.convnas.osep_group_conv, (x.requires_grad_(), w, in_index, out_index, *conf)
    )
    g = torch.randn_like(torch.ops.convnas.osep_group_conv(x, w, in_index, out_index, *conf))
    torch.library.opcheck(
        torch.ops.convnas.osep_group_conv_grad_input,
        (g, w, in_index, out_index, *conf, list(x.shape)),
    )
    torch.library.opcheck(
        torch.ops.convnas.osep_group_conv_grad_weight,
        (g, x.detach(), in_index, out_index, *conf, list(w.shape)),
    )


@pytest.mark.parametrize(("stride", "kernel"), [(1, (3, 3)), (2, (3, 1))])
def test_gradcheck(stride, kernel):
    x, w, in_index, out_index, groups = _op_args(kernel=kernel)
    x, w = x[:1, :, :4, :4].clone().requires_grad_(), w.requires_grad_()
    pad = [kernel[0] // 2, kernel[1] // 2]
    assert torch.autograd.gradcheck(
        lambda a, b: torch.ops.convnas.osep_group_conv(
            a, b, in_index, out_index, groups, [stride, stride], pad
        ),
        (x, w),
    )


def test_flops_padded_count():
    """Forward: the padded grouped conv, the same count as aten's for the composition.

    Backward: grad_input + grad_weight, each equal to the forward. (torch's own counter gives a
    grouped ``convolution_backward`` 5x the forward here, so only the forward is compared.)
    """
    register_flop_formulas()
    fwd = 2 * 4 * (12 * 3 * 9) * 4 * 4  # g=4: 10 -> 12 padded inputs, 3 per group
    counts = {}
    for flag in (True, False):
        x = torch.empty(4, 10, 8, 8, device="meta", requires_grad=True)
        w = torch.empty(12, 3, 3, 3, device="meta", requires_grad=True)
        with use_kernels(flag), FlopCounterMode(display=False) as counter:
            y = osep_group_conv(x, w, 4, list(range(10)), stride=2)
        counts[flag] = counter.get_total_flops()
        if flag:
            with FlopCounterMode(display=False) as counter:
                y.sum().backward()
            assert counter.get_total_flops() == 2 * fwd
    assert counts[True] == counts[False] == fwd


def test_bad_arguments_raise():
    x = torch.randn(1, 10, 4, 4)
    with pytest.raises(OperatorArgumentError, match="ceil"):
        osep_group_conv(x, torch.randn(12, 2, 3, 3), 4)
    with pytest.raises(OperatorArgumentError, match="distinct"):
        osep_group_conv(x, torch.randn(12, 3, 3, 3), 4, [0, 0, 1])
