"""Triton kernels of the ShiftwiseConv shift-add: one fused gather forward, the adjoint gather back.

Forward: one program per (image, rep channel, output tile) reads the ``nk`` slots of ``E`` tilings
for the H and V strips and the ``E`` identity picks straight from ``Z`` and writes ``Y_H``,
``Y_V`` and ``Y_I``: no atomics, no intermediate. Backward: one program per (image, Z channel,
tile) gathers the output gradients its filter was added to, through a CSR table of the slots
each filter occupies (built on the device from the index tables, so any table is exact; for
permutations every filter has ``E`` slots per direction). Importing this module imports triton.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

__all__ = ["shift_add_backward", "shift_add_forward"]


@triton.jit
def _fwd_kernel(
    z, sh, sv, rho, yh, yv, yi,
    R, NK, E, H, W, MARGIN, FIRST, SMALL,
    szb, szc, szh, szw, syb, syc, syh, syw,
    BH: tl.constexpr, BW: tl.constexpr, ACC: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0)
    b = (pid // R).to(tl.int64)
    c = pid % R
    rows = tl.program_id(1) * BH + tl.arange(0, BH)
    cols = tl.program_id(2) * BW + tl.arange(0, BW)
    om = (rows < H)[:, None] & (cols < W)[None, :]
    base = z + b * szb + (c * NK).to(tl.int64) * szc
    zr = (rows + MARGIN)[:, None] * szh
    zc = (cols + MARGIN)[None, :] * szw
    acc_h = tl.zeros((BH, BW), dtype=ACC)
    acc_v = tl.zeros((BH, BW), dtype=ACC)
    acc_i = tl.zeros((BH, BW), dtype=ACC)
    for g in range(E):
        tb = (g * R + c) * NK
        for i in range(NK):
            shift = FIRST + i * SMALL
            # Clamped so a bad table cannot read out of bounds (the contract is [0, nk)).
            jh = tl.minimum(tl.maximum(tl.load(sh + tb + i), 0), NK - 1)
            jv = tl.minimum(tl.maximum(tl.load(sv + tb + i), 0), NK - 1)
            col = cols + MARGIN + shift
            mh = om & ((col >= 0) & (col < W + 2 * MARGIN))[None, :]
            acc_h += tl.load(base + jh * szc + zr + col[None, :] * szw, mask=mh, other=0.0).to(ACC)
            row = rows + MARGIN + shift
            mv = om & ((row >= 0) & (row < H + 2 * MARGIN))[:, None]
            acc_v += tl.load(base + jv * szc + row[:, None] * szh + zc, mask=mv, other=0.0).to(ACC)
        ji = tl.minimum(tl.maximum(tl.load(rho + g * R + c), 0), NK - 1)
        acc_i += tl.load(base + ji * szc + zr + zc, mask=om, other=0.0).to(ACC)
    out = b * syb + c.to(tl.int64) * syc + rows[:, None] * syh + cols[None, :] * syw
    tl.store(yh + out, acc_h.to(yh.dtype.element_ty), mask=om)
    tl.store(yv + out, acc_v.to(yv.dtype.element_ty), mask=om)
    tl.store(yi + out, acc_i.to(yi.dtype.element_ty), mask=om)


@triton.jit
def _bwd_kernel(
    gz, gh, gv, gi, ptr_h, slot_h, ptr_v, slot_v, cnt_i,
    R, NK, H, W, MARGIN, FIRST, SMALL,
    s_zb, s_zc, s_zh, s_zw, s_hb, s_hc, s_hh, s_hw,
    s_vb, s_vc, s_vh, s_vw, s_ib, s_ic, s_ih, s_iw,
    BH: tl.constexpr, BW: tl.constexpr, ACC: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0)
    b = (pid // (R * NK)).to(tl.int64)
    q = pid % (R * NK)
    c = (q // NK).to(tl.int64)
    u = tl.program_id(1) * BH + tl.arange(0, BH)
    v = tl.program_id(2) * BW + tl.arange(0, BW)
    zm = (u < H + 2 * MARGIN)[:, None] & (v < W + 2 * MARGIN)[None, :]
    h = u - MARGIN
    w = v - MARGIN
    hin = ((h >= 0) & (h < H))[:, None]
    win = ((w >= 0) & (w < W))[None, :]
    acc = tl.zeros((BH, BW), dtype=ACC)
    base_h = gh + b * s_hb + c * s_hc + h[:, None] * s_hh
    for t in range(tl.load(ptr_h + q), tl.load(ptr_h + q + 1)):
        col = w - (FIRST + tl.load(slot_h + t) * SMALL)
        m = zm & hin & ((col >= 0) & (col < W))[None, :]
        acc += tl.load(base_h + col[None, :] * s_hw, mask=m, other=0.0).to(ACC)
    base_v = gv + b * s_vb + c * s_vc + w[None, :] * s_vw
    for t in range(tl.load(ptr_v + q), tl.load(ptr_v + q + 1)):
        row = h - (FIRST + tl.load(slot_v + t) * SMALL)
        m = zm & win & ((row >= 0) & (row < H))[:, None]
        acc += tl.load(base_v + row[:, None] * s_vh, mask=m, other=0.0).to(ACC)
    cnt = tl.load(cnt_i + q).to(ACC)
    ptr = gi + b * s_ib + c * s_ic + h[:, None] * s_ih + w[None, :] * s_iw
    acc += cnt * tl.load(ptr, mask=zm & hin & win, other=0.0).to(ACC)
    out = b * s_zb + q.to(tl.int64) * s_zc + u[:, None] * s_zh + v[None, :] * s_zw
    tl.store(gz + out, acc.to(gz.dtype.element_ty), mask=zm)


def _acc(dtype: torch.dtype):
    return tl.float64 if dtype == torch.float64 else tl.float32


def _tile(x: torch.Tensor) -> tuple[int, int]:
    return (8, 8) if x.device.type == "cpu" else (8, 64)


def _geometry(big: int, small: int) -> tuple[int, int]:
    """``(margin e, offset of slot 0)``; slot ``i`` sits at ``first + i*small``."""
    return (small - 1) - small // 2, small // 2 - big // 2


def shift_add_forward(z, sigma_h, sigma_v, rho, big, small, out_format):
    """``(Y_H, Y_V, Y_I)`` from ``Z``; see ``convnas.kernels.sw_shift_add.shift_add``."""
    e, first = _geometry(big, small)
    edges, rep, nk = sigma_h.shape
    bsz, _, hp, wp = z.shape
    h, w = hp - 2 * e, wp - 2 * e
    outs = [
        torch.empty((bsz, rep, h, w), device=z.device, dtype=z.dtype, memory_format=out_format)
        for _ in range(3)
    ]
    bh, bw = _tile(z)
    grid = (bsz * rep, triton.cdiv(h, bh), triton.cdiv(w, bw))
    tables = [t.to(torch.int32).contiguous() for t in (sigma_h, sigma_v, rho)]
    _fwd_kernel[grid](
        z, *tables, *outs, rep, nk, edges, h, w, e, first, small,
        *z.stride(), *outs[0].stride(), BH=bh, BW=bw, ACC=_acc(z.dtype),
    )  # fmt: skip
    return tuple(outs)


def _csr(sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per Z channel ``c*nk + j``: the slots ``i`` with ``sigma[g, c, i] == j``, over all ``g``."""
    edges, rep, nk = sigma.shape
    dev = sigma.device
    key = (torch.arange(rep, device=dev).view(1, rep, 1) * nk + sigma).reshape(-1)
    slot = torch.arange(nk, device=dev).expand(edges, rep, nk).reshape(-1)
    order = torch.argsort(key, stable=True)
    counts = torch.zeros(rep * nk, dtype=torch.long, device=dev).index_add_(
        0, key, torch.ones_like(key)
    )
    ptr = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
    return ptr.to(torch.int32), slot[order].to(torch.int32).contiguous()


def shift_add_backward(gy_h, gy_v, gy_i, sigma_h, sigma_v, rho, big, small, out_format):
    """``dL/dZ`` from the three output gradients (the exact adjoint of the forward)."""
    e, first = _geometry(big, small)
    edges, rep, nk = sigma_h.shape
    bsz, _, h, w = gy_h.shape
    gz = torch.empty(
        (bsz, rep * nk, h + 2 * e, w + 2 * e),
        device=gy_h.device,
        dtype=gy_h.dtype,
        memory_format=out_format,
    )
    ptr_h, slot_h = _csr(sigma_h)
    ptr_v, slot_v = _csr(sigma_v)
    key_i = (torch.arange(rep, device=rho.device).view(1, rep) * nk + rho).reshape(-1)
    cnt_i = torch.zeros(rep * nk, dtype=torch.long, device=rho.device)
    cnt_i = cnt_i.index_add_(0, key_i, torch.ones_like(key_i)).to(torch.int32)
    bh, bw = _tile(gz)
    grid = (bsz * rep * nk, triton.cdiv(h + 2 * e, bh), triton.cdiv(w + 2 * e, bw))
    _bwd_kernel[grid](
        gz, gy_h, gy_v, gy_i, ptr_h, slot_h, ptr_v, slot_v, cnt_i,
        rep, nk, h, w, e, first, small,
        *gz.stride(), *gy_h.stride(), *gy_v.stride(), *gy_i.stride(),
        BH=bh, BW=bw, ACC=_acc(gz.dtype),
    )  # fmt: skip
    return gz
