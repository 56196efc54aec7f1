"""The DARTS primitives and the plain convolutions.

Liu, Simonyan and Yang, "DARTS: Differentiable Architecture Search", ICLR 2019
(``cnn/operations.py`` of the authors' code, re-implemented here). Semantics follow DARTS:
separable and dilated convolutions are ReLU-conv-BN stacks, ``skip_connect`` is the identity at
stride 1 and a factorized reduce at stride 2, ``none`` outputs zeros, pools keep the channels.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from convnas.errors import OperatorArgumentError
from convnas.layers.padding import same_padding
from convnas.operators.operator_registry import register_operator

__all__ = [
    "DilConv",
    "FactorizedReduce",
    "Identity",
    "Pool",
    "ReLUConvBN",
    "SepConv",
    "Zero",
]

_PAPER = "Liu et al., DARTS, ICLR 2019"


class ReLUConvBN(nn.Sequential):
    """ReLU, then a convolution, then BatchNorm."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int,
        padding: int,
        *,
        affine: bool = True,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride,
                padding,
                bias=False,
                device=device,
                dtype=dtype,
            ),
            nn.BatchNorm2d(out_channels, affine=affine, device=device, dtype=dtype),
        )


class DilConv(nn.Sequential):
    """ReLU, depthwise dilated conv, pointwise conv, BatchNorm."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int,
        dilation: int,
        *,
        affine: bool = True,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        pad = same_padding(kernel_size, dilation)
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(
                in_channels,
                in_channels,
                kernel_size,
                stride,
                pad,
                dilation=dilation,
                groups=in_channels,
                bias=False,
                device=device,
                dtype=dtype,
            ),
            nn.Conv2d(in_channels, out_channels, 1, bias=False, device=device, dtype=dtype),
            nn.BatchNorm2d(out_channels, affine=affine, device=device, dtype=dtype),
        )


class SepConv(nn.Sequential):
    """Two stacked dilation-1 DilConvs, the first carrying the stride (DARTS' SepConv)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int,
        *,
        affine: bool = True,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__(
            DilConv(
                in_channels,
                in_channels,
                kernel_size,
                stride,
                1,
                affine=affine,
                device=device,
                dtype=dtype,
            ),
            DilConv(
                in_channels,
                out_channels,
                kernel_size,
                1,
                1,
                affine=affine,
                device=device,
                dtype=dtype,
            ),
        )


class Identity(nn.Identity):
    """``skip_connect`` at stride 1: an ``nn.Identity``, so hosts that test for identity edges
    (to skip drop-path on them, as DARTS-family evaluation networks do) recognise it."""


class Zero(nn.Module):
    """Outputs zeros of the strided shape; a candidate meaning "no edge"."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def extra_repr(self) -> str:
        return f"stride={self.stride}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class FactorizedReduce(nn.Module):
    """Halve the resolution with two offset stride-2 1x1 convs, concatenated, then BN.

    The first conv gets ``out_channels // 2`` channels and the second (odd pixel phase) the
    rest. At ``out_channels == 1`` there is no room for two paths: the single 1x1 conv samples
    the even phase (``conv_2`` is None), still giving ``(N, 1, ceil(H/2), ceil(W/2))``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        affine: bool = True,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        if in_channels < 1 or out_channels < 1:
            raise OperatorArgumentError(
                "FactorizedReduce needs in_channels >= 1 and out_channels >= 1, but got "
                f"in_channels={in_channels}, out_channels={out_channels}"
            )
        self.relu = nn.ReLU(inplace=False)
        # no class-level annotation: TorchScript cannot parse ``X | None`` there
        self.conv_2: nn.Conv2d | None
        if out_channels == 1:
            self.conv_1 = nn.Conv2d(in_channels, 1, 1, 2, bias=False, device=device, dtype=dtype)
            self.conv_2 = None
        else:
            half = out_channels // 2
            self.conv_1 = nn.Conv2d(in_channels, half, 1, 2, bias=False, device=device, dtype=dtype)
            self.conv_2 = nn.Conv2d(
                in_channels, out_channels - half, 1, 2, bias=False, device=device, dtype=dtype
            )
        self.bn = nn.BatchNorm2d(out_channels, affine=affine, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        conv_2 = self.conv_2
        if conv_2 is None:
            return self.bn(self.conv_1(x))
        # The second path sees the odd pixel phase; pad so odd sizes give ceil(H/2) rows.
        shifted = F.pad(x[:, :, 1:, 1:], (0, 1, 0, 1))
        return self.bn(torch.cat([self.conv_1(x), conv_2(shifted)], dim=1))


class Pool(nn.Module):
    """3x3 average (not counting padding, as DARTS) or max pooling with "same" padding."""

    def __init__(self, mode: str, stride: int) -> None:
        super().__init__()
        if mode not in ("avg", "max"):
            raise ValueError(f"mode must be 'avg' or 'max', but got {mode!r}")
        self.mode, self.stride = mode, stride
        self.pool: nn.AvgPool2d | nn.MaxPool2d
        if mode == "avg":
            self.pool = nn.AvgPool2d(3, stride, 1, count_include_pad=False)
        else:
            self.pool = nn.MaxPool2d(3, stride, 1)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, stride={self.stride}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x)


@register_operator("none", family="darts", kind="block", paper=_PAPER, channel_change=False)
def _none(
    in_channels: int, out_channels: int, stride: int, *, context=None, device=None, dtype=None
) -> nn.Module:
    """Zero: the absence of an edge."""
    return Zero(stride)


@register_operator("skip_connect", family="darts", kind="block", paper=_PAPER, channel_change=False)
def _skip(
    in_channels: int,
    out_channels: int,
    stride: int,
    *,
    context=None,
    device=None,
    dtype=None,
    affine: bool = True,
) -> nn.Module:
    """Identity at stride 1, factorized reduce at stride 2."""
    if stride == 1:
        return Identity()
    return FactorizedReduce(in_channels, out_channels, affine=affine, device=device, dtype=dtype)


@register_operator("avg_pool_3x3", family="darts", kind="block", paper=_PAPER, channel_change=False)
def _avg_pool(
    in_channels: int, out_channels: int, stride: int, *, context=None, device=None, dtype=None
) -> nn.Module:
    """3x3 average pooling (padding not counted)."""
    return Pool("avg", stride)


@register_operator("max_pool_3x3", family="darts", kind="block", paper=_PAPER, channel_change=False)
def _max_pool(
    in_channels: int, out_channels: int, stride: int, *, context=None, device=None, dtype=None
) -> nn.Module:
    """3x3 max pooling."""
    return Pool("max", stride)


def _register_sep(kernel_size: int) -> None:
    @register_operator(
        f"sep_conv_{kernel_size}x{kernel_size}", family="darts", kind="block", paper=_PAPER
    )
    def _factory(
        in_channels: int,
        out_channels: int,
        stride: int,
        *,
        context=None,
        device=None,
        dtype=None,
        affine: bool = True,
    ) -> nn.Module:
        return SepConv(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            affine=affine,
            device=device,
            dtype=dtype,
        )

    _factory.__doc__ = f"DARTS separable {kernel_size}x{kernel_size} conv (two ReLU-dw-pw-BN)."


def _register_dil(kernel_size: int) -> None:
    @register_operator(
        f"dil_conv_{kernel_size}x{kernel_size}", family="darts", kind="block", paper=_PAPER
    )
    def _factory(
        in_channels: int,
        out_channels: int,
        stride: int,
        *,
        context=None,
        device=None,
        dtype=None,
        affine: bool = True,
    ) -> nn.Module:
        return DilConv(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            2,
            affine=affine,
            device=device,
            dtype=dtype,
        )

    _factory.__doc__ = f"DARTS dilated {kernel_size}x{kernel_size} conv (ReLU-dw-pw-BN, d=2)."


for _k in (3, 5):
    _register_sep(_k)
    _register_dil(_k)


@register_operator("conv_3x3", family="dense", kind="conv", paper="standard convolution")
def _conv_3x3(
    in_channels: int, out_channels: int, stride: int, *, context=None, device=None, dtype=None
) -> nn.Module:
    """Plain 3x3 convolution, padding 1, no bias."""
    return nn.Conv2d(
        in_channels,
        out_channels,
        3,
        stride,
        same_padding(3),
        bias=False,
        device=device,
        dtype=dtype,
    )


@register_operator("conv_1x1", family="dense", kind="conv", paper="standard convolution")
def _conv_1x1(
    in_channels: int, out_channels: int, stride: int, *, context=None, device=None, dtype=None
) -> nn.Module:
    """Plain 1x1 convolution, no bias."""
    return nn.Conv2d(
        in_channels, out_channels, 1, stride, 0, bias=False, device=device, dtype=dtype
    )
