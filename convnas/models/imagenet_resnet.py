"""ImageNet ResNets in torchvision's layout, for cost references and ``convert_model``.

He, Zhang, Ren and Sun, "Deep Residual Learning for Image Recognition", CVPR 2016, in the
"v1.5" form torchvision uses: the stride of a bottleneck sits on its 3x3 conv, the projection
shortcut is a strided 1x1 conv plus BN. Module and parameter names follow torchvision
(``conv1``, ``bn1``, ``layer1.0.conv2``, ``layer2.0.downsample.0``, ``fc``), so state dicts
line up. Every 3x3 is a plain ``nn.Conv2d``, so converters can find and swap them.
ResNet-50 has 25,557,032 parameters and 4.09 G multiply-accumulates at 224x224.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from convnas.errors import OperatorArgumentError

__all__ = ["Bottleneck", "ImageNetResNet", "resnet50", "resnet101"]


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride), 1x1 expand (x4), each followed by BN; ReLU."""

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int = 1) -> None:
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ImageNetResNet(nn.Module):
    """Bottleneck ResNet: 7x7/2 stem, 3x3/2 max pool, four stages, global pool, classifier.

    Args:
        blocks: bottlenecks per stage, e.g. (3, 4, 6, 3) for ResNet-50.
        num_classes: size of the classifier.
        base_width: width of the first stage's 3x3 (64; the stages double it).
        in_channels: image channels.
    """

    # the four stages, set in __init__ as layer1..layer4
    layer1: nn.Sequential
    layer2: nn.Sequential
    layer3: nn.Sequential
    layer4: nn.Sequential

    def __init__(
        self,
        blocks: Sequence[int],
        num_classes: int = 1000,
        *,
        base_width: int = 64,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if len(blocks) != 4 or any(not isinstance(b, int) or b < 1 for b in blocks):
            raise OperatorArgumentError(
                f"blocks must be 4 positive ints (blocks per stage), but got {tuple(blocks)!r}"
            )
        self.conv1 = nn.Conv2d(in_channels, base_width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(base_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        channels = base_width
        for stage, count in enumerate(blocks):
            width = base_width * 2**stage
            layers = []
            for b in range(count):
                stride = 2 if stage > 0 and b == 0 else 1
                layers.append(Bottleneck(channels, width, stride))
                channels = width * Bottleneck.expansion
            setattr(self, f"layer{stage + 1}", nn.Sequential(*layers))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet50(num_classes: int = 1000) -> ImageNetResNet:
    """ResNet-50 in torchvision's layout (25,557,032 parameters with 1000 classes)."""
    return ImageNetResNet((3, 4, 6, 3), num_classes)


def resnet101(num_classes: int = 1000) -> ImageNetResNet:
    """ResNet-101 in torchvision's layout (44,549,160 parameters with 1000 classes)."""
    return ImageNetResNet((3, 4, 23, 3), num_classes)
