"""Random, learnable image tensors for smoke tests and benchmarks (no files, no download).

Each class has a smooth random template (a 4x4 Gaussian pattern upsampled bilinearly, so it
differs between classes both in its per-channel mean and in its spatial layout); an image is its
class template plus Gaussian noise. A linear probe, or a small CNN with global pooling, learns it
within a few steps, so tiny searches show learning.
"""

from __future__ import annotations

import pathlib
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from convnas.data.registry import DatasetInfo, RawSplits, register_dataset
from convnas.errors import ConfigError

__all__ = ["synthetic_templates"]


def _positive(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, but got {name}={value!r}")
    return value


def synthetic_templates(
    num_classes: int, input_shape: tuple[int, int, int], generator: torch.Generator
) -> torch.Tensor:
    """The ``(num_classes, C, H, W)`` class templates."""
    c, h, w = input_shape
    low = torch.randn(num_classes, c, min(4, h), min(4, w), generator=generator)
    return F.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)


@register_dataset(
    "synthetic",
    num_classes=10,
    input_shape=(3, 32, 32),
    description="random class templates plus noise, in memory; options set the shape and size",
)
def synthetic(
    info: DatasetInfo,
    *,
    root: pathlib.Path | None,
    download: bool,
    num_classes: int = 10,
    input_shape: Sequence[int] = (3, 32, 32),
    size: int = 1024,
    test_size: int = 256,
    noise: float = 1.0,
    data_seed: int = 0,
) -> RawSplits:
    """``size`` training and ``test_size`` test images, class-balanced, already normalised.

    ``data_seed`` fixes the data itself; the ``seed`` of :func:`~convnas.data.load_dataset`
    only draws the validation split. ``root`` and ``download`` are ignored.
    """
    shape = tuple(input_shape) if isinstance(input_shape, (list, tuple)) else ()
    if len(shape) != 3:
        raise ConfigError(f"input_shape must be (C, H, W), but got input_shape={input_shape!r}")
    for i, dim in enumerate(shape):
        _positive(f"input_shape[{i}]", dim)
    if _positive("num_classes", num_classes) < 2:
        raise ConfigError(f"num_classes must be at least 2, but got num_classes={num_classes}")
    _positive("size", size)
    _positive("test_size", test_size)
    if not noise >= 0:
        raise ConfigError(f"noise must be >= 0, but got noise={noise!r}")
    generator = torch.Generator().manual_seed(data_seed)
    templates = synthetic_templates(num_classes, shape, generator)

    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.randperm(n, generator=generator) % num_classes
        images = templates[labels] + noise * torch.randn(n, *shape, generator=generator)
        return images, labels

    train_x, train_y = sample(size)
    test_x, test_y = sample(test_size)
    info = DatasetInfo(
        info.name,
        num_classes,
        shape,
        tuple(f"class_{k}" for k in range(num_classes)),
        description=info.description,
    )
    return RawSplits(info, train_x, train_y, test_x, test_y)
