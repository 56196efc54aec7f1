"""Even-sized kernels with symmetric padding: C2sp and C4sp.

Wu, Wang, Zhang, Zhang, Liu and Li, "Convolution with even-sized kernels and symmetric padding",
NeurIPS 2019 (``papers/000_*.txt``; official TensorFlow code ``boluoweifenda/CNN``,
``source/nets/resnet50_c2sp.py``). See OPERATORS.md section 1.

The input channels are split into four contiguous quarters (the first ``C mod 4`` one channel
larger). Each quarter is zero-padded towards its own corner -- G0 bottom-right, G1 top-left,
G2 bottom-left, G3 top-right -- so the four shifted receptive fields cancel out, and one
unpadded ("VALID") convolution runs over the re-assembled tensor at the requested stride.
The output has ``floor((H - 1) / s) + 1 = ceil(H / s)`` rows.

The asymmetric baselines ``c2``/``c4`` pad one-sidedly as TensorFlow's "SAME" does; they exist
to show the shift problem that symmetric padding removes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from convnas.errors import OperatorArgumentError
from convnas.layers.checks import positive_int
from convnas.layers.padding import (
    channel_quarters,
    even_kernel_group_pads,
    pair,
    tf_same_pads,
)
from convnas.operators.kernel_dispatch import gpu_kernels_for
from convnas.operators.operator_registry import register_operator

__all__ = ["DOWNSAMPLE_MODES", "EvenConv2d", "PooledEvenConv2d", "even_conv2d", "even_pad"]

_PAPER = "Wu et al., Convolution with even-sized kernels and symmetric padding, NeurIPS 2019"
DOWNSAMPLE_MODES = ("stride", "pool")

GroupPads = tuple[tuple[int, int, tuple[int, int, int, int]], ...]


def _check_kernel_size(kernel_size: Any) -> int:
    try:
        kh, kw = pair(kernel_size, "kernel_size")
    except ValueError as exc:
        raise OperatorArgumentError(str(exc)) from None
    if kh != kw or kh < 2 or kh % 2:
        raise OperatorArgumentError(
            "kernel_size must be a square even size >= 2 (2 for C2sp, 4 for C4sp), "
            f"but got kernel_size={kernel_size!r}; use an odd-kernel conv for odd sizes"
        )
    return kh


def _group_pads(
    channels: int, kernel_size: int, stride: tuple[int, int], symmetric: bool, size: Any
) -> GroupPads:
    """``(start, stop, (left, right, top, bottom))`` of every channel group."""
    if not symmetric:
        if size is None:
            if stride != (1, 1):
                raise OperatorArgumentError(
                    "the TF-SAME pads of c2/c4 at stride > 1 depend on the input size; "
                    f"pass input_size=(H, W) (stride={stride})"
                )
            size = (1, 1)  # at stride 1 the pads are (k-1)//2 before, the rest after
        top, bottom = tf_same_pads(size[0], kernel_size, stride[0])
        left, right = tf_same_pads(size[1], kernel_size, stride[1])
        return ((0, channels, (left, right, top, bottom)),)
    out, start = [], 0
    for count, pads in zip(
        channel_quarters(channels), even_kernel_group_pads(kernel_size), strict=True
    ):
        out.append((start, start + count, pads))
        start += count
    return tuple(out)


def even_pad(
    input: torch.Tensor, kernel_size: int, stride: int | tuple[int, int] = 1, symmetric: bool = True
) -> torch.Tensor:
    """Pad ``input`` (NCHW) so that a VALID even-kernel conv at ``stride`` gives ``ceil(H/s)``.

    Symmetric padding pads each channel quarter towards its corner (C2sp/C4sp); otherwise all
    channels get TensorFlow "SAME" padding (the asymmetric C2/C4 baseline).
    """
    k = _check_kernel_size(kernel_size)
    s = pair(stride, "stride")
    # int(): under torch.jit.trace and ONNX export the sizes are traced values
    height, width = (int(v) for v in input.shape[-2:])
    groups = _group_pads(int(input.shape[1]), k, s, symmetric, (height, width))
    parts = [F.pad(input[:, a:b], pads) for a, b, pads in groups if b > a]
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


def even_conv2d(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int | tuple[int, int] = 1,
    symmetric: bool = True,
) -> torch.Tensor:
    """Functional C2sp/C4sp (``symmetric=True``) or C2/C4 with TF-SAME padding.

    Args:
        input: ``(B, C, H, W)``.
        weight: ``(C_out, C, k, k)`` with ``k`` even.
        bias: optional ``(C_out,)``.
        stride: the convolution stride.
        symmetric: per-quarter symmetric padding, or one-sided TF-SAME padding.

    Returns:
        ``(B, C_out, ceil(H/s), ceil(W/s))``.
    """
    if weight.dim() != 4 or weight.shape[1] != input.shape[1]:
        raise OperatorArgumentError(
            "weight must have shape (C_out, C, k, k) with C the input channels, but got "
            f"weight {tuple(weight.shape)} for input {tuple(input.shape)}"
        )
    if weight.shape[-1] != weight.shape[-2]:
        raise OperatorArgumentError(f"weight must be square, but got {tuple(weight.shape)}")
    padded = even_pad(input, int(weight.shape[-1]), stride, symmetric)
    return F.conv2d(padded, weight, bias, stride)


class EvenConv2d(nn.Module):
    """Convolution with an even ``k x k`` kernel and symmetric (or TF-SAME) padding.

    Parameters are those of a plain ``k x k`` conv: ``weight (C_out, C_in, k, k)`` and an
    optional bias. ``reset_parameters`` uses He-normal, fan_in (std ``sqrt(2 / (C_in k^2))``),
    the initialiser of the official code (OPERATORS.md section 1.2); the bias, when present,
    is ``U(+-1/sqrt(fan_in))`` as in ``nn.Conv2d``.

    Args:
        in_channels: input channels; any count >= 1 (quarters may be empty when < 4).
        out_channels: output channels.
        kernel_size: even kernel size, 2 (C2sp) or 4 (C4sp); larger even sizes also work.
        stride: stride of the VALID conv; each channel quarter samples its own phase.
        symmetric: True for C2sp/C4sp, False for the asymmetric TF-SAME baselines.
        bias: add a learnable bias.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 2,
        stride: int | tuple[int, int] = 1,
        symmetric: bool = True,
        bias: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        positive_int("in_channels", in_channels)
        positive_int("out_channels", out_channels)
        k = _check_kernel_size(kernel_size)
        try:
            s = pair(stride, "stride")
        except ValueError as exc:
            raise OperatorArgumentError(str(exc)) from None
        if min(s) < 1:
            raise OperatorArgumentError(f"stride must be >= 1, but got stride={stride!r}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.symmetric = (k, k), s, bool(symmetric)
        self.weight = nn.Parameter(
            torch.empty(out_channels, in_channels, k, k, device=device, dtype=dtype)
        )
        # no class-level annotation: TorchScript cannot parse ``X | None`` there
        self.bias: nn.Parameter | None = (
            nn.Parameter(torch.empty(out_channels, device=device, dtype=dtype)) if bias else None
        )
        # the symmetric pads as [start, stop, left, right, top, bottom] for TorchScript
        self._script_pads: list[list[int]] = (
            [[a, b, *pads] for a, b, pads in _group_pads(in_channels, k, s, True, None)]
            if self.symmetric
            else [[0, 0, 0, 0, 0, 0]]  # unused; an empty list would have no TorchScript type
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He-normal (fan_in) weights; bias ``U(+-1/sqrt(fan_in))``."""
        nn.init.kaiming_normal_(self.weight, mode="fan_in", nonlinearity="relu")
        if self.bias is not None:
            bound = 1.0 / math.sqrt(self.weight[0].numel())
            nn.init.uniform_(self.bias, -bound, bound)

    def group_pads(self, input_size: tuple[int, int] | None = None) -> GroupPads:
        """The padding layout as data: ``(start, stop, (left, right, top, bottom))`` per group.

        Symmetric padding gives the four channel quarters G0..G3 (empty ones have
        ``start == stop``); a kernel may apply these offsets in its addressing instead of
        padding. The TF-SAME baseline gives one group; at stride > 1 it needs ``input_size``.
        """
        return _group_pads(
            self.in_channels, self.kernel_size[0], self.stride, self.symmetric, input_size
        )

    def extra_repr(self) -> str:
        text = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}"
        )
        if not self.symmetric:
            text += ", symmetric=False"
        if self.bias is None:
            text += ", bias=False"
        return text

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():
            return self._forward_script(x)
        return self._forward_eager(x)

    def _forward_script(self, x: torch.Tensor) -> torch.Tensor:
        # the pure-PyTorch path of even_conv2d with the pads precomputed (or, for the
        # TF-SAME baseline, computed from the input size as tf_same_pads does)
        k = self.kernel_size[0]
        sh, sw = self.stride
        if self.symmetric:
            parts: list[torch.Tensor] = []
            for g in self._script_pads:
                if g[1] > g[0]:
                    parts.append(F.pad(x[:, g[0] : g[1]], [g[2], g[3], g[4], g[5]]))
            padded = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        else:
            height, width = x.shape[-2], x.shape[-1]
            if sh == 1 and sw == 1:
                height, width = 1, 1
            total_h = max(((height + sh - 1) // sh - 1) * sh + k - height, 0)
            total_w = max(((width + sw - 1) // sw - 1) * sw + k - width, 0)
            top, left = total_h // 2, total_w // 2
            padded = F.pad(x, [left, total_w - left, top, total_h - top])
        return F.conv2d(padded, self.weight, self.bias, self.stride)

    @torch.jit.unused
    def _forward_eager(self, x: torch.Tensor) -> torch.Tensor:
        kernels = gpu_kernels_for(x)
        if kernels is not None and self.symmetric:
            # the offsets go into the kernel's addressing: no padded copy of the input
            return kernels.even_conv2d(x, self.weight, self.bias, self.stride, self.group_pads())
        return even_conv2d(x, self.weight, self.bias, self.stride, self.symmetric)


class PooledEvenConv2d(nn.Sequential):
    """The official downsampling form: 2x2 average pool at stride 2, then a stride-1 C2sp.

    The pool uses ``ceil_mode=True`` so odd sizes give ``ceil(H/2)`` rows; a window cut by the
    border averages the pixels it holds (as TF's SAME average pool, which ignores padding).
    """

    def __init__(self, conv: EvenConv2d) -> None:
        if conv.stride != (1, 1):
            raise OperatorArgumentError(f"the pooled conv must have stride 1, got {conv.stride}")
        super().__init__(nn.AvgPool2d(2, 2, ceil_mode=True), conv)

    def group_pads(self, input_size: tuple[int, int] | None = None) -> GroupPads:
        """The padding layout of the stride-1 conv (see :meth:`EvenConv2d.group_pads`)."""
        conv = cast(EvenConv2d, self[1])  # the constructor put the conv after the pool
        return conv.group_pads(input_size)


def _build(
    kernel_size: int,
    symmetric: bool,
    in_channels: int,
    out_channels: int,
    stride: int,
    downsample: str,
    device: Any,
    dtype: Any,
) -> nn.Module:
    if downsample not in DOWNSAMPLE_MODES:
        raise OperatorArgumentError(
            f"downsample must be one of {DOWNSAMPLE_MODES}, but got downsample={downsample!r}"
        )
    pooled = downsample == "pool" and stride == 2
    conv = EvenConv2d(
        in_channels,
        out_channels,
        kernel_size,
        1 if pooled else stride,
        symmetric=symmetric,
        device=device,
        dtype=dtype,
    )
    return PooledEvenConv2d(conv) if pooled else conv


def _register(name: str, kernel_size: int, symmetric: bool) -> None:
    factory: Callable[..., nn.Module]
    space: dict[str, tuple[Any, ...]]
    if symmetric:
        space = {"downsample": DOWNSAMPLE_MODES}

        def symmetric_factory(
            in_channels: int,
            out_channels: int,
            stride: int,
            *,
            context=None,
            device=None,
            dtype=None,
            downsample: str = "stride",
        ) -> nn.Module:
            return _build(
                kernel_size, True, in_channels, out_channels, stride, downsample, device, dtype
            )

        factory = symmetric_factory
        factory.__doc__ = (
            f"C{kernel_size}sp: {kernel_size}x{kernel_size} conv, symmetric per-quarter padding "
            '(downsample "stride" or "pool" = 2x2 avg pool then stride 1).'
        )
    else:
        space = {}

        def baseline_factory(
            in_channels: int,
            out_channels: int,
            stride: int,
            *,
            context=None,
            device=None,
            dtype=None,
        ) -> nn.Module:
            return _build(
                kernel_size, False, in_channels, out_channels, stride, "stride", device, dtype
            )

        factory = baseline_factory
        factory.__doc__ = (
            f"C{kernel_size} baseline: {kernel_size}x{kernel_size} conv with one-sided TF-SAME "
            "padding (shows the shift problem)."
        )
    register_operator(
        name,
        family="even",
        kind="conv",
        paper=_PAPER,
        strides=(1, 2),
        search_space=space,
        gpu_kernel=symmetric,
    )(factory)


for _name, _k, _sym in (("c2sp", 2, True), ("c4sp", 4, True), ("c2", 2, False), ("c4", 4, False)):
    _register(_name, _k, _sym)
