"""A depthwise-separable 3x3 convolution registered as ``example_dwsep_3x3``.

Howard et al., "MobileNets: Efficient Convolutional Neural Networks for Mobile Vision
Applications", 2017: a depthwise 3x3 (carrying the stride) followed by a pointwise 1x1, with no
norm or activation in between, so that it is a ``kind="conv"`` operator.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from convnas import register_operator

__all__ = ["DWSepConv2d"]


class DWSepConv2d(nn.Module):
    """Depthwise ``kernel_size`` conv then pointwise 1x1 conv, both without bias."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        *,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        self.depthwise = nn.Conv2d(
            in_channels,
            in_channels,
            kernel_size,
            stride,
            kernel_size // 2,
            groups=in_channels,
            bias=False,
            **kw,
        )
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False, **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


@register_operator(
    "example_dwsep_3x3",
    family="example",
    kind="conv",
    paper="Howard et al., MobileNets, 2017",
    description="Depthwise 3x3 then pointwise 1x1 (example plugin).",
)
def example_dwsep_3x3(
    in_channels: int,
    out_channels: int,
    stride: int,
    *,
    context=None,
    device=None,
    dtype=None,
) -> nn.Module:
    """Depthwise 3x3 then pointwise 1x1 (example plugin)."""
    return DWSepConv2d(in_channels, out_channels, 3, stride, device=device, dtype=dtype)
