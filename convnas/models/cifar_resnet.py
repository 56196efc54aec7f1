"""Reference networks of the papers: the CIFAR ResNet of He et al. (2016, section 4.2).

Any registered operator takes the place of every 3x3 convolution of the residual blocks; the
stem stays a plain 3x3 (as in the C2sp, osep and CSG papers). Shortcut "A" is the parameter-free
identity with zero-padded channels, "B" a 1x1 projection with BN where the shape changes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from convnas.errors import OperatorArgumentError
from convnas.operators import BuildContext, create_operator

__all__ = ["BasicBlock", "CifarResNet", "ConvFactory", "cifar_resnet", "resnet_layout"]

ConvFactory = Callable[[int, int, int, int, BuildContext], nn.Module]
"""``factory(position, in_channels, out_channels, stride, context) -> module``."""


def resnet_layout(
    depth: int,
    widths: Sequence[int] = (16, 32, 64),
    width_multiplier: float = 1.0,
) -> list[tuple[int, int, int]]:
    """``(in_channels, out_channels, stride)`` of every block conv position, in order.

    Each basic block contributes two positions: its first conv (carrying the stride) and its
    second conv.
    """
    if not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise OperatorArgumentError(
            f"CIFAR ResNet depth must be 6n+2 with n >= 1 (20, 32, 44, 56, 110, ...), "
            f"but got depth={depth!r}"
        )
    if width_multiplier <= 0:
        raise OperatorArgumentError(f"width_multiplier must be > 0, but got {width_multiplier}")
    stage_widths = [max(1, int(width_multiplier * w)) for w in widths]
    blocks_per_stage = (depth - 2) // 6
    positions = []
    in_ch = stage_widths[0]
    for stage, out_ch in enumerate(stage_widths):
        for block in range(blocks_per_stage):
            stride = 2 if stage > 0 and block == 0 else 1
            positions.append((in_ch, out_ch, stride))
            positions.append((out_ch, out_ch, 1))
            in_ch = out_ch
    return positions


class _ShortcutA(nn.Module):
    """Parameter-free shortcut: subsample, then zero-pad the new channels on both sides."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.stride, self.extra = stride, out_channels - in_channels
        if self.extra < 0:
            raise OperatorArgumentError(
                f"shortcut 'A' cannot reduce channels ({in_channels} -> {out_channels}); use 'B'"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.extra:
            before = self.extra // 2
            x = F.pad(x, (0, 0, 0, 0, before, self.extra - before))
        return x


class BasicBlock(nn.Module):
    """conv-BN-ReLU-conv-BN plus shortcut, then ReLU; the convs come from a factory."""

    def __init__(
        self,
        conv1: nn.Module,
        conv2: nn.Module,
        in_channels: int,
        out_channels: int,
        stride: int,
        shortcut: str,
    ) -> None:
        super().__init__()
        self.conv1, self.bn1 = conv1, nn.BatchNorm2d(out_channels)
        self.conv2, self.bn2 = conv2, nn.BatchNorm2d(out_channels)
        if stride == 1 and in_channels == out_channels:
            self.shortcut: nn.Module = nn.Identity()
        elif shortcut == "A":
            self.shortcut = _ShortcutA(in_channels, out_channels, stride)
        else:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """CIFAR ResNet whose block convolutions are built by ``conv_factory``.

    Args:
        depth: 6n+2 (20, 32, 44, 56, 110).
        conv_factory: builds the conv at each position of :func:`resnet_layout`.
        widths: base widths of the three stages.
        width_multiplier: scales every width, ``int(m * w)``.
        shortcut: "A" (identity, zero-padded) or "B" (1x1 projection + BN).
        num_classes: size of the classifier.
        in_channels: image channels.
        stem_stride: 1 for CIFAR, 2 for the ImageNet40 networks of the osep paper.
    """

    def __init__(
        self,
        depth: int,
        conv_factory: ConvFactory,
        *,
        widths: Sequence[int] = (16, 32, 64),
        width_multiplier: float = 1.0,
        shortcut: str = "A",
        num_classes: int = 10,
        in_channels: int = 3,
        stem_stride: int = 1,
    ) -> None:
        super().__init__()
        if shortcut not in ("A", "B"):
            raise OperatorArgumentError(f"shortcut must be 'A' or 'B', but got {shortcut!r}")
        if len(widths) != 3:
            raise OperatorArgumentError(f"widths must hold 3 stage widths, but got {widths!r}")
        layout = resnet_layout(depth, widths, width_multiplier)
        context = BuildContext()
        stem_width = layout[0][0]
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, stem_width, 3, stem_stride, 1, bias=False),
            nn.BatchNorm2d(stem_width),
            nn.ReLU(inplace=True),
        )
        blocks = []
        for b in range(len(layout) // 2):
            (cin, cout, stride), (mid_in, _, _) = layout[2 * b], layout[2 * b + 1]
            conv1 = conv_factory(2 * b, cin, cout, stride, context)
            conv2 = conv_factory(2 * b + 1, mid_in, cout, 1, context)
            blocks.append(BasicBlock(conv1, conv2, cin, cout, stride, shortcut))
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(layout[-1][1], num_classes)
        self.shared = context.modules
        self.depth, self.shortcut_type = depth, shortcut
        self._init_weights()

    def _init_weights(self) -> None:
        """He et al.'s init for the layers the network creates itself (stem, projection
        shortcuts, BN, classifier); the operators at the conv positions and the modules they
        share keep their own ``reset_parameters`` (re-initialising them here made an operator
        start differently in this network than standalone or in any other network)."""
        operators = {
            id(m)
            for block in self.blocks
            if isinstance(block, BasicBlock)
            for op in (block.conv1, block.conv2)
            for m in op.modules()
        }
        operators.update(id(m) for shared in self.shared.values() for m in shared.modules())
        for m in self.modules():
            if id(m) in operators:
                continue
            if type(m) is nn.Conv2d:
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d) and m.affine:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        return self.fc(torch.flatten(self.pool(x), 1))


def cifar_resnet(
    depth: int,
    op: str = "conv_3x3",
    *,
    widths: Sequence[int] = (16, 32, 64),
    width_multiplier: float = 1.0,
    shortcut: str = "A",
    num_classes: int = 10,
    op_args: Mapping[str, Any] | None = None,
    in_channels: int = 3,
    stem_stride: int = 1,
) -> CifarResNet:
    """A CIFAR ResNet with the registered operator ``op`` at every block convolution.

    Example:
        >>> net = cifar_resnet(56, "csg_conv_3x3", op_args={"slice_shape": (16, 16, 3, 3)})
    """
    args = dict(op_args or {})

    def factory(position: int, cin: int, cout: int, stride: int, ctx: BuildContext) -> nn.Module:
        return create_operator(op, cin, cout, stride, context=ctx, **args)

    return CifarResNet(
        depth,
        factory,
        widths=widths,
        width_multiplier=width_multiplier,
        shortcut=shortcut,
        num_classes=num_classes,
        in_channels=in_channels,
        stem_stride=stem_stride,
    )
