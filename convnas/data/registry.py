"""The dataset registry and :func:`load_dataset`, which turns a registered dataset into splits.

A dataset is registered with :func:`register_dataset` over a *builder*: a function
``builder(info, *, root, download, <explicit keyword options>) -> RawSplits`` that reads the
official train and test sets into memory. :func:`load_dataset` then carves a validation set out
of the training set by seed, applies the size limits, and wraps each split in a
:class:`~convnas.data.tensors.TensorImageDataset` (augmentation on the training split only).
"""

from __future__ import annotations

import inspect
import math
import os
import pathlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from convnas.errors import ConfigError, DatasetError
from convnas.registry import Registry

__all__ = [
    "DATASETS",
    "DataBundle",
    "DatasetInfo",
    "DatasetSpec",
    "RawSplits",
    "dataset_info",
    "default_data_root",
    "list_datasets",
    "load_dataset",
    "register_dataset",
]

_RESERVED = ("info", "root", "download")


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset is, independent of where its files are.

    Attributes:
        name: the registry name.
        num_classes: number of labels.
        input_shape: ``(C, H, W)`` of one image.
        classes: the label names, when known.
        mean: per-channel mean of pixels scaled to [0, 1], subtracted on the fly; ``None`` when
            the images are already normalised floats.
        std: per-channel standard deviation matching ``mean``.
        description: one line for listings.
    """

    name: str
    num_classes: int
    input_shape: tuple[int, int, int]
    classes: tuple[str, ...] = ()
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    description: str = ""


@dataclass(frozen=True)
class RawSplits:
    """What a builder returns: the official train and test sets, in memory.

    Attributes:
        info: the dataset description (a builder may adapt the registered one to its options).
        train_images: ``(N, C, H, W)``; uint8 (scaled by ``pixel_max``) or already-normalised float.
        train_labels: ``(N,)`` int64.
        test_images: as ``train_images``.
        test_labels: as ``train_labels``.
        pixel_max: the value that integer pixels map to 1.0.
        augmentation: a batch augmentation for the training split, used when ``augment=True``.
    """

    info: DatasetInfo
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    pixel_max: float = 255.0
    augmentation: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None


@dataclass(frozen=True)
class DatasetSpec:
    """A registry entry: the static description plus the builder that reads the files."""

    info: DatasetInfo
    builder: Callable[..., RawSplits]

    @property
    def options(self) -> tuple[str, ...]:
        """The keyword options the builder accepts beyond ``root`` and ``download``."""
        params = inspect.signature(self.builder).parameters
        return tuple(n for n in params if n not in _RESERVED)


def _load_builtin() -> None:
    from convnas.data import cifar, digits, idx, synthetic  # noqa: F401  (register on import)


DATASETS: Registry[DatasetSpec] = Registry(
    "dataset", loader=_load_builtin, entry_point_group="convnas.datasets"
)


def register_dataset(
    name: str,
    *,
    num_classes: int,
    input_shape: tuple[int, int, int],
    classes: tuple[str, ...] = (),
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    description: str = "",
    replace: bool = False,
) -> Callable[[Callable[..., RawSplits]], Callable[..., RawSplits]]:
    """Decorator registering ``builder(info, *, root, download, **explicit_options)`` as ``name``.

    Raises:
        DuplicateNameError: ``name`` is taken and ``replace`` is False.
    """
    info = DatasetInfo(name, num_classes, (*input_shape,), tuple(classes), mean, std, description)

    def decorator(builder: Callable[..., RawSplits]) -> Callable[..., RawSplits]:
        DATASETS.add(name, DatasetSpec(info, builder), replace=replace)
        return builder

    return decorator


def list_datasets(pattern: str = "*") -> list[str]:
    """Sorted names of the registered datasets matching the shell-style ``pattern``."""
    return DATASETS.names(pattern)


def dataset_info(name: str) -> DatasetInfo:
    """The registered description of ``name`` (before any option changes it)."""
    return DATASETS.get(name).info


def default_data_root() -> pathlib.Path:
    """``$CONVNAS_DATA_DIR`` when set, else ``~/.cache/convnas/data``."""
    env = os.environ.get("CONVNAS_DATA_DIR")
    return pathlib.Path(env).expanduser() if env else pathlib.Path.home() / ".cache/convnas/data"


@dataclass(frozen=True)
class DataBundle:
    """The three splits of one dataset, ready for :func:`~convnas.data.make_loader`.

    ``val`` is ``None`` when ``val_fraction`` was 0. ``settings`` holds the arguments of
    :func:`load_dataset` that made it plus the input normalisation (JSON-ready): searches write
    it into the architectures they find, so ``convnas train`` retrains on the same data.
    """

    name: str
    train: torch.utils.data.Dataset
    val: torch.utils.data.Dataset | None
    test: torch.utils.data.Dataset
    num_classes: int
    input_shape: tuple[int, int, int]
    info: DatasetInfo
    settings: dict[str, Any] = field(default_factory=dict)


def load_dataset(
    name: str,
    *,
    root: str | os.PathLike[str] | None = None,
    download: bool = False,
    seed: int = 0,
    val_fraction: float = 0.1,
    augment: bool = True,
    limit_train: int | None = None,
    limit_test: int | None = None,
    **options: object,
) -> DataBundle:
    """Load a registered dataset and split it into train / validation / test.

    Args:
        name: a registered dataset (see :func:`list_datasets`).
        root: where the files are; each dataset documents its default.
        download: fetch missing files when the dataset supports it (CIFAR).
        seed: seeds the train/validation split and the training augmentation.
        val_fraction: share of the (limited) training set held out for validation, in [0, 1).
        augment: apply the dataset's standard augmentation to the training split.
        limit_train: use at most this many training images (train and validation together),
            a seeded random subset.
        limit_test: use at most this many test images (the first ones).
        **options: dataset-specific options (e.g. ``num_classes`` for ``synthetic``).

    Raises:
        UnknownNameError: no such dataset.
        ConfigError: a bad split setting or an option the dataset does not accept.
        DatasetError: the files are missing or unreadable.
    """
    spec = DATASETS.get(name)
    _check_split_args(val_fraction, limit_train, limit_test)
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        accepted = ", ".join(spec.options) or "none"
        raise ConfigError(
            f"dataset {name!r} has no option(s) {', '.join(map(repr, unknown))}; "
            f"its options are: {accepted}"
        )
    path = pathlib.Path(root).expanduser() if root is not None else None
    raw = spec.builder(spec.info, root=path, download=download, **options)
    _check_raw(raw)

    from convnas.data.tensors import TensorImageDataset

    generator = torch.Generator().manual_seed(seed)
    pool = torch.randperm(raw.train_labels.numel(), generator=generator)
    if limit_train is not None:
        pool = pool[:limit_train]
    n_val = int(math.floor(pool.numel() * val_fraction + 0.5))
    val_idx, train_idx = pool[:n_val].sort().values, pool[n_val:].sort().values
    test_idx = torch.arange(min(raw.test_labels.numel(), limit_test or raw.test_labels.numel()))

    def wrap(images: torch.Tensor, labels: torch.Tensor, idx: torch.Tensor, aug: bool):
        return TensorImageDataset(
            images[idx],
            labels[idx],
            mean=raw.info.mean,
            std=raw.info.std,
            pixel_max=raw.pixel_max,
            augmentation=raw.augmentation if aug else None,
            seed=seed,
        )

    return DataBundle(
        name=name,
        train=wrap(raw.train_images, raw.train_labels, train_idx, augment),
        val=wrap(raw.train_images, raw.train_labels, val_idx, False) if n_val else None,
        test=wrap(raw.test_images, raw.test_labels, test_idx, False),
        num_classes=raw.info.num_classes,
        input_shape=raw.info.input_shape,
        info=raw.info,
        settings={
            "dataset": name,
            "root": None if path is None else str(path),
            "seed": seed,
            "val_fraction": val_fraction,
            "augment": augment,
            "limit_train": limit_train,
            "limit_test": limit_test,
            "options": {k: _plain(v) for k, v in options.items()},
            "input_shape": list(raw.info.input_shape),
            "num_classes": raw.info.num_classes,
            "mean": None if raw.info.mean is None else [float(v) for v in raw.info.mean],
            "std": None if raw.info.std is None else [float(v) for v in raw.info.std],
        },
    )


def _plain(value: Any) -> Any:
    """A JSON/YAML-ready copy of an option value (tuples as lists)."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _check_split_args(val_fraction: float, limit_train: int | None, limit_test: int | None) -> None:
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"0 <= val_fraction < 1 must hold, but got val_fraction={val_fraction}")
    for key, value in (("limit_train", limit_train), ("limit_test", limit_test)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise ConfigError(f"{key} must be a positive integer or None, but got {key}={value!r}")


def _check_raw(raw: RawSplits) -> None:
    """Catch builder bugs early, with the dataset name in the message."""
    info = raw.info
    for split, images, labels in (
        ("train", raw.train_images, raw.train_labels),
        ("test", raw.test_images, raw.test_labels),
    ):
        if tuple(images.shape[1:]) != info.input_shape or images.ndim != 4:
            raise DatasetError(
                f"dataset {info.name!r}: {split} images must have shape (N, *{info.input_shape}), "
                f"but got {tuple(images.shape)}"
            )
        if labels.shape != (images.shape[0],):
            raise DatasetError(
                f"dataset {info.name!r}: {split} has {images.shape[0]} images but labels of shape "
                f"{tuple(labels.shape)}"
            )
        if labels.numel() and not 0 <= int(labels.min()) <= int(labels.max()) < info.num_classes:
            raise DatasetError(
                f"dataset {info.name!r}: {split} labels must lie in [0, {info.num_classes}), "
                f"but range over [{int(labels.min())}, {int(labels.max())}]"
            )
