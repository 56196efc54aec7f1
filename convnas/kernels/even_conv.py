"""Custom op for even-kernel convolution with per-group symmetric padding (C2sp / C4sp).

Wu et al., "Convolution with even-sized kernels and symmetric padding", NeurIPS 2019
(OPERATORS.md section 1). The composition pads every channel quarter towards its corner, concats
and runs a VALID conv: one padded copy of the input. The CUDA kernel applies each group's offset
in its addressing instead (``ih = oh*s + a - top_g``, ``iw = ow*s + c - left_g``) and touches
only the ``k x k`` taps; its input and weight gradients do the same. Any stride, NCHW or
channels_last. ``torch.ops.convnas.even_conv2d`` (+ ``_grad_input``, ``_grad_weight``):
CPU/default = the padded composition, CUDA = Triton (float64 on CUDA runs the composition).

FLOP formulas follow ``torch.utils.flop_counter`` (2 FLOPs per MAC, like ``aten.convolution``):
``2*B*C_out*C*k*k*H_out*W_out`` for the forward and for each gradient. Padding adds none.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
import torch.nn.grad
from torch import Tensor

from convnas.errors import OperatorArgumentError
from convnas.kernels._support import (
    cuda_kernel,
    flop_formula,
    memory_format_of,
    route_to_custom_op,
)
from convnas.layers.padding import channel_quarters, even_kernel_group_pads, pair

__all__ = ["even_conv2d", "even_conv2d_reference", "quarter_group_pads"]

GroupPads = Sequence[tuple[int, int, tuple[int, int, int, int]]]


def quarter_group_pads(channels: int, kernel_size: int) -> tuple:
    """The C2sp/C4sp layout ``((start, stop, (left, right, top, bottom)), ...)`` of 4 quarters."""
    out, start = [], 0
    counts, all_pads = channel_quarters(channels), even_kernel_group_pads(kernel_size)
    for count, pads in zip(counts, all_pads, strict=True):
        out.append((start, start + count, pads))
        start += count
    return tuple(out)


def _out_hw(h: int, w: int, k: tuple[int, int], pads: list[int], stride: list[int]):
    return (h + pads[2] + pads[3] - k[0]) // stride[0] + 1, (
        w + pads[0] + pads[1] - k[1]
    ) // stride[1] + 1


def _pad_groups(x: Tensor, sizes: list[int], pads: list[int]) -> Tensor:
    parts, start = [], 0
    for i, n in enumerate(sizes):
        if n:
            parts.append(F.pad(x[:, start : start + n], pads[4 * i : 4 * i + 4]))
        start += n
    return parts[0] if len(parts) == 1 else torch.cat(parts, 1)


def even_conv2d_reference(
    x: Tensor, weight: Tensor, sizes: list[int], pads: list[int], stride: list[int]
) -> Tensor:
    """The composition: pad each channel group (``F.pad`` order l, r, t, b), then a VALID conv."""
    y = F.conv2d(_pad_groups(x, sizes, pads), weight, None, stride)
    return y.contiguous(memory_format=memory_format_of(x))


@torch.library.custom_op("convnas::even_conv2d", mutates_args=())
def _even_op(
    x: Tensor, weight: Tensor, sizes: list[int], pads: list[int], stride: list[int]
) -> Tensor:
    return even_conv2d_reference(x, weight, sizes, pads, stride)


def _grad_input_reference(grad, weight, sizes, pads, stride, hw):
    c = sum(sizes)
    padded = (grad.shape[0], c, hw[0] + pads[2] + pads[3], hw[1] + pads[0] + pads[1])
    gp = torch.nn.grad.conv2d_input(padded, weight, grad, stride)
    parts, start = [], 0
    for i, n in enumerate(sizes):
        left, _, top, _ = pads[4 * i : 4 * i + 4]
        parts.append(gp[:, start : start + n, top : top + hw[0], left : left + hw[1]])
        start += n
    return torch.cat(parts, 1).contiguous(memory_format=memory_format_of(grad))


def _grad_weight_reference(grad, x, sizes, pads, stride, k):
    shape = (grad.shape[1], x.shape[1], k[0], k[1])
    return torch.nn.grad.conv2d_weight(
        _pad_groups(x, sizes, pads), shape, grad, stride
    ).contiguous()


@torch.library.custom_op("convnas::even_conv2d_grad_input", mutates_args=())
def _even_gi_op(
    grad: Tensor,
    weight: Tensor,
    sizes: list[int],
    pads: list[int],
    stride: list[int],
    hw: list[int],
) -> Tensor:
    return _grad_input_reference(grad, weight, sizes, pads, stride, hw)


@torch.library.custom_op("convnas::even_conv2d_grad_weight", mutates_args=())
def _even_gw_op(
    grad: Tensor, x: Tensor, sizes: list[int], pads: list[int], stride: list[int], k: list[int]
) -> Tensor:
    return _grad_weight_reference(grad, x, sizes, pads, stride, k)


@_even_op.register_fake
def _(x, weight, sizes, pads, stride):
    ho, wo = _out_hw(x.shape[2], x.shape[3], tuple(weight.shape[2:]), pads, stride)
    shape = (x.shape[0], weight.shape[0], ho, wo)
    return x.new_empty(shape).contiguous(memory_format=memory_format_of(x))


@_even_gi_op.register_fake
def _(grad, weight, sizes, pads, stride, hw):
    shape = (grad.shape[0], weight.shape[1], hw[0], hw[1])
    return grad.new_empty(shape).contiguous(memory_format=memory_format_of(grad))


@_even_gw_op.register_fake
def _(grad, x, sizes, pads, stride, k):
    return grad.new_empty((grad.shape[1], x.shape[1], k[0], k[1]))


@functools.lru_cache(maxsize=64)
def _tables(sizes: tuple, pads: tuple, cout: int, device: torch.device):
    """Kernel tables (cached per layout): identity channels, per-channel offsets, segments."""
    off_h, off_w, segments, start = [], [], [], 0
    for i, n in enumerate(sizes):
        left, _, top, _ = pads[4 * i : 4 * i + 4]
        off_h += [-top] * n
        off_w += [-left] * n
        segments.append((start, start + n, -top, -left))
        start += n

    def t(v):
        return torch.tensor(v, dtype=torch.int32, device=device)

    ident = t(list(range(start)))
    return ident, t(off_h), t(off_w), t(list(range(cout))), tuple(segments)


def _triton_forward(x, weight, sizes, pads, stride):
    from convnas.kernels._triton_conv import conv_forward

    ident, oh, ow, slots, _ = _tables(tuple(sizes), tuple(pads), weight.shape[0], x.device)
    hw = _out_hw(x.shape[2], x.shape[3], tuple(weight.shape[2:]), pads, stride)
    fmt = memory_format_of(x)
    return conv_forward(x, weight, ident, oh, ow, slots, 1, weight.shape[0], hw, stride, fmt)


def _triton_grad_input(grad, weight, sizes, pads, stride, hw):
    from convnas.kernels._triton_conv import conv_dgrad

    ident, _, _, slots, segs = _tables(tuple(sizes), tuple(pads), weight.shape[0], grad.device)
    shape = (grad.shape[0], weight.shape[1], hw[0], hw[1])
    return conv_dgrad(grad, weight, ident, slots, 1, shape, stride, segs, memory_format_of(grad))


def _triton_grad_weight(grad, x, sizes, pads, stride, k):
    from convnas.kernels._triton_conv import conv_wgrad

    ident, oh, ow, slots, _ = _tables(tuple(sizes), tuple(pads), grad.shape[1], x.device)
    shape = (grad.shape[1], x.shape[1], k[0], k[1])
    return conv_wgrad(grad, x, shape, ident, oh, ow, slots, 1, stride)


for _name, _tri, _ref in (
    ("even_conv2d", _triton_forward, even_conv2d_reference),
    ("even_conv2d_grad_input", _triton_grad_input, _grad_input_reference),
    ("even_conv2d_grad_weight", _triton_grad_weight, _grad_weight_reference),
):
    torch.library.register_kernel(f"convnas::{_name}", "cuda")(cuda_kernel(_tri, _ref, 2))


def _setup(ctx, inputs, output):
    x, weight, sizes, pads, stride = inputs
    ctx.save_for_backward(x, weight)
    ctx.layout = (sizes, pads, stride)


def _backward(ctx, grad):
    x, weight = ctx.saved_tensors
    sizes, pads, stride = ctx.layout
    gx = gw = None
    if ctx.needs_input_grad[0]:
        hw = list(x.shape[2:])
        gx = torch.ops.convnas.even_conv2d_grad_input(grad, weight, sizes, pads, stride, hw)
    if ctx.needs_input_grad[1]:
        k = list(weight.shape[2:])
        gw = torch.ops.convnas.even_conv2d_grad_weight(grad, x, sizes, pads, stride, k)
    return gx, gw, None, None, None


_even_op.register_autograd(_backward, setup_context=_setup)


def _flops(b: int, cout: int, cin: int, k: Sequence[int], out_hw: Sequence[int]) -> int:
    return 2 * b * cout * cin * k[0] * k[1] * out_hw[0] * out_hw[1]


@flop_formula(torch.ops.convnas.even_conv2d)
def _(x_shape, w_shape, *args, out_shape=None, **kwargs) -> int:
    return _flops(x_shape[0], w_shape[0], w_shape[1], w_shape[2:], out_shape[2:])


@flop_formula(torch.ops.convnas.even_conv2d_grad_input)
def _(g_shape, w_shape, *args, out_shape=None, **kwargs) -> int:
    return _flops(g_shape[0], w_shape[0], w_shape[1], w_shape[2:], g_shape[2:])


@flop_formula(torch.ops.convnas.even_conv2d_grad_weight)
def _(g_shape, x_shape, *args, out_shape=None, **kwargs) -> int:
    return _flops(g_shape[0], g_shape[1], x_shape[1], out_shape[2:], g_shape[2:])


def _check_layout(channels: int, kernel: int, group_pads: GroupPads) -> tuple[list[int], list[int]]:
    sizes: list[int] = []
    pads: list[int] = []
    start = 0
    for a, b, p in group_pads:
        if a != start or b < a or len(p) != 4:
            raise OperatorArgumentError(
                "group_pads must be contiguous (start, stop, (left, right, top, bottom)) "
                f"groups from channel 0, but got {tuple(group_pads)!r}"
            )
        sizes.append(b - a)
        pads.extend(int(v) for v in p)
        start = b
    totals = {(pads[i] + pads[i + 1], pads[i + 2] + pads[i + 3]) for i in range(0, len(pads), 4)}
    if start != channels or len(totals) != 1:
        raise OperatorArgumentError(
            f"group_pads must cover the {channels} input channels with equal pad totals per "
            f"axis, but got {tuple(group_pads)!r} (kernel {kernel})"
        )
    return sizes, pads


def even_conv2d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: int | tuple[int, int] = 1,
    group_pads: GroupPads | None = None,
) -> Tensor:
    """Even-kernel conv with per-group padding; the custom kernel on CUDA, else the composition.

    Contract: ``input (B, C, H, W)`` and ``weight (C_out, C, k, k)`` of one floating dtype and
    device, NCHW or channels_last. ``group_pads`` lists ``(start, stop, (left, right, top,
    bottom))`` per contiguous channel group (``EvenConv2d.group_pads()``; default: the four
    C2sp/C4sp quarters of :func:`quarter_group_pads`); every group must have the same pad total
    per axis. Output ``(B, C_out, (H+t+b-k)//s + 1, (W+l+r-k)//s + 1)`` (= ``ceil(H/s)`` for the
    symmetric layout) in the input's memory format, plus ``bias`` when given. Differentiable in
    ``input`` and ``weight``. The custom op runs when kernels are on
    (:func:`convnas.kernels.kernels_enabled`) and the input is on CUDA or ``meta``.
    """
    k = int(weight.shape[-1])
    if weight.dim() != 4 or weight.shape[1] != input.shape[1] or weight.shape[2] != k:
        raise OperatorArgumentError(
            "weight must be (C_out, C, k, k) with C the input channels, but got "
            f"weight {tuple(weight.shape)} for input {tuple(input.shape)}"
        )
    layout = quarter_group_pads(input.shape[1], k) if group_pads is None else group_pads
    sizes, pads = _check_layout(input.shape[1], k, layout)
    s = list(pair(stride, "stride"))
    if route_to_custom_op(input):
        y = torch.ops.convnas.even_conv2d(input, weight, sizes, pads, s)
    else:
        y = even_conv2d_reference(input, weight, sizes, pads, s)
    return y if bias is None else y + bias.view(1, -1, 1, 1)
