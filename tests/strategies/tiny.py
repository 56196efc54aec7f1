"""The tiny search space the strategy tests share (ResNet-8, 4 channels, two candidates)."""

from __future__ import annotations

from convnas.search_space import get_space


def tiny_space():
    return get_space(
        "resnet",
        candidates=["conv_3x3", "c2sp"],
        depth=8,
        widths=[4, 4, 4],
        num_classes=4,
        input_shape=[3, 8, 8],
    )
