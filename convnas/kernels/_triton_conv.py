"""Triton implicit-GEMM convolution with indexed channels and per-channel offsets.

One generic kernel family serves the even-kernel conv (per-quarter spatial offsets) and the osep
grouped conv (shuffle and uneven groups as index tables). The logical problem of one launch::

    y[b, slot_out[s], oh, ow] = sum_{r, a, c} W[s, r, a, c] * x[b, in_index[p], ih, iw]
    with  s = g*M + col,  p = g*N + r,  ih = oh*SH + a + off_h[p],  iw = ow*SW + c + off_w[p]

``in_index[p] = -1`` reads zeros (padded channel), ``slot_out[s] = -1`` drops the output, and
reads outside the image are zeros. Every tensor is addressed through its strides, so NCHW and
channels_last both work without a copy. Importing this module imports triton.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from convnas.kernels._support import interpreting

__all__ = ["conv_dgrad", "conv_forward", "conv_wgrad"]


@triton.jit
def _fwd_kernel(
    x,
    w,
    y,
    in_index,
    off_h,
    off_w,
    slot_out,
    B,
    H,
    W,
    HO,
    WO,
    M,
    N,
    KH: tl.constexpr,
    KW: tl.constexpr,
    SH,
    SW,
    sxb,
    sxc,
    sxh,
    sxw,
    syb,
    syc,
    syh,
    syw,
    BM: tl.constexpr,
    BN: tl.constexpr,
    BK: tl.constexpr,
    ACC: tl.constexpr,
    DOT_F32: tl.constexpr,
    IP: tl.constexpr,
):
    pid_m = tl.program_id(0)
    tiles_n = tl.cdiv(M, BN)
    g = tl.program_id(1) // tiles_n
    pix = pid_m * BM + tl.arange(0, BM)
    pmask = pix < B * HO * WO
    b = (pix // (HO * WO)).to(tl.int64)
    oh = (pix % (HO * WO)) // WO
    ow = pix % WO
    col = (tl.program_id(1) % tiles_n) * BN + tl.arange(0, BN)
    cmask = col < M
    slot = g * M + col
    kt = N * KH * KW
    acc = tl.zeros((BM, BN), dtype=ACC)
    for k0 in range(0, kt, BK):
        kk = k0 + tl.arange(0, BK)
        kmask = kk < kt
        r = kk // (KH * KW)
        a = (kk % (KH * KW)) // KW
        c = kk % KW
        ch = tl.load(in_index + g * N + r, mask=kmask, other=-1)
        ih = (
            oh[:, None] * SH + a[None, :] + tl.load(off_h + g * N + r, mask=kmask, other=0)[None, :]
        )
        iw = (
            ow[:, None] * SW + c[None, :] + tl.load(off_w + g * N + r, mask=kmask, other=0)[None, :]
        )
        amask = pmask[:, None] & (ch >= 0)[None, :] & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
        av = tl.load(
            x + b[:, None] * sxb + ch[None, :] * sxc + ih * sxh + iw * sxw, mask=amask, other=0.0
        )
        bv = tl.load(
            w + slot[None, :] * kt + kk[:, None], mask=kmask[:, None] & cmask[None, :], other=0.0
        )
        if DOT_F32:
            av, bv = av.to(tl.float32), bv.to(tl.float32)
        acc = tl.dot(av, bv, acc, input_precision=IP, out_dtype=ACC)
    oc = tl.load(slot_out + slot, mask=cmask, other=-1)
    ptr = y + b[:, None] * syb + oc[None, :] * syc + oh[:, None] * syh + ow[:, None] * syw
    tl.store(ptr, acc.to(y.dtype.element_ty), mask=pmask[:, None] & (oc >= 0)[None, :])


@triton.jit
def _dgrad_kernel(
    gy,
    w,
    gx,
    in_index,
    slot_out,
    B,
    H,
    W,
    HO,
    WO,
    M,
    N,
    R0,
    R1,
    OFFH,
    OFFW,
    KH: tl.constexpr,
    KW: tl.constexpr,
    SH,
    SW,
    sgb,
    sgc,
    sgh,
    sgw,
    sxb,
    sxc,
    sxh,
    sxw,
    BM: tl.constexpr,
    BN: tl.constexpr,
    BK: tl.constexpr,
    ACC: tl.constexpr,
    DOT_F32: tl.constexpr,
    IP: tl.constexpr,
):
    pid_m = tl.program_id(0)
    tiles_n = tl.cdiv(R1 - R0, BN)
    g = tl.program_id(1) // tiles_n
    pix = pid_m * BM + tl.arange(0, BM)
    pmask = pix < B * H * W
    b = (pix // (H * W)).to(tl.int64)
    ih = (pix % (H * W)) // W
    iw = pix % W
    r = R0 + (tl.program_id(1) % tiles_n) * BN + tl.arange(0, BN)
    rmask = r < R1
    kt = M * KH * KW
    acc = tl.zeros((BM, BN), dtype=ACC)
    for k0 in range(0, kt, BK):
        kk = k0 + tl.arange(0, BK)
        kmask = kk < kt
        col = kk // (KH * KW)
        tap = kk % (KH * KW)
        th = ih[:, None] - (tap // KW)[None, :] - OFFH
        tw = iw[:, None] - (tap % KW)[None, :] - OFFW
        oh = th // SH
        ow = tw // SW
        oc = tl.load(slot_out + g * M + col, mask=kmask, other=-1)
        amask = pmask[:, None] & (oc >= 0)[None, :] & (th >= 0) & (tw >= 0)
        amask = amask & (th % SH == 0) & (tw % SW == 0) & (oh < HO) & (ow < WO)
        av = tl.load(
            gy + b[:, None] * sgb + oc[None, :] * sgc + oh * sgh + ow * sgw, mask=amask, other=0.0
        )
        wofs = (g * M + col[:, None]) * (N * KH * KW) + r[None, :] * (KH * KW) + tap[:, None]
        bv = tl.load(w + wofs, mask=kmask[:, None] & rmask[None, :], other=0.0)
        if DOT_F32:
            av, bv = av.to(tl.float32), bv.to(tl.float32)
        acc = tl.dot(av, bv, acc, input_precision=IP, out_dtype=ACC)
    xc = tl.load(in_index + g * N + r, mask=rmask, other=-1)
    ptr = gx + b[:, None] * sxb + xc[None, :] * sxc + ih[:, None] * sxh + iw[:, None] * sxw
    tl.store(ptr, acc.to(gx.dtype.element_ty), mask=pmask[:, None] & (xc >= 0)[None, :])


@triton.jit
def _wgrad_kernel(
    gy,
    x,
    part,
    in_index,
    off_h,
    off_w,
    slot_out,
    B,
    H,
    W,
    HO,
    WO,
    M,
    N,
    GM,
    KH: tl.constexpr,
    KW: tl.constexpr,
    SH,
    SW,
    SPLIT,
    sgb,
    sgc,
    sgh,
    sgw,
    sxb,
    sxc,
    sxh,
    sxw,
    BM: tl.constexpr,
    BN: tl.constexpr,
    BK: tl.constexpr,
    ACC: tl.constexpr,
    DOT_F32: tl.constexpr,
    IP: tl.constexpr,
):
    tiles_m = tl.cdiv(M, BM)
    g = tl.program_id(0) // tiles_m
    col = (tl.program_id(0) % tiles_m) * BM + tl.arange(0, BM)
    cmask = col < M
    oc = tl.load(slot_out + g * M + col, mask=cmask, other=-1)
    kt = N * KH * KW
    kk = tl.program_id(1) * BN + tl.arange(0, BN)
    kmask = kk < kt
    r = kk // (KH * KW)
    a = (kk % (KH * KW)) // KW
    c = kk % KW
    ch = tl.load(in_index + g * N + r, mask=kmask, other=-1)
    dh = a + tl.load(off_h + g * N + r, mask=kmask, other=0)
    dw = c + tl.load(off_w + g * N + r, mask=kmask, other=0)
    npix = B * HO * WO
    acc = tl.zeros((BM, BN), dtype=ACC)
    for p0 in range(tl.program_id(2) * BK, npix, SPLIT * BK):
        pix = p0 + tl.arange(0, BK)
        pmask = pix < npix
        b = (pix // (HO * WO)).to(tl.int64)
        oh = (pix % (HO * WO)) // WO
        ow = pix % WO
        amask = (cmask & (oc >= 0))[:, None] & pmask[None, :]
        av = tl.load(
            gy + b[None, :] * sgb + oc[:, None] * sgc + oh[None, :] * sgh + ow[None, :] * sgw,
            mask=amask,
            other=0.0,
        )
        ih = oh[:, None] * SH + dh[None, :]
        iw = ow[:, None] * SW + dw[None, :]
        bmask = pmask[:, None] & (kmask & (ch >= 0))[None, :]
        bmask = bmask & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
        bv = tl.load(
            x + b[:, None] * sxb + ch[None, :] * sxc + ih * sxh + iw * sxw, mask=bmask, other=0.0
        )
        if DOT_F32:
            av, bv = av.to(tl.float32), bv.to(tl.float32)
        acc = tl.dot(av, bv, acc, input_precision=IP, out_dtype=ACC)
    ptr = part + tl.program_id(2).to(tl.int64) * GM * kt
    ptr = ptr + (g * M + col[:, None]) * kt + kk[None, :]
    tl.store(ptr, acc, mask=cmask[:, None] & kmask[None, :])


def _cfg(dtype: torch.dtype) -> dict:
    """Accumulator, dot precision and the interpreter's bf16/fp16 dot workaround."""
    acc = tl.float64 if dtype == torch.float64 else tl.float32
    tf32 = dtype == torch.float32 and torch.backends.cudnn.allow_tf32 and not interpreting()
    # triton 3.9's interpreter computes wrong tl.dot results for bf16 operands: upcast there.
    dot_f32 = interpreting() and dtype in (torch.float16, torch.bfloat16)
    return {"ACC": acc, "DOT_F32": dot_f32, "IP": "tf32" if tf32 else "ieee"}


def _blocks(x: torch.Tensor) -> tuple[int, int, int]:
    # Small tiles in the interpreter keep CPU runs fast; on GPU a fixed, untuned 64x64x32.
    return (16, 16, 16) if x.device.type == "cpu" else (64, 64, 32)


def _i32(t: torch.Tensor) -> torch.Tensor:
    return t.to(dtype=torch.int32).contiguous()


def conv_forward(
    x, weight, in_index, off_h, off_w, slot_out, groups, out_channels, out_hw, stride, out_format
):
    """Forward; the index tables and offsets are those of the module docstring."""
    bsz, _, h, w = x.shape
    gm, n, kh, kw = weight.shape
    ho, wo = out_hw
    y = torch.empty(
        (bsz, out_channels, ho, wo), device=x.device, dtype=x.dtype, memory_format=out_format
    )
    bm, bn, bk = _blocks(x)
    m = gm // groups
    grid = (triton.cdiv(bsz * ho * wo, bm), groups * triton.cdiv(m, bn))
    _fwd_kernel[grid](
        x,
        weight.contiguous(),
        y,
        _i32(in_index),
        _i32(off_h),
        _i32(off_w),
        _i32(slot_out),
        bsz,
        h,
        w,
        ho,
        wo,
        m,
        n,
        kh,
        kw,
        stride[0],
        stride[1],
        *x.stride(),
        *y.stride(),
        BM=bm,
        BN=bn,
        BK=bk,
        **_cfg(x.dtype),
    )
    return y


def conv_dgrad(grad, weight, in_index, slot_out, groups, x_shape, stride, segments, x_format):
    """Input gradient; ``segments`` are ``(r0, r1, off_h, off_w)`` ranges of uniform offset."""
    bsz, cx, h, w = x_shape
    gm, n, kh, kw = weight.shape
    ho, wo = grad.shape[-2:]
    gx = torch.empty(x_shape, device=grad.device, dtype=grad.dtype, memory_format=x_format)
    gx.zero_()  # channels that no input slot reads get no store
    bm, bn, bk = _blocks(grad)
    m = gm // groups
    weight, in_index, slot_out = weight.contiguous(), _i32(in_index), _i32(slot_out)
    for r0, r1, oh, ow in segments:
        if r1 <= r0:
            continue
        grid = (triton.cdiv(bsz * h * w, bm), groups * triton.cdiv(r1 - r0, bn))
        _dgrad_kernel[grid](
            grad,
            weight,
            gx,
            in_index,
            slot_out,
            bsz,
            h,
            w,
            ho,
            wo,
            m,
            n,
            r0,
            r1,
            oh,
            ow,
            kh,
            kw,
            stride[0],
            stride[1],
            *grad.stride(),
            *gx.stride(),
            BM=bm,
            BN=bn,
            BK=bk,
            **_cfg(grad.dtype),
        )
    return gx


def conv_wgrad(grad, x, weight_shape, in_index, off_h, off_w, slot_out, groups, stride):
    """Weight gradient with a deterministic split over pixels (partials summed, no atomics)."""
    bsz, _, h, w = x.shape
    gm, n, kh, kw = weight_shape
    ho, wo = grad.shape[-2:]
    bm, bn, bk = _blocks(x)
    m = gm // groups
    tiles = groups * triton.cdiv(m, bm) * triton.cdiv(n * kh * kw, bn)
    chunks = triton.cdiv(bsz * ho * wo, bk)
    target = 2 if x.device.type == "cpu" else 4 * _sm_count(x.device)
    split = max(1, min(chunks, triton.cdiv(target, tiles)))
    acc_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    part = torch.empty((split, gm, n * kh * kw), device=x.device, dtype=acc_dtype)
    grid = (groups * triton.cdiv(m, bm), triton.cdiv(n * kh * kw, bn), split)
    _wgrad_kernel[grid](
        grad,
        x,
        part,
        _i32(in_index),
        _i32(off_h),
        _i32(off_w),
        _i32(slot_out),
        bsz,
        h,
        w,
        ho,
        wo,
        m,
        n,
        gm,
        kh,
        kw,
        stride[0],
        stride[1],
        split,
        *grad.stride(),
        *x.stride(),
        BM=bm,
        BN=bn,
        BK=bk,
        **_cfg(x.dtype),
    )
    return part.sum(0).to(x.dtype).view(weight_shape)


def _sm_count(device: torch.device) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count
