"""What operators and kernels both need: padding arithmetic and argument checks."""

from __future__ import annotations

from convnas.layers.checks import positive_int, positive_pair
from convnas.layers.padding import (
    channel_quarters,
    conv_output_size,
    even_kernel_group_pads,
    pair,
    same_padding,
    tf_same_pads,
)

__all__ = [
    "channel_quarters",
    "conv_output_size",
    "even_kernel_group_pads",
    "pair",
    "positive_int",
    "positive_pair",
    "same_padding",
    "tf_same_pads",
]
