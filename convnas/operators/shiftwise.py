"""ShiftwiseConv (SW): a large-kernel effect from shifted and summed small depthwise kernels.

"ShiftwiseConv: Small Convolutional Kernel with Large Kernel Effect", CVPR 2025 (supplement in
``papers/003``; arXiv v1 "Shift-ConvNets", 2401.12736). The operator follows OPERATORS.md
section 4 (reconstructed from ``lidc54/shift-wiseConv``, ``backbones/SW_v2_unirep.py``): ghost
split, a small depthwise conv with ``nk = ceil(K/k)`` filters per channel, E random tilings
shifted and added into a horizontal strip, a vertical strip and a centre term, a BatchNorm per
branch plus the identity, and the ghost channels passed through.

Departures from the official code, all intended: the tables come from a per-layer generator
(never the global RNG) and are buffers, so checkpoints restore them; BatchNorm2d instead of
SyncBatchNorm; the output keeps the input channel order (the official op outputs
[rep channels, ghost channels]); a pure-PyTorch gather shift-add replaces the CUDA scatter.
The branches by the definition and their dense-kernel form are in
:mod:`convnas.operators.shiftwise_reference`, the tables in
:mod:`convnas.operators.shiftwise_tables`.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from convnas.errors import OperatorArgumentError
from convnas.layers.checks import positive_int
from convnas.operators.kernel_dispatch import gpu_kernels_for
from convnas.operators.operator_registry import register_operator
from convnas.operators.shiftwise_reference import (
    check_shiftwise_args,
    dense_branch_kernels,
    dense_branch_pads,
    gather_branches,
)
from convnas.operators.shiftwise_tables import draw_tables, rep_channel_count, table_seed

__all__ = ["ShiftwiseConv2d", "ShiftwiseSeparable"]

_PAPER = "ShiftwiseConv: Small Convolutional Kernel with Large Kernel Effect, CVPR 2025"
_SEARCH_SPACE = {
    "big_kernel": (7, 13, 25, 31),
    "small_kernel": (3, 5),
    "edges": (1, 2, 4),
    "ghost_ratio": (0, 0.23, 0.5),
    "paths": (1, 2),
}


class ShiftwiseConv2d(nn.Module):
    """The SW module: depthwise, channel preserving, stride 1.

    Output channels keep the input order: ghost channels are copied, rep channels carry
    ``BN_H(Y_H) + BN_V(Y_V) + BN_I(Y_I) + X_r``.

    Args:
        in_channels: channels C (also the output channels).
        out_channels: must equal ``in_channels`` (or be None).
        big_kernel: emulated strip length K.
        small_kernel: odd size k of the real filters.
        edges: number E of random tilings per direction.
        ghost_ratio: fraction of channels bypassing the operator, in [0, 1).
        paths: number M of weight copies summed before the shift (merged by :meth:`fold`).
        stride: must be 1 (use :class:`ShiftwiseSeparable` for stride 2).
        seed: layer seed; the tables are drawn from a generator seeded with it and the shape.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int | None = None,
        big_kernel: int = 13,
        small_kernel: int = 3,
        edges: int = 4,
        ghost_ratio: float = 0.23,
        paths: int = 1,
        stride: int = 1,
        seed: int = 0,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        check_shiftwise_args(
            in_channels, out_channels, big_kernel, small_kernel, edges, ghost_ratio, paths, stride
        )
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise OperatorArgumentError(f"seed must be an int, but got {seed!r}")
        self.in_channels = self.out_channels = in_channels
        self.big_kernel, self.small_kernel = big_kernel, small_kernel
        self.edges, self.ghost_ratio, self.paths, self.seed = edges, ghost_ratio, paths, seed
        self.rep_channels = rep = rep_channel_count(in_channels, ghost_ratio)
        self.num_filters = nk = math.ceil(big_kernel / small_kernel)
        tables = draw_tables(
            in_channels,
            rep,
            nk,
            edges,
            table_seed(seed, in_channels, rep, big_kernel, small_kernel, edges),
        )
        # buffer types declared here, not on the class: TorchScript cannot parse them there
        self.rep_index: torch.Tensor
        self.ghost_index: torch.Tensor
        self.perm_h_index: torch.Tensor
        self.perm_v_index: torch.Tensor
        self.ident_index: torch.Tensor
        for name in ("rep", "ghost", "perm_h", "perm_v", "ident"):
            self.register_buffer(f"{name}_index", getattr(tables, name).to(device))
        self.weight = nn.Parameter(
            torch.empty(paths, rep * nk, 1, small_kernel, small_kernel, device=device, dtype=dtype)
        )
        # the F.pad lists of the H, V and I dense kernels, for TorchScript
        self._script_pads: list[list[int]] = [
            list(p) for p in dense_branch_pads(big_kernel, small_kernel)
        ]
        self.bn_h = nn.BatchNorm2d(rep, device=device, dtype=dtype)
        self.bn_v = nn.BatchNorm2d(rep, device=device, dtype=dtype)
        self.bn_i = nn.BatchNorm2d(rep, device=device, dtype=dtype)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Weights ~ trunc_normal(std 0.02) as the official code; BN gamma 1, beta 0."""
        nn.init.trunc_normal_(self.weight, std=0.02)
        for bn in (self.bn_h, self.bn_v, self.bn_i):
            bn.reset_parameters()

    def small_conv(self, x_rep: torch.Tensor) -> torch.Tensor:
        """Z: the M paths' depthwise convs summed, padding ``k - 1``; ``(B, R*nk, H+2e, W+2e)``."""
        return nn.functional.conv2d(
            x_rep, self.weight.sum(0), padding=self.small_kernel - 1, groups=self.rep_channels
        )

    @torch.jit.unused
    def branches(self, x_rep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(Y_H, Y_V, Y_I)`` of the rep channels ``x_rep`` before BatchNorm (section 4.4).

        On CUDA the fused shift-add kernel computes them from the small conv's output. On CPU
        the three exact depthwise strip convolutions do (about 4x faster there than the
        slice-and-add of :meth:`branches_gather`, which defines the operator). On the ``meta``
        device (the cost model) the definition runs, so costs follow the paper's convention:
        the small conv's MACs, the shift-add free.
        """
        if x_rep.is_meta:
            return self.branches_gather(x_rep)
        kernels = gpu_kernels_for(x_rep)
        if kernels is not None:  # one fused gather for the three branches, no atomics
            z = self.small_conv(x_rep)
            return kernels.shift_add(
                z,
                self.perm_h_index,
                self.perm_v_index,
                self.ident_index,
                self.big_kernel,
                self.small_kernel,
            )
        rep = self.rep_channels
        out = []
        for weight, pads in zip(self.dense_kernels(), self.dense_pads(), strict=True):
            out.append(F.conv2d(F.pad(x_rep, pads), weight, groups=rep))
        return out[0], out[1], out[2]

    def branches_gather(
        self, x_rep: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The branches by the definition: small conv, then slice-and-add per tiling and slot."""
        height, width = x_rep.shape[-2:]
        return gather_branches(
            self.small_conv(x_rep),
            self.perm_h_index,
            self.perm_v_index,
            self.ident_index,
            self.big_kernel,
            self.small_kernel,
            height,
            width,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_rep = x.index_select(1, self.rep_index)
        if torch.jit.is_scripting():
            y_h, y_v, y_i = self._branches_script(x_rep)
        else:
            y_h, y_v, y_i = self.branches(x_rep)
        y = self.bn_h(y_h) + self.bn_v(y_v) + self.bn_i(y_i) + x_rep
        return torch.index_copy(x, 1, self.rep_index, y)

    def _branches_script(
        self, x_rep: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # the CPU path of branches(), with dense_branch_kernels written out for TorchScript
        perm_h, perm_v, ident = self.perm_h_index, self.perm_v_index, self.ident_index
        edges, rep, nk = perm_h.shape[0], perm_h.shape[1], perm_h.shape[2]
        k = self.small_kernel
        w = self.weight.sum(0).view(rep, nk, k, k)
        rows = torch.arange(rep, device=w.device).unsqueeze(1)
        blocks_h = w[rows, perm_h[0]]
        blocks_v = w[rows, perm_v[0]]
        w_i = w[rows[:, 0], ident[0]]
        for g in range(1, edges):
            blocks_h = blocks_h + w[rows, perm_h[g]]
            blocks_v = blocks_v + w[rows, perm_v[g]]
            w_i = w_i + w[rows[:, 0], ident[g]]
        w_h = blocks_h.permute(0, 2, 1, 3).reshape(rep, 1, k, nk * k)
        w_v = blocks_v.reshape(rep, 1, nk * k, k)
        pads = self._script_pads
        y_h = F.conv2d(F.pad(x_rep, pads[0]), w_h, groups=rep)
        y_v = F.conv2d(F.pad(x_rep, pads[1]), w_v, groups=rep)
        y_i = F.conv2d(F.pad(x_rep, pads[2]), w_i.unsqueeze(1), groups=rep)
        return y_h, y_v, y_i

    def dense_kernels(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The exact dense depthwise kernels ``(W_H, W_V, W_I)`` of the three branches.

        Shapes ``(R, 1, k, L)``, ``(R, 1, L, k)`` and ``(R, 1, k, k)`` with ``L = nk * k``;
        pad them with :meth:`dense_pads` and run ``conv2d(..., groups=R)`` to get the branches.
        """
        return dense_branch_kernels(
            self.weight.sum(0),
            self.perm_h_index,
            self.perm_v_index,
            self.ident_index,
            self.small_kernel,
        )

    def dense_pads(self) -> tuple[tuple[int, int, int, int], ...]:
        """``F.pad`` tuples (left, right, top, bottom) for the H, V and I dense kernels."""
        return dense_branch_pads(self.big_kernel, self.small_kernel)

    def fold(self) -> ShiftwiseConv2d:
        """The same operator with its M paths merged into one (summed weights); BN kept."""
        folded = copy.deepcopy(self)
        folded.paths = 1
        folded.weight = nn.Parameter(self.weight.detach().sum(0, keepdim=True).clone())
        return folded

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, big_kernel={self.big_kernel}, small_kernel={self.small_kernel}, "
            f"edges={self.edges}, ghost_ratio={self.ghost_ratio}, paths={self.paths}, "
            f"seed={self.seed}, rep_channels={self.rep_channels}"
        )


class ShiftwiseSeparable(nn.Module):
    """SW followed by a 1x1 pointwise conv; stride 2 applies a 2x2 average pool first.

    The pool uses ``ceil_mode`` so odd sizes give ``ceil(H/2)`` (edge windows average the
    pixels they cover).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        *,
        device: Any = None,
        dtype: Any = None,
        **sw_args: Any,
    ) -> None:
        super().__init__()
        positive_int("out_channels", out_channels)
        if stride not in (1, 2):
            raise OperatorArgumentError(f"stride must be 1 or 2, but got stride={stride!r}")
        self.stride = stride
        self.pool = nn.AvgPool2d(2, 2, ceil_mode=True) if stride == 2 else nn.Identity()
        self.shiftwise = ShiftwiseConv2d(in_channels, device=device, dtype=dtype, **sw_args)
        self.pointwise = nn.Conv2d(
            in_channels, out_channels, 1, bias=False, device=device, dtype=dtype
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.shiftwise(self.pool(x)))

    def fold(self) -> ShiftwiseSeparable:
        """A copy with the SW paths merged."""
        folded = copy.deepcopy(self)
        folded.shiftwise = self.shiftwise.fold()
        return folded

    def extra_repr(self) -> str:
        return f"stride={self.stride}"


@register_operator(
    "sw",
    family="shiftwise",
    kind="conv",
    gpu_kernel=True,
    paper=_PAPER,
    strides=(1,),
    channel_change=False,
    foldable=True,
    search_space=_SEARCH_SPACE,
)
def _sw(
    in_channels: int,
    out_channels: int,
    stride: int,
    *,
    context=None,
    device=None,
    dtype=None,
    big_kernel: int = 13,
    small_kernel: int = 3,
    edges: int = 4,
    ghost_ratio: float = 0.23,
    paths: int = 1,
    seed: int = 0,
) -> nn.Module:
    """ShiftwiseConv: depthwise large-kernel effect from shifted small kernels (stride 1)."""
    return ShiftwiseConv2d(
        in_channels,
        out_channels,
        big_kernel,
        small_kernel,
        edges,
        ghost_ratio,
        paths,
        stride,
        seed,
        device=device,
        dtype=dtype,
    )


@register_operator(
    "sw_sep",
    family="shiftwise",
    kind="conv",
    gpu_kernel=True,
    paper=_PAPER,
    strides=(1, 2),
    channel_change=True,
    foldable=True,
    search_space=_SEARCH_SPACE,
)
def _sw_sep(
    in_channels: int,
    out_channels: int,
    stride: int,
    *,
    context=None,
    device=None,
    dtype=None,
    big_kernel: int = 13,
    small_kernel: int = 3,
    edges: int = 4,
    ghost_ratio: float = 0.23,
    paths: int = 1,
    seed: int = 0,
) -> nn.Module:
    """ShiftwiseConv then a 1x1 pointwise conv; stride 2 via a 2x2 average pool first."""
    return ShiftwiseSeparable(
        in_channels,
        out_channels,
        stride,
        device=device,
        dtype=dtype,
        big_kernel=big_kernel,
        small_kernel=small_kernel,
        edges=edges,
        ghost_ratio=ghost_ratio,
        paths=paths,
        seed=seed,
    )
