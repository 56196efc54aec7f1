"""The definition of the ShiftwiseConv (SW) operator: its hyper-parameters and branches.

"ShiftwiseConv: Small Convolutional Kernel with Large Kernel Effect", CVPR 2025 (supplement in
``papers/003``); OPERATORS.md section 4, reconstructed from ``lidc54/shift-wiseConv``
(``backbones/SW_v2_unirep.py``). :func:`check_shiftwise_args` states which layers exist.
Given the small conv's output ``Z`` and a layer's tables (section 4.4),
:func:`gather_branches` computes the three branches ``(Y_H, Y_V, Y_I)`` by the definition:
slice-and-add per tiling and slot. It defines the operator and runs on the ``meta`` device, so
the cost model counts the small conv and leaves the shift-add free, as the paper does.

The same branches are three exact depthwise convolutions of the rep channels: the shifted
filters assemble into one dense strip kernel per direction (:func:`dense_branch_kernels`, padded
by :func:`dense_branch_pads`). That is the CPU path of :class:`ShiftwiseConv2d`.
"""

from __future__ import annotations

from typing import cast

import torch

from convnas.errors import OperatorArgumentError
from convnas.layers.checks import positive_int
from convnas.layers.padding import same_padding
from convnas.operators.shiftwise_tables import (
    gather_slots,
    shift_add_columns,
    shift_add_rows,
    slot_offsets,
    strip_span,
    z_margin,
)

__all__ = ["check_shiftwise_args", "dense_branch_kernels", "dense_branch_pads", "gather_branches"]


def check_shiftwise_args(
    in_channels: int,
    out_channels: int | None,
    big_kernel: int,
    small_kernel: int,
    edges: int,
    ghost_ratio: float,
    paths: int,
    stride: int,
) -> None:
    """Raise :class:`OperatorArgumentError` unless the arguments make an SW layer.

    See :class:`~convnas.operators.shiftwise.ShiftwiseConv2d` for their meaning.
    """
    for name, value in (
        ("in_channels", in_channels),
        ("big_kernel", big_kernel),
        ("small_kernel", small_kernel),
        ("edges", edges),
        ("paths", paths),
    ):
        positive_int(name, value)
    if out_channels is not None and out_channels != in_channels:
        raise OperatorArgumentError(
            f"ShiftwiseConv2d is depthwise, so out_channels == in_channels must hold, but got "
            f"in_channels={in_channels}, out_channels={out_channels}; use sw_sep to change them"
        )
    if small_kernel % 2 == 0:
        raise OperatorArgumentError(f"small_kernel must be odd, but got {small_kernel}")
    if big_kernel < small_kernel:
        raise OperatorArgumentError(
            f"big_kernel >= small_kernel must hold, but got big_kernel={big_kernel}, "
            f"small_kernel={small_kernel}"
        )
    if not isinstance(ghost_ratio, (int, float)) or not 0.0 <= ghost_ratio < 1.0:
        raise OperatorArgumentError(f"ghost_ratio must be in [0, 1), but got {ghost_ratio!r}")
    if stride != 1:
        raise OperatorArgumentError(
            f"ShiftwiseConv2d supports stride 1 only, but got stride={stride!r}; "
            "use sw_sep, which applies a 2x2 average pool first"
        )


def gather_branches(
    z: torch.Tensor,
    perm_h: torch.Tensor,
    perm_v: torch.Tensor,
    ident: torch.Tensor,
    big_kernel: int,
    small_kernel: int,
    height: int,
    width: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(Y_H, Y_V, Y_I)``, each ``(B, R, H, W)``, from ``Z (B, R*nk, H+2e, W+2e)``.

    Args:
        z: the small conv's output, channel ``c * nk + j`` = filter j of rep channel c.
        perm_h: ``(E, R, nk)`` tilings of the horizontal strip.
        perm_v: ``(E, R, nk)`` tilings of the vertical strip.
        ident: ``(E, R)`` filter of the centre term in each tiling.
        big_kernel: strip length K.
        small_kernel: size k of the real filters.
        height: output rows H.
        width: output columns W.
    """
    edges, rep, num_filters = perm_h.shape
    offsets = slot_offsets(big_kernel, small_kernel)
    e = z_margin(small_kernel)
    y_h = shift_add_columns(gather_slots(z, perm_h), offsets, e, height, width)
    y_v = shift_add_rows(gather_slots(z, perm_v), offsets, e, height, width)
    base = torch.arange(rep, device=z.device) * num_filters
    y_i = z.index_select(1, base + ident[0])
    for g in range(1, edges):
        y_i = y_i + z.index_select(1, base + ident[g])
    y_i = y_i[..., e : e + height, e : e + width]
    return y_h, y_v, y_i


def dense_branch_kernels(
    weight: torch.Tensor,
    perm_h: torch.Tensor,
    perm_v: torch.Tensor,
    ident: torch.Tensor,
    small_kernel: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The dense depthwise kernels ``(W_H, W_V, W_I)`` of the three branches.

    ``weight`` is the small conv's ``(R*nk, 1, k, k)`` (the M paths summed). Shapes
    ``(R, 1, k, L)``, ``(R, 1, L, k)`` and ``(R, 1, k, k)`` with ``L = nk * k``; pad the input
    with :func:`dense_branch_pads` and run ``conv2d(..., groups=R)`` to get the branches.
    """
    edges, rep, nk = perm_h.shape
    k = small_kernel
    w = weight.view(rep, nk, k, k)
    rows = torch.arange(rep, device=w.device).unsqueeze(1)
    # E >= 1 tilings, so each sum is a tensor (never the start value 0)
    blocks_h = cast(torch.Tensor, sum(w[rows, perm_h[g]] for g in range(edges)))
    blocks_v = cast(torch.Tensor, sum(w[rows, perm_v[g]] for g in range(edges)))
    w_i = cast(torch.Tensor, sum(w[rows[:, 0], ident[g]] for g in range(edges)))
    w_h = blocks_h.permute(0, 2, 1, 3).reshape(rep, 1, k, nk * k)
    w_v = blocks_v.reshape(rep, 1, nk * k, k)
    return w_h, w_v, w_i.unsqueeze(1)


def dense_branch_pads(big_kernel: int, small_kernel: int) -> tuple[tuple[int, int, int, int], ...]:
    """``F.pad`` tuples (left, right, top, bottom) for the H, V and I dense kernels."""
    before, after = strip_span(big_kernel, small_kernel)
    half = same_padding(small_kernel)[0]
    return (before, after, half, half), (half, half, before, after), (half,) * 4
