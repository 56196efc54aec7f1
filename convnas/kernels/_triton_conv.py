"""Triton implicit-GEMM convolution with indexed channels and per-channel offsets.

One generic kernel family serves the even-kernel conv (per-quarter spatial offsets) and the osep
grouped conv (shuffle and uneven groups as index tables). The logical problem of one launch::

    y[b, slot_out[s], oh, ow] = sum_{r, a, c} W[s, r, a, c] * x[b, in_index[p], ih, iw]
    with  s = g*M + col,  p = g*N + r,  ih = oh*SH + a + off_h[p],  iw = ow*SW + c + off_w[p]

``in_index[p] = -1`` reads zeros (padded channel), ``slot_out[s] = -1`` drops the output, and
reads outside the image are zeros. Every tensor is addressed through its strides, so NCHW and
channels_last both work without a copy. This module launches the kernels of
:mod:`convnas.kernels._triton_conv_kernels`. Importing it imports triton.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from convnas.kernels._support import interpreting
from convnas.kernels._triton_conv_kernels import dgrad_kernel, fwd_kernel, wgrad_kernel

__all__ = ["conv_dgrad", "conv_forward", "conv_wgrad"]


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
    fwd_kernel[grid](
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
        dgrad_kernel[grid](
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
    wgrad_kernel[grid](
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
