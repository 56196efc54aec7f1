"""Datasets for searches and training: a registry, in-memory splits and deterministic loaders.

Built in: ``digits`` (scikit-learn's 8x8 digits, embedded, the default), ``cifar10`` and
``cifar100`` (the python-pickle layout, read with a restricted unpickler; optional download with
an md5 check), ``fashion_mnist`` (IDX files, by default from Debian's ``dataset-fashion-mnist``)
and ``synthetic`` (random learnable tensors). Third-party packages add datasets with
:func:`register_dataset` or the entry-point group ``convnas.datasets``.

Example:
    >>> bundle = load_dataset("digits", seed=0)
    >>> loader = make_loader(bundle.train, 128, shuffle=True, seed=0)
"""

from __future__ import annotations

from convnas.data.cifar import CifarUnpickler, load_cifar_batch
from convnas.data.download import download_archive, extract_tar
from convnas.data.idx import read_idx
from convnas.data.loaders import make_loader
from convnas.data.registry import (
    DATASETS,
    DataBundle,
    DatasetInfo,
    DatasetSpec,
    RawSplits,
    dataset_info,
    default_data_root,
    list_datasets,
    load_dataset,
    register_dataset,
)
from convnas.data.tensors import RandomCropFlip, TensorImageDataset

__all__ = [
    "DATASETS",
    "CifarUnpickler",
    "DataBundle",
    "DatasetInfo",
    "DatasetSpec",
    "RandomCropFlip",
    "RawSplits",
    "TensorImageDataset",
    "dataset_info",
    "default_data_root",
    "download_archive",
    "extract_tar",
    "list_datasets",
    "load_cifar_batch",
    "load_dataset",
    "make_loader",
    "read_idx",
    "register_dataset",
]
