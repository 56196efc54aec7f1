"""Deterministic ``DataLoader`` construction.

The loader owns a ``torch.Generator`` seeded from ``seed``: it draws the shuffling order of every
epoch and the base seed of worker processes, so two loaders built with the same seed over equal
datasets yield the same batches in the same order, and the global RNG is neither read nor reseeded.
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset

from convnas.errors import ConfigError

__all__ = ["make_loader"]


def make_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int,
    num_workers: int = 0,
    drop_last: bool = False,
    pin_memory: bool = False,
) -> DataLoader:
    """A ``DataLoader`` whose batch order depends only on ``seed`` (and the epoch).

    Args:
        dataset: a map-style dataset, e.g. a split of :func:`~convnas.data.load_dataset`.
        batch_size: images per batch.
        shuffle: draw a new random order every epoch (training) or keep the stored order.
        seed: seeds the loader's generator.
        num_workers: worker processes; 0 loads in the calling process.
        drop_last: drop the last incomplete batch.
        pin_memory: pin batches in page-locked memory for faster copies to a GPU.

    Raises:
        ConfigError: ``batch_size`` < 1 or ``num_workers`` < 0.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, but got {batch_size!r}")
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise ConfigError(f"num_workers must be a non-negative integer, but got {num_workers!r}")
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        drop_last=drop_last,
        pin_memory=pin_memory,
        generator=generator,
        persistent_workers=False,
    )
