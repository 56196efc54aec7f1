"""Tables and shift-add kernels of the ShiftwiseConv (SW) operator.

"ShiftwiseConv: Small Convolutional Kernel with Large Kernel Effect", CVPR 2025 (supplement in
``papers/003``); the operator is reconstructed in OPERATORS.md section 4 from the authors' code
(``lidc54/shift-wiseConv``, ``backbones/SW_v2_unirep.py``). This module holds the pure functions:
the ghost split, the random tilings, the slot offsets and the gather shift-add of section 4.4.

Tables come from a per-layer ``torch.Generator`` on the CPU, seeded from the layer seed and the
layer shape, so they are the same on every device and never touch the global RNG.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from convnas.layers.padding import same_padding

__all__ = [
    "ShiftTables",
    "draw_tables",
    "gather_slots",
    "rep_channel_count",
    "shift_add_columns",
    "shift_add_rows",
    "slot_offsets",
    "strip_span",
    "table_seed",
    "z_margin",
]


def rep_channel_count(channels: int, ghost_ratio: float) -> int:
    """Number R of channels that go through the shift-add (the rest are ghost channels).

    The v2 rule ``R = floor(C * (1 - ghost_ratio))`` rounded down to even. Where that gives 0
    (``C * (1 - ghost_ratio) < 2``, i.e. one or two channels, or a ratio close to 1) R is
    raised to 1, so that the operator never degenerates into the identity.
    """
    rep = int(channels * (1.0 - ghost_ratio)) // 2 * 2
    return max(rep, 1)


def table_seed(
    seed: int, channels: int, rep: int, big_kernel: int, small_kernel: int, edges: int
) -> int:
    """Seed of a layer's table generator, derived from the layer seed and its shape."""
    key = f"convnas.shiftwise:{seed}:{channels}:{rep}:{big_kernel}:{small_kernel}:{edges}"
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little") >> 1


def z_margin(small_kernel: int) -> int:
    """Margin ``e`` of the small conv output: it uses padding ``k - 1``, so Z is ``H + 2e``."""
    return (small_kernel - 1) - same_padding(small_kernel)[0]


def slot_offsets(big_kernel: int, small_kernel: int) -> list[int]:
    """Offset ``c_i = i*k + k//2 - K//2`` of slot i's centre from the output pixel."""
    num_filters = math.ceil(big_kernel / small_kernel)
    mid = big_kernel // 2
    return [i * small_kernel + small_kernel // 2 - mid for i in range(num_filters)]


def strip_span(big_kernel: int, small_kernel: int) -> tuple[int, int]:
    """``(before, after)`` reach of a strip: offsets ``[-mid, L - 1 - mid]``, ``L = nk * k``.

    These are the zero pads of the equivalent dense strip convolution along its long axis.
    """
    length = math.ceil(big_kernel / small_kernel) * small_kernel
    mid = big_kernel // 2
    return mid, length - 1 - mid


@dataclass(frozen=True)
class ShiftTables:
    """The random tables of one SW layer.

    Attributes:
        rep: sorted indices of the R channels that go through the shift-add.
        ghost: sorted indices of the ``C - R`` ghost channels.
        perm_h: ``(E, R, nk)``; in tiling g, filter ``perm_h[g, c, i]`` of channel c fills
            slot i of the horizontal strip.
        perm_v: the same for the vertical strip.
        ident: ``(E, R)``; the filter used for the centre term in tiling g (with replacement).
    """

    rep: torch.Tensor
    ghost: torch.Tensor
    perm_h: torch.Tensor
    perm_v: torch.Tensor
    ident: torch.Tensor


def draw_tables(channels: int, rep: int, num_filters: int, edges: int, seed: int) -> ShiftTables:
    """Draw a layer's tables from a CPU generator seeded with ``seed``.

    Order of draws: the ghost set, then sigma^H for every (g, c), sigma^V, then rho.
    """
    gen = torch.Generator(device="cpu").manual_seed(seed)
    ghost = torch.randperm(channels, generator=gen)[: channels - rep].sort().values
    keep = torch.ones(channels, dtype=torch.bool)
    keep[ghost] = False
    rep_index = torch.arange(channels)[keep]
    shape = (edges, rep, num_filters)
    perm_h = torch.rand(shape, generator=gen, dtype=torch.float64).argsort(dim=-1)
    perm_v = torch.rand(shape, generator=gen, dtype=torch.float64).argsort(dim=-1)
    ident = torch.randint(num_filters, (edges, rep), generator=gen)
    return ShiftTables(rep_index, ghost, perm_h, perm_v, ident)


def gather_slots(z: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """Sum the E tilings of one direction before shifting.

    Args:
        z: small-conv output ``(B, R * nk, H', W')``, channel ``c * nk + j`` = filter j of c.
        perm: ``(E, R, nk)`` tiling table.

    Returns:
        ``(B, R, nk, H', W')`` with ``T[:, c, i] = sum_g z[:, c * nk + perm[g, c, i]]``.
    """
    edges, rep, num_filters = perm.shape
    base = torch.arange(rep, device=perm.device).unsqueeze(1) * num_filters
    total = z.index_select(1, (base + perm[0]).reshape(-1))
    for g in range(1, edges):
        total = total + z.index_select(1, (base + perm[g]).reshape(-1))
    return total.unflatten(1, (rep, num_filters))


def shift_add_columns(
    t: torch.Tensor, offsets: list[int], margin: int, height: int, width: int
) -> torch.Tensor:
    """``Y[..., h, w] = sum_i t[:, :, i, h + e, w + e + c_i]``, reading outside ``t`` as 0.

    Args:
        t: ``(B, R, nk, H', W')`` slot tensor from :func:`gather_slots`.
        offsets: slot offsets ``c_i`` (:func:`slot_offsets`).
        margin: ``e`` (:func:`z_margin`).
        height: output rows H.
        width: output columns W.
    """
    rows = t[..., margin : margin + height, :]
    first = margin + min(offsets)
    last = margin + max(offsets) + width
    left, right = max(0, -first), max(0, last - t.shape[-1])
    if left or right:
        rows = F.pad(rows, (left, right))
    starts = [margin + offset + left for offset in offsets]
    out = rows[:, :, 0, :, starts[0] : starts[0] + width]
    for i in range(1, len(starts)):
        out = out + rows[:, :, i, :, starts[i] : starts[i] + width]
    return out


def shift_add_rows(
    t: torch.Tensor, offsets: list[int], margin: int, height: int, width: int
) -> torch.Tensor:
    """``Y[..., h, w] = sum_i t[:, :, i, h + e + c_i, w + e]``; the transpose of columns."""
    out = shift_add_columns(t.transpose(-1, -2), offsets, margin, width, height)
    return out.transpose(-1, -2)
