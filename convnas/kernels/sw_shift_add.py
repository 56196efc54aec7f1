"""Custom op for the ShiftwiseConv shift-add (gather form), plus its exact depthwise-strip form.

Li et al., "ShiftwiseConv" (CVPR 2025; supplement ``papers/003_*.txt``, official code
``lidc54/shift-wiseConv``; OPERATORS.md sections 4.3-4.4). The official CUDA op scatters with
``atomicAdd``; here ``torch.ops.convnas.sw_shift_add`` gathers (CPU/default: slice-and-add in
PyTorch, CUDA: one fused Triton kernel for the three branches) and its backward is the adjoint
gather (``torch.ops.convnas.sw_shift_add_backward``). No atomics, deterministic.

:func:`strip_weights` and :func:`strip_conv` give the same three branches as three depthwise
convs with assembled ``k x L`` / ``L x k`` / ``k x k`` kernels (section 4.4): the cuDNN baseline
and an independent test oracle.

FLOP formulas return 0: the shift-add has no multiplies, and ``torch.utils.flop_counter`` counts
only multiply-accumulate ops (an elementwise ``aten.add`` counts 0), so the cost model reports the
same MACs with kernels on or off, as the papers' counters do. :func:`shift_add_cost` gives the
additions and bytes for throughput figures.
"""

from __future__ import annotations

import math
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor

from convnas.errors import OperatorArgumentError
from convnas.kernels._support import (
    cuda_kernel,
    flop_formula,
    memory_format_of,
    route_to_custom_op,
)

__all__ = [
    "shift_add",
    "shift_add_cost",
    "shift_add_reference",
    "strip_conv",
    "strip_weights",
]


def _geometry(big: int, small: int, nk: int) -> tuple[int, list[int]]:
    """Z's margin ``e = (k-1) - k//2`` and slot offsets ``c_i = i*k + k//2 - K//2``."""
    return (small - 1) - small // 2, [i * small + small // 2 - big // 2 for i in range(nk)]


def shift_add_reference(
    z: Tensor, sigma_h: Tensor, sigma_v: Tensor, rho: Tensor, big_kernel: int, small_kernel: int
) -> tuple[Tensor, Tensor, Tensor]:
    """The gather form of OPERATORS.md section 4.4, one slice-add per tiling and slot."""
    edges, rep, nk = sigma_h.shape
    e, shifts = _geometry(big_kernel, small_kernel, nk)
    bsz, _, hp, wp = z.shape
    h, w = hp - 2 * e, wp - 2 * e
    zv = z.unflatten(1, (rep, nk))
    ar = torch.arange(rep, device=z.device)
    y_h, y_v, y_i = (z.new_zeros(bsz, rep, h, w) for _ in range(3))
    for i, c in enumerate(shifts):
        lo_w, hi_w = max(0, -e - c), min(w, wp - e - c)
        lo_h, hi_h = max(0, -e - c), min(h, hp - e - c)
        for g in range(edges):
            if lo_w < hi_w:
                picked = zv[:, ar, sigma_h[g, :, i], e : e + h, lo_w + e + c : hi_w + e + c]
                y_h[..., lo_w:hi_w] += picked
            if lo_h < hi_h:
                picked = zv[:, ar, sigma_v[g, :, i], lo_h + e + c : hi_h + e + c, e : e + w]
                y_v[:, :, lo_h:hi_h] += picked
    for g in range(edges):
        y_i += zv[:, ar, rho[g], e : e + h, e : e + w]
    fmt = memory_format_of(z)
    return tuple(y.contiguous(memory_format=fmt) for y in (y_h, y_v, y_i))  # type: ignore[return-value]


def _backward_reference(gy_h, gy_v, gy_i, sigma_h, sigma_v, rho, big_kernel, small_kernel):
    """The adjoint of :func:`shift_add_reference`, written as its scatter (OPERATORS.md 4.3)."""
    edges, rep, nk = sigma_h.shape
    e, shifts = _geometry(big_kernel, small_kernel, nk)
    bsz, _, h, w = gy_h.shape
    hp, wp = h + 2 * e, w + 2 * e
    gz = gy_h.new_zeros(bsz, rep, nk, hp, wp)
    ar = torch.arange(rep, device=gy_h.device)
    for i, c in enumerate(shifts):
        lo_w, hi_w = max(0, -e - c), min(w, wp - e - c)
        lo_h, hi_h = max(0, -e - c), min(h, hp - e - c)
        for g in range(edges):
            if lo_w < hi_w:
                gz[:, ar, sigma_h[g, :, i], e : e + h, lo_w + e + c : hi_w + e + c] += gy_h[
                    ..., lo_w:hi_w
                ]
            if lo_h < hi_h:
                gz[:, ar, sigma_v[g, :, i], lo_h + e + c : hi_h + e + c, e : e + w] += gy_v[
                    :, :, lo_h:hi_h
                ]
    for g in range(edges):
        gz[:, ar, rho[g], e : e + h, e : e + w] += gy_i
    return gz.flatten(1, 2).contiguous(memory_format=memory_format_of(gy_h))


@torch.library.custom_op("convnas::sw_shift_add", mutates_args=())
def _op(
    z: Tensor, sigma_h: Tensor, sigma_v: Tensor, rho: Tensor, big_kernel: int, small_kernel: int
) -> tuple[Tensor, Tensor, Tensor]:
    return shift_add_reference(z, sigma_h, sigma_v, rho, big_kernel, small_kernel)


@torch.library.custom_op("convnas::sw_shift_add_backward", mutates_args=())
def _bwd_op(
    gy_h: Tensor,
    gy_v: Tensor,
    gy_i: Tensor,
    sigma_h: Tensor,
    sigma_v: Tensor,
    rho: Tensor,
    big_kernel: int,
    small_kernel: int,
) -> Tensor:
    return _backward_reference(gy_h, gy_v, gy_i, sigma_h, sigma_v, rho, big_kernel, small_kernel)


@_op.register_fake
def _(z, sigma_h, sigma_v, rho, big_kernel, small_kernel):
    e, _ = _geometry(big_kernel, small_kernel, 0)
    shape = (z.shape[0], sigma_h.shape[1], z.shape[2] - 2 * e, z.shape[3] - 2 * e)
    fmt = memory_format_of(z)
    return tuple(z.new_empty(shape).contiguous(memory_format=fmt) for _ in range(3))


@_bwd_op.register_fake
def _(gy_h, gy_v, gy_i, sigma_h, sigma_v, rho, big_kernel, small_kernel):
    e, _ = _geometry(big_kernel, small_kernel, 0)
    _, rep, nk = sigma_h.shape
    shape = (gy_h.shape[0], rep * nk, gy_h.shape[2] + 2 * e, gy_h.shape[3] + 2 * e)
    return gy_h.new_empty(shape).contiguous(memory_format=memory_format_of(gy_h))


def _triton_forward(z, sigma_h, sigma_v, rho, big_kernel, small_kernel):
    from convnas.kernels._triton_sw import shift_add_forward

    fmt = memory_format_of(z)
    return shift_add_forward(z, sigma_h, sigma_v, rho, big_kernel, small_kernel, fmt)


def _triton_backward(gy_h, gy_v, gy_i, sigma_h, sigma_v, rho, big_kernel, small_kernel):
    from convnas.kernels._triton_sw import shift_add_backward

    args = (gy_h, gy_v, gy_i, sigma_h, sigma_v, rho, big_kernel, small_kernel)
    return shift_add_backward(*args, memory_format_of(gy_h))


torch.library.register_kernel("convnas::sw_shift_add", "cuda")(
    cuda_kernel(_triton_forward, shift_add_reference, 1)
)
torch.library.register_kernel("convnas::sw_shift_add_backward", "cuda")(
    cuda_kernel(_triton_backward, _backward_reference, 3)
)


def _setup(ctx, inputs, output):
    _, sigma_h, sigma_v, rho, big_kernel, small_kernel = inputs
    ctx.save_for_backward(sigma_h, sigma_v, rho)
    ctx.kernels = (big_kernel, small_kernel)


def _backward(ctx, gy_h, gy_v, gy_i):
    sigma_h, sigma_v, rho = ctx.saved_tensors
    gz = torch.ops.convnas.sw_shift_add_backward(
        gy_h, gy_v, gy_i, sigma_h, sigma_v, rho, *ctx.kernels
    )
    return gz, None, None, None, None, None


_op.register_autograd(_backward, setup_context=_setup)


@flop_formula(torch.ops.convnas.sw_shift_add, torch.ops.convnas.sw_shift_add_backward)
def _(*args, out_shape=None, **kwargs) -> int:
    return 0  # additions only; see the module docstring and shift_add_cost


def shift_add_cost(
    batch: int,
    rep: int,
    height: int,
    width: int,
    edges: int,
    nk: int,
    small_kernel: int = 3,
    itemsize: int = 4,
) -> dict[str, int]:
    """Additions and minimum DRAM bytes of one forward shift-add (read Z once, write 3 outputs)."""
    e_margin = (small_kernel - 1) - small_kernel // 2
    z_bytes = batch * rep * nk * (height + 2 * e_margin) * (width + 2 * e_margin) * itemsize
    return {
        "additions": (2 * edges * nk + edges) * batch * rep * height * width,
        "bytes": z_bytes + 3 * batch * rep * height * width * itemsize,
    }


def check_shapes(z: Tensor, sigma_h: Tensor, sigma_v: Tensor, rho: Tensor, big: int, small: int):
    """Shape and argument checks that need no device sync."""
    if small < 1 or small % 2 == 0 or big < 1:
        raise OperatorArgumentError(
            f"small_kernel must be odd and big_kernel >= 1, but got big_kernel={big}, "
            f"small_kernel={small}"
        )
    nk = math.ceil(big / small)
    e = (small - 1) - small // 2
    edges, rep = rho.shape
    if sigma_h.shape != (edges, rep, nk) or sigma_v.shape != (edges, rep, nk):
        raise OperatorArgumentError(
            f"sigma_h and sigma_v must be (E, R, nk) = {(edges, rep, nk)} with nk = "
            f"ceil({big}/{small}), but got {tuple(sigma_h.shape)}, {tuple(sigma_v.shape)}"
        )
    if z.dim() != 4 or z.shape[1] != rep * nk or min(z.shape[2:]) <= 2 * e:
        raise OperatorArgumentError(
            f"z must be (B, R*nk, H+2e, W+2e) = (B, {rep * nk}, >{2 * e}, >{2 * e}), "
            f"but got {tuple(z.shape)}"
        )


def shift_add(
    z: Tensor, sigma_h: Tensor, sigma_v: Tensor, rho: Tensor, big_kernel: int, small_kernel: int
) -> tuple[Tensor, Tensor, Tensor]:
    """The three SW branches from the small-conv output ``Z``: ``(Y_H, Y_V, Y_I)``.

    Contract (OPERATORS.md 4.3-4.4): ``z (B, R*nk, H+2e, W+2e)``, the depthwise ``k x k`` conv
    of the rep channels with ``nk = ceil(K/k)`` filters per channel (channel ``c*nk + j`` is
    filter ``j`` of channel ``c``) and padding ``k - 1``, so ``e = (k-1) - k//2``; NCHW or
    channels_last, any floating dtype. ``sigma_h``, ``sigma_v`` (E, R, nk) and ``rho`` (E, R)
    are integer tables with values in ``[0, nk)``: in tiling ``g`` filter ``sigma[g, c, i]`` of
    channel ``c`` fills slot ``i``, at offset ``c_i = i*k + k//2 - K//2``, and ``rho[g, c]`` is
    the identity filter. ``small_kernel`` must be odd. Returns three ``(B, R, H, W)`` tensors in
    ``z``'s memory format::

        Y_H[b,c,h,w] = sum_g sum_i Z[b, c*nk + sigma_h[g,c,i], h+e, w+e+c_i]
        Y_V[b,c,h,w] = sum_g sum_i Z[b, c*nk + sigma_v[g,c,i], h+e+c_i, w+e]
        Y_I[b,c,h,w] = sum_g       Z[b, c*nk + rho[g,c],       h+e,     w+e]

    with reads outside ``Z`` taken as 0. Differentiable in ``z`` (the tables get no gradient).
    The custom op runs when kernels are on and ``z`` is on CUDA or ``meta``.
    """
    check_shapes(z, sigma_h, sigma_v, rho, big_kernel, small_kernel)
    if route_to_custom_op(z):
        return torch.ops.convnas.sw_shift_add(z, sigma_h, sigma_v, rho, big_kernel, small_kernel)
    return shift_add_reference(z, sigma_h, sigma_v, rho, big_kernel, small_kernel)


def strip_weights(
    weight: Tensor, sigma_h: Tensor, sigma_v: Tensor, rho: Tensor, small_kernel: int
) -> tuple[Tensor, Tensor, Tensor]:
    """The assembled depthwise kernels ``W_H (R,1,k,L)``, ``W_V (R,1,L,k)``, ``W_I (R,1,k,k)``.

    ``weight`` is the small conv's ``(R*nk, 1, k, k)``; ``L = nk*k``. Column block ``i`` of
    ``W_H`` is ``sum_g weight[c*nk + sigma_h[g,c,i]]`` (rows for ``W_V``); ``W_I`` sums the
    identity picks.
    """
    edges, rep, nk = sigma_h.shape
    k = small_kernel
    wv = weight.reshape(rep, nk, k, k)
    ar = torch.arange(rep, device=weight.device).view(rep, 1)
    # E >= 1 tilings, so each sum is a tensor (never the start value 0)
    blocks_h = cast(Tensor, sum(wv[ar, sigma_h[g]] for g in range(edges)))
    blocks_v = cast(Tensor, sum(wv[ar, sigma_v[g]] for g in range(edges)))
    w_i = cast(Tensor, sum(wv[ar[:, 0], rho[g]] for g in range(edges)))
    w_h = blocks_h.permute(0, 2, 1, 3).reshape(rep, 1, k, nk * k)
    w_v = blocks_v.reshape(rep, 1, nk * k, k)
    return w_h, w_v, w_i.reshape(rep, 1, k, k)


def strip_conv(
    x: Tensor, w_h: Tensor, w_v: Tensor, w_i: Tensor, big_kernel: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Three cuDNN depthwise convs of ``x (B, R, H, W)``; the strips span ``[-K//2, L-1-K//2]``.

    Padding is symmetric at ``max(K//2, L-1-K//2)`` inside the conv (no padded copy) and the
    output is cropped to the asymmetric span when ``K`` is not a multiple of ``k``.
    """
    rep, k, length = x.shape[1], w_i.shape[-1], w_h.shape[-1]
    mid, half = big_kernel // 2, k // 2
    pad = max(mid, length - 1 - mid)
    h, w = x.shape[-2:]
    y_h = F.conv2d(x, w_h, None, 1, (half, pad), 1, rep)[..., pad - mid : pad - mid + w]
    y_v = F.conv2d(x, w_v, None, 1, (pad, half), 1, rep)[..., pad - mid : pad - mid + h, :]
    y_i = F.conv2d(x, w_i, None, 1, half, 1, rep)
    return y_h, y_v, y_i
