"""The ``@triton.jit`` kernels of the implicit-GEMM convolution with indexed channels.

Forward, input gradient and weight gradient of the one launch problem stated in
:mod:`convnas.kernels._triton_conv`, which picks the tiles and the accumulator and launches them:
``in_index[p] = -1`` reads zeros, ``slot_out[s] = -1`` drops the output, reads outside the
image are zeros, and every tensor is addressed through its strides. Importing this module
imports triton.
"""

from __future__ import annotations

import triton
import triton.language as tl

__all__ = ["dgrad_kernel", "fwd_kernel", "wgrad_kernel"]


@triton.jit
def fwd_kernel(
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
def dgrad_kernel(
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
def wgrad_kernel(
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
