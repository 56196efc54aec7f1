"""In-memory image datasets with batch-level augmentation, in plain torch (no torchvision).

Images stay in memory in their stored dtype (uint8 for CIFAR); a batch is gathered, augmented and
converted to normalised float32 in a few vectorised ops. :class:`TensorImageDataset` implements
``__getitems__``, so a ``DataLoader`` with automatic batching fetches a whole batch in one call;
the samples it returns still collate with the default ``collate_fn``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, get_worker_info

from convnas.errors import ConfigError, DatasetError

__all__ = ["RandomCropFlip", "TensorImageDataset"]

Augmentation = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


class RandomCropFlip:
    """Random crop of the original size from a zero-padded image, then a random horizontal flip.

    The standard CIFAR training augmentation (pad 4, crop 32, flip with probability 1/2), applied
    to a whole ``(B, C, H, W)`` batch at once, in the batch's own dtype.

    Args:
        padding: zero padding on every side before cropping.
        flip: also flip horizontally with probability 1/2.
    """

    def __init__(self, padding: int = 4, *, flip: bool = True) -> None:
        if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
            raise ConfigError(f"padding must be a non-negative integer, but got {padding!r}")
        self.padding = padding
        self.flip = flip

    def __repr__(self) -> str:
        return f"RandomCropFlip(padding={self.padding}, flip={self.flip})"

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        b, c, h, w = images.shape
        p = self.padding
        padded = F.pad(images, (p, p, p, p)) if p else images
        top = torch.randint(0, 2 * p + 1, (b, 1), generator=generator)
        left = torch.randint(0, 2 * p + 1, (b, 1), generator=generator)
        cols = torch.arange(w).expand(b, w)
        if self.flip:
            flipped = torch.rand(b, 1, generator=generator) < 0.5
            cols = torch.where(flipped, w - 1 - cols, cols)
        # Two gathers (rows, then columns) beat one 4-D advanced index by about 2x on CPU.
        rows = (top + torch.arange(h))[:, None, :, None].expand(b, c, h, padded.shape[3])
        cols = (left + cols)[:, None, None, :].expand(b, c, h, w)
        return padded.gather(2, rows).gather(3, cols)


class TensorImageDataset(Dataset):
    """Images and labels held as tensors; items are ``(float32 image (C, H, W), int label)``.

    Args:
        images: ``(N, C, H, W)``; integer pixels are divided by ``pixel_max``, float pixels are
            taken as they are.
        labels: ``(N,)`` integer labels.
        mean: per-channel mean (of pixels in [0, 1]) to subtract; ``None`` for no normalisation.
        std: per-channel standard deviation to divide by; required with ``mean``.
        pixel_max: the integer pixel value that maps to 1.0.
        augmentation: ``f(batch, generator) -> batch`` applied to the stored pixels before
            conversion, e.g. :class:`RandomCropFlip`; ``None`` for none.
        seed: seeds the augmentation generator. Inside ``DataLoader`` worker processes the
            generator is reseeded from the worker's seed, which the loader derives from its own
            generator, so augmentation stays reproducible and differs between workers.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        pixel_max: float = 255.0,
        augmentation: Augmentation | None = None,
        seed: int = 0,
    ) -> None:
        if images.ndim != 4 or labels.shape != (images.shape[0],):
            raise DatasetError(
                "images must be (N, C, H, W) and labels (N,), but got "
                f"images {tuple(images.shape)} and labels {tuple(labels.shape)}"
            )
        if (mean is None) != (std is None):
            raise ConfigError("mean and std must be given together")
        self.images = images.contiguous()
        self.labels = labels.to(torch.int64)
        self.augmentation = augmentation
        self.mean = tuple(mean) if mean is not None else None
        self.std = tuple(std) if std is not None else None
        self.pixel_max = 1.0 if images.is_floating_point() else float(pixel_max)
        channels = images.shape[1]
        mean_t = torch.tensor(self.mean or (0.0,) * channels, dtype=torch.float32)
        std_t = torch.tensor(self.std or (1.0,) * channels, dtype=torch.float32)
        if mean_t.numel() != channels or std_t.numel() != channels or bool((std_t <= 0).any()):
            raise ConfigError(
                f"mean and std need {channels} entries (one per channel) and std > 0, "
                f"but got mean={self.mean}, std={self.std}"
            )
        # (x / pixel_max - mean) / std folded into one multiply-add.
        self._scale = (1.0 / (self.pixel_max * std_t)).view(1, -1, 1, 1)
        self._shift = (-mean_t / std_t).view(1, -1, 1, 1)
        self._generator = torch.Generator().manual_seed(seed)
        self._worker_seed: int | None = None

    def __len__(self) -> int:
        return self.labels.numel()

    def __repr__(self) -> str:
        return (
            f"TensorImageDataset(n={len(self)}, image_shape={tuple(self.images.shape[1:])}, "
            f"dtype={self.images.dtype}, augmentation={self.augmentation!r})"
        )

    @property
    def targets(self) -> torch.Tensor:
        """The labels, under the name torchvision datasets use."""
        return self.labels

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        images, labels = self.get_batch([index])
        return images[0], int(labels[0])

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[torch.Tensor, int]]:
        images, labels = self.get_batch(indices)
        return list(zip(images.unbind(0), labels.tolist(), strict=True))

    def get_batch(self, indices: Sequence[int] | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Gather, augment and normalise a batch: ``(float32 (B, C, H, W), int64 (B,))``."""
        idx = torch.as_tensor(indices, dtype=torch.int64)
        n = len(self)
        if idx.numel() and (int(idx.max()) >= n or int(idx.min()) < -n):
            raise IndexError(f"index out of range for a dataset of {n} items: {indices}")
        images = self.images[idx]
        if self.augmentation is not None:
            images = self.augmentation(images, self._rng())
        return images.to(torch.float32).mul_(self._scale).add_(self._shift), self.labels[idx]

    def _rng(self) -> torch.Generator:
        info = get_worker_info()
        if info is not None and self._worker_seed != info.seed:
            self._worker_seed = info.seed
            self._generator = torch.Generator().manual_seed(info.seed)
        return self._generator
