"""Custom op for one osep grouped conv with uneven groups and the channel shuffle in its indexing.

Wei et al., "Optimized separable convolution" (ICLR'22 submission; OPERATORS.md section 3).
The composition zero-pads the input channels to ``g*ceil(C_in/g)``, runs the grouped conv into
``g*ceil(C_out/g)`` channels, channel-shuffles and drops the surplus: two extra tensor copies,
the cost the paper's Appendix E blames for a 2x slowdown. Here the padded input channels are
index ``-1`` (read as zero, never stored) and the shuffle-and-drop is the output gather
``y[:, t] = conv(x)[:, out_index[t]]`` (``OSepLayer.output_index`` of the planner), applied by
the kernel as the channel it stores to. ``torch.ops.convnas.osep_group_conv`` (+ ``_grad_input``,
``_grad_weight``): CPU/default = the composition, CUDA = Triton (float64 on CUDA runs the
composition).

FLOP formulas count as ``aten.convolution`` does for the padded grouped conv of the composition
(2 FLOPs per MAC, ``2*B*(g*M)*N*kh*kw*H_out*W_out``), i.e. the padded counting of OPERATORS.md
section 3.2 step 7, so the cost model gives the same number with kernels on or off.
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
from convnas.layers.padding import pair

__all__ = ["osep_group_conv", "osep_group_conv_reference"]


def _gather_in(x: Tensor, in_index: Tensor) -> Tensor:
    """The padded logical input: channel ``p`` is ``x[:, in_index[p]]``, zero where -1."""
    ext = torch.cat([x, x.new_zeros(x.shape[0], 1, *x.shape[2:])], 1)
    return ext.index_select(1, torch.where(in_index < 0, x.shape[1], in_index))


def _scatter_out(grad: Tensor, out_index: Tensor, channels: int) -> Tensor:
    """Adjoint of the output gather: ``(B, channels, ...)`` with ``grad[:, t]`` added at slot."""
    full = grad.new_zeros(grad.shape[0], channels, *grad.shape[2:])
    return full.index_add(1, out_index, grad)


def osep_group_conv_reference(
    x: Tensor,
    weight: Tensor,
    in_index: Tensor,
    out_index: Tensor,
    groups: int,
    stride: list[int],
    padding: list[int],
) -> Tensor:
    """The composition: gather/pad input channels, grouped conv, gather the kept outputs."""
    full = F.conv2d(_gather_in(x, in_index), weight, None, stride, padding, 1, groups)
    return full.index_select(1, out_index).contiguous(memory_format=memory_format_of(x))


def _grad_input_reference(grad, weight, in_index, out_index, groups, stride, padding, x_shape):
    gfull = _scatter_out(grad, out_index, weight.shape[0])
    shape = (x_shape[0], in_index.shape[0], x_shape[2], x_shape[3])
    gxp = torch.nn.grad.conv2d_input(shape, weight, gfull, stride, padding, 1, groups)
    gx = grad.new_zeros(x_shape[0], x_shape[1] + 1, x_shape[2], x_shape[3])
    gx = gx.index_add(1, torch.where(in_index < 0, x_shape[1], in_index), gxp)[:, : x_shape[1]]
    return gx.contiguous(memory_format=memory_format_of(grad))


def _grad_weight_reference(grad, x, in_index, out_index, groups, stride, padding, w_shape):
    gfull = _scatter_out(grad, out_index, w_shape[0])
    xp = _gather_in(x, in_index)
    return torch.nn.grad.conv2d_weight(xp, w_shape, gfull, stride, padding, 1, groups).contiguous()


@torch.library.custom_op("convnas::osep_group_conv", mutates_args=())
def _op(
    x: Tensor,
    weight: Tensor,
    in_index: Tensor,
    out_index: Tensor,
    groups: int,
    stride: list[int],
    padding: list[int],
) -> Tensor:
    return osep_group_conv_reference(x, weight, in_index, out_index, groups, stride, padding)


@torch.library.custom_op("convnas::osep_group_conv_grad_input", mutates_args=())
def _gi_op(
    grad: Tensor,
    weight: Tensor,
    in_index: Tensor,
    out_index: Tensor,
    groups: int,
    stride: list[int],
    padding: list[int],
    x_shape: list[int],
) -> Tensor:
    return _grad_input_reference(
        grad, weight, in_index, out_index, groups, stride, padding, x_shape
    )


@torch.library.custom_op("convnas::osep_group_conv_grad_weight", mutates_args=())
def _gw_op(
    grad: Tensor,
    x: Tensor,
    in_index: Tensor,
    out_index: Tensor,
    groups: int,
    stride: list[int],
    padding: list[int],
    w_shape: list[int],
) -> Tensor:
    return _grad_weight_reference(grad, x, in_index, out_index, groups, stride, padding, w_shape)


def _out_hw(x_shape, w_shape, stride, padding):
    return tuple(
        (x_shape[2 + a] + 2 * padding[a] - w_shape[2 + a]) // stride[a] + 1 for a in (0, 1)
    )


@_op.register_fake
def _(x, weight, in_index, out_index, groups, stride, padding):
    shape = (x.shape[0], out_index.shape[0], *_out_hw(x.shape, weight.shape, stride, padding))
    return x.new_empty(shape).contiguous(memory_format=memory_format_of(x))


@_gi_op.register_fake
def _(grad, weight, in_index, out_index, groups, stride, padding, x_shape):
    return grad.new_empty(x_shape).contiguous(memory_format=memory_format_of(grad))


@_gw_op.register_fake
def _(grad, x, in_index, out_index, groups, stride, padding, w_shape):
    return grad.new_empty(w_shape)


def _kernel_tables(in_index: Tensor, out_index: Tensor, slots: int, padding: list[int]):
    """Slot -> output channel (-1 dropped) and the per-input-slot offsets, on the device."""
    slot_out = torch.full((slots,), -1, dtype=torch.int32, device=out_index.device)
    slot_out[out_index] = torch.arange(
        out_index.shape[0], dtype=torch.int32, device=slot_out.device
    )
    off_h = torch.full_like(in_index, -padding[0], dtype=torch.int32)
    off_w = torch.full_like(in_index, -padding[1], dtype=torch.int32)
    return slot_out, off_h, off_w


def _triton_forward(x, weight, in_index, out_index, groups, stride, padding):
    from convnas.kernels._triton_conv import conv_forward

    slot_out, oh, ow = _kernel_tables(in_index, out_index, weight.shape[0], padding)
    hw = _out_hw(x.shape, weight.shape, stride, padding)
    fmt = memory_format_of(x)
    cout = out_index.shape[0]
    return conv_forward(x, weight, in_index, oh, ow, slot_out, groups, cout, hw, stride, fmt)


def _triton_grad_input(grad, weight, in_index, out_index, groups, stride, padding, x_shape):
    from convnas.kernels._triton_conv import conv_dgrad

    slot_out, _, _ = _kernel_tables(in_index, out_index, weight.shape[0], padding)
    segs = ((0, weight.shape[1], -padding[0], -padding[1]),)
    fmt = memory_format_of(grad)
    return conv_dgrad(grad, weight, in_index, slot_out, groups, x_shape, stride, segs, fmt)


def _triton_grad_weight(grad, x, in_index, out_index, groups, stride, padding, w_shape):
    from convnas.kernels._triton_conv import conv_wgrad

    slot_out, oh, ow = _kernel_tables(in_index, out_index, w_shape[0], padding)
    return conv_wgrad(grad, x, w_shape, in_index, oh, ow, slot_out, groups, stride)


for _name, _tri, _ref in (
    ("osep_group_conv", _triton_forward, osep_group_conv_reference),
    ("osep_group_conv_grad_input", _triton_grad_input, _grad_input_reference),
    ("osep_group_conv_grad_weight", _triton_grad_weight, _grad_weight_reference),
):
    torch.library.register_kernel(f"convnas::{_name}", "cuda")(cuda_kernel(_tri, _ref, 2))


def _setup(ctx, inputs, output):
    x, weight, in_index, out_index, groups, stride, padding = inputs
    ctx.save_for_backward(x, weight, in_index, out_index)
    ctx.conf = (groups, stride, padding)


def _backward(ctx, grad):
    x, weight, in_index, out_index = ctx.saved_tensors
    conf = ctx.conf
    gx = gw = None
    if ctx.needs_input_grad[0]:
        gx = torch.ops.convnas.osep_group_conv_grad_input(
            grad, weight, in_index, out_index, *conf, list(x.shape)
        )
    if ctx.needs_input_grad[1]:
        gw = torch.ops.convnas.osep_group_conv_grad_weight(
            grad, x, in_index, out_index, *conf, list(weight.shape)
        )
    return gx, gw, None, None, None, None, None


_op.register_autograd(_backward, setup_context=_setup)


def _flops(batch: int, w_shape: Sequence[int], out_hw: Sequence[int]) -> int:
    """2 x MACs of the padded grouped conv: ``weight.numel() * H_out * W_out`` per image."""
    return 2 * batch * w_shape[0] * w_shape[1] * w_shape[2] * w_shape[3] * out_hw[0] * out_hw[1]


@flop_formula(torch.ops.convnas.osep_group_conv)
def _(x_shape, w_shape, *args, out_shape=None, **kwargs) -> int:
    return _flops(x_shape[0], w_shape, out_shape[2:])


@flop_formula(torch.ops.convnas.osep_group_conv_grad_input)
def _(g_shape, w_shape, *args, out_shape=None, **kwargs) -> int:
    return _flops(g_shape[0], w_shape, g_shape[2:])


@flop_formula(torch.ops.convnas.osep_group_conv_grad_weight)
def _(g_shape, x_shape, *args, out_shape=None, **kwargs) -> int:
    return _flops(g_shape[0], out_shape, g_shape[2:])


@functools.lru_cache(maxsize=256)
def _index_tensors(in_channels, padded_in, out_index, device):
    in_index = list(range(in_channels)) + [-1] * (padded_in - in_channels)
    return (
        torch.tensor(in_index, dtype=torch.long, device=device),
        torch.tensor(out_index, dtype=torch.long, device=device),
    )


def osep_group_conv(
    input: Tensor,
    weight: Tensor,
    groups: int,
    out_index: Sequence[int] | None = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] | None = None,
) -> Tensor:
    """One osep layer: pad channels, grouped conv, shuffle and drop, without the copies on CUDA.

    Contract: ``input (B, C_in, H, W)``, NCHW or channels_last; ``weight (g*M, N, kh, kw)`` with
    ``g = groups``, ``N = ceil(C_in/g)`` (the input is zero-padded at the end to ``g*N``
    channels) and ``M`` outputs per group. ``out_index`` (default ``range(g*M)``) lists, for
    each output channel ``t``, the padded conv output channel it takes: pass
    ``OSepLayer.output_index`` to fold the ShuffleNet shuffle and the surplus drop. Its entries
    must be distinct (the kernel stores each slot once). ``padding`` defaults to ``k // 2`` per
    axis. Output ``(B, len(out_index), H_out, W_out)`` in the input's memory format.
    Differentiable in ``input`` and ``weight``; the custom op runs when kernels are on and the
    input is on CUDA or ``meta``.
    """
    gm, n = int(weight.shape[0]), int(weight.shape[1])
    c_in = int(input.shape[1])
    if groups < 1 or gm % groups or n != -(-c_in // groups):
        raise OperatorArgumentError(
            "weight must be (groups*M, ceil(C_in/groups), kh, kw), but got weight "
            f"{tuple(weight.shape)} for C_in={c_in}, groups={groups}"
        )
    out = tuple(range(gm)) if out_index is None else tuple(int(t) for t in out_index)
    if len(set(out)) != len(out) or not all(0 <= t < gm for t in out):
        raise OperatorArgumentError(
            f"out_index must hold distinct channels in [0, {gm}), but got {out!r}"
        )
    pad = tuple(k // 2 for k in weight.shape[2:]) if padding is None else pair(padding, "padding")
    in_t, out_t = _index_tensors(c_in, groups * n, out, input.device)
    args = (in_t, out_t, groups, list(pair(stride, "stride")), list(pad))
    if route_to_custom_op(input):
        return torch.ops.convnas.osep_group_conv(input, weight, *args)
    return osep_group_conv_reference(input, weight, *args)
