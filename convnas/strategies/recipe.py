"""The DARTS evaluation recipe: drop-path, an auxiliary head and cutout, applied from outside.

DARTS (Liu et al., ICLR 2019, ``cnn/train.py`` and ``cnn/model.py``) retrains a derived cell
with three regularisers the search did not use:

* **drop-path**: in training, the output of every edge of a cell that is not an identity is
  zeroed for a whole sample with probability ``p`` (and scaled by ``1 / (1 - p)`` otherwise);
  ``p`` grows linearly from 0 to ``drop_path`` over the epochs (DARTS: 0.2);
* **auxiliary head**: a small classifier on the output of the cell at 2/3 depth (DARTS'
  ``AuxiliaryHeadCIFAR``) adds ``auxiliary_weight`` times its cross-entropy to the loss
  (DARTS: 0.4); it is used in training only and is not part of the saved model;
* **cutout** (DeVries & Taylor, 2017): one ``cutout x cutout`` square per training image, its
  centre uniform over the image and clipped at the borders, is set to zero (DARTS: 16).

They are applied by hooks and a separate head, so the trained network keeps the architecture's
exact modules and state-dict keys (exports and ``load_exported`` need nothing new). Random draws
come from a local ``torch.Generator``; the process RNG is never touched.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import torch
from torch import nn

from convnas.errors import ConfigError

__all__ = [
    "DARTS_RECIPE",
    "AuxiliaryHead",
    "Recipe",
    "apply_cutout",
    "auxiliary_tap",
    "drop_path_hooks",
]


@dataclass(frozen=True)
class Recipe:
    """Regularisers of a stand-alone training run; all off by default."""

    drop_path: float = 0.0
    auxiliary_weight: float = 0.0
    cutout: int = 0
    grad_clip: float | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.drop_path < 1.0:
            raise ConfigError(f"must be in [0, 1), but got {self.drop_path!r}", key="drop_path")
        if not self.auxiliary_weight >= 0.0:
            raise ConfigError(
                f"must be >= 0, but got {self.auxiliary_weight!r}", key="auxiliary_weight"
            )
        if not (isinstance(self.cutout, int) and self.cutout >= 0):
            raise ConfigError(f"must be an integer >= 0, but got {self.cutout!r}", key="cutout")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ConfigError(f"must be > 0, but got {self.grad_clip!r}", key="grad_clip")

    @property
    def needs_cells(self) -> bool:
        """Drop-path and the auxiliary head act on DARTS cells."""
        return self.drop_path > 0 or self.auxiliary_weight > 0

    def to_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


DARTS_RECIPE = Recipe(drop_path=0.2, auxiliary_weight=0.4, cutout=16, grad_clip=5.0)
"""DARTS' CIFAR-10 evaluation settings (with epochs 600, batch 96, lr 0.025, wd 3e-4)."""


def _cells(model: nn.Module) -> nn.ModuleList:
    cells = getattr(model, "cells", None)
    if not isinstance(cells, nn.ModuleList) or not all(hasattr(c, "edges") for c in cells):
        raise ConfigError(
            f"drop-path and the auxiliary head apply to DARTS cell networks (the darts "
            f"space), but got a {type(model).__name__}; leave drop_path and auxiliary_weight at "
            f"0 for this architecture (cutout works for any)",
            key="drop_path",
        )
    return cells


def apply_cutout(x: torch.Tensor, length: int, generator: torch.Generator) -> torch.Tensor:
    """``x`` (N, C, H, W) with one ``length`` square per image zeroed (a new tensor)."""
    if length <= 0:
        return x
    n, _, h, w = x.shape
    cy = torch.randint(h, (n,), generator=generator, device=generator.device).to(x.device)
    cx = torch.randint(w, (n,), generator=generator, device=generator.device).to(x.device)
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    half = length // 2
    # DARTS' Cutout: rows [cy - half, cy + half) clipped to the image, the same for columns.
    inside_y = (rows >= (cy - half).view(n, 1, 1)) & (rows < (cy + length - half).view(n, 1, 1))
    inside_x = (cols >= (cx - half).view(n, 1, 1)) & (cols < (cx + length - half).view(n, 1, 1))
    keep = ~(inside_y & inside_x)
    return x * keep.unsqueeze(1).to(x.dtype)


class _DropPath:
    """Per-sample edge dropping with a probability the training loop sets each epoch."""

    def __init__(self, generator: torch.Generator) -> None:
        self.prob = 0.0
        self.generator = generator

    def __call__(self, module: nn.Module, inputs: object, output: torch.Tensor) -> torch.Tensor:
        if not module.training or self.prob <= 0:
            return output
        keep = 1.0 - self.prob
        mask = torch.rand(
            (output.shape[0], 1, 1, 1), generator=self.generator, device=self.generator.device
        )
        mask = (mask < keep).to(device=output.device, dtype=output.dtype)
        return output / keep * mask


@contextlib.contextmanager
def drop_path_hooks(model: nn.Module, generator: torch.Generator) -> Iterator[_DropPath]:
    """Drop-path on every non-identity edge of ``model``'s cells while the block runs.

    Yields the hook; set its ``prob`` (DARTS: ``drop_path * epoch / epochs``).
    """
    hook = _DropPath(generator)
    edges: list[nn.Module] = [e for cell in _cells(model) for e in cell.edges.values()]  # type: ignore[operator]
    handles = [e.register_forward_hook(hook) for e in edges if not isinstance(e, nn.Identity)]
    try:
        yield hook
    finally:
        for handle in handles:
            handle.remove()


class AuxiliaryHead(nn.Module):
    """DARTS' ``AuxiliaryHeadCIFAR`` (for 8x8 features; other sizes pool adaptively to 2x2)."""

    def __init__(self, in_channels: int, num_classes: int, feature_size: int) -> None:
        super().__init__()
        pool: nn.Module
        if (feature_size - 5) // 3 + 1 == 2 and feature_size >= 5:
            pool = nn.AvgPool2d(5, stride=3, padding=0, count_include_pad=False)
        else:
            pool = nn.AdaptiveAvgPool2d(2)
        self.features = nn.Sequential(
            nn.ReLU(inplace=False),
            pool,
            nn.Conv2d(in_channels, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False),
            nn.BatchNorm2d(768),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


class _Tap:
    def __init__(self) -> None:
        self.value: torch.Tensor | None = None

    def __call__(self, module: nn.Module, inputs: object, output: torch.Tensor) -> None:
        self.value = output if module.training else None


@contextlib.contextmanager
def auxiliary_tap(
    model: nn.Module, num_classes: int, input_shape: tuple[int, ...] | list[int]
) -> Iterator[tuple[AuxiliaryHead, _Tap]]:
    """An auxiliary head for ``model`` and a tap holding its cell's output in training.

    The tap is the cell at index ``2 * layers // 3`` (DARTS: the second reduction cell);
    the head is built on the model's device, sized by one probe forward (BatchNorm statistics
    restored afterwards).
    """
    cells = _cells(model)
    index = 2 * len(cells) // 3
    tap = _Tap()
    handle = cells[index].register_forward_hook(tap)
    try:
        device = next(model.parameters()).device
        was_training = model.training
        model.train()
        with torch.no_grad():
            probe = torch.zeros((2, *input_shape), device=device)
            state = {k: v.clone() for k, v in model.state_dict().items()}
            model(probe)
            model.load_state_dict(state)  # the probe must not move BatchNorm statistics
        model.train(was_training)
        if tap.value is None:
            raise RuntimeError(f"cell {index} of the network did not run on a probe input")
        channels, size = int(tap.value.shape[1]), int(tap.value.shape[-1])
        tap.value = None
        head = AuxiliaryHead(channels, num_classes, size).to(device)
        yield head, tap
    finally:
        handle.remove()
