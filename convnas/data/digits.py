"""The 8x8 handwritten digits that ship with scikit-learn: the embedded default, no download.

Alpaydin and Kaynak, *Optical Recognition of Handwritten Digits*, UCI Machine Learning
Repository, 1998 (the test-set part of that collection, as bundled with scikit-learn):
1,797 grayscale 8x8 images with 17 grey levels (0..16), 10 classes.
"""

from __future__ import annotations

import math
import pathlib

import torch

from convnas.data.registry import DatasetInfo, RawSplits, register_dataset
from convnas.errors import ConfigError, OptionalDependencyError

__all__: list[str] = []


@register_dataset(
    "digits",
    num_classes=10,
    input_shape=(1, 8, 8),
    classes=tuple(str(d) for d in range(10)),
    mean=(0.3053,),
    std=(0.3760,),
    description="scikit-learn's 8x8 digits (1,797 images, embedded); seeded 20% test hold-out",
)
def digits(
    info: DatasetInfo,
    *,
    root: pathlib.Path | None,
    download: bool,
    test_fraction: float = 0.2,
    test_seed: int = 0,
) -> RawSplits:
    """The digits with a seeded hold-out as test set (the data has no official split).

    ``test_seed`` is separate from the train/validation seed so that runs with different seeds
    are scored on the same test images. ``root`` and ``download`` are ignored.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"0 < test_fraction < 1 must hold, but got test_fraction={test_fraction}")
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise OptionalDependencyError("scikit-learn", "the digits dataset") from exc
    bunch = load_digits()
    images = torch.from_numpy(bunch.images).to(torch.uint8).unsqueeze(1)
    labels = torch.from_numpy(bunch.target).to(torch.int64)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(test_seed))
    n_test = int(math.floor(len(labels) * test_fraction + 0.5))
    test, train = order[:n_test].sort().values, order[n_test:].sort().values
    return RawSplits(info, images[train], labels[train], images[test], labels[test], pixel_max=16.0)
