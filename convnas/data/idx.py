"""The IDX file format (MNIST family) and the Fashion-MNIST dataset.

Xiao, Rasul and Vollgraf, *Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine Learning
Algorithms*, arXiv:1708.07747, 2017. An IDX file is two zero bytes, a type code, the number of
dimensions, each dimension as a big-endian uint32, then the values, big-endian, row-major.
"""

from __future__ import annotations

import gzip
import logging
import pathlib
import struct
from typing import Any

import numpy as np
import torch

from convnas.data.registry import DatasetInfo, RawSplits, register_dataset
from convnas.errors import DatasetError

__all__ = ["FASHION_MNIST_CLASSES", "FASHION_MNIST_ROOT", "read_idx"]

logger = logging.getLogger(__name__)

_IDX_TYPES: dict[int, np.dtype[Any]] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"

FASHION_MNIST_ROOT = pathlib.Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def read_idx(path: str | pathlib.Path) -> np.ndarray:
    """Read an IDX file, gzip-compressed or not (detected from its first bytes).

    Returns:
        an array in native byte order with the shape stored in the header.

    Raises:
        DatasetError: the file is missing, not IDX, or shorter or longer than its header says.
    """
    path = pathlib.Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == _GZIP_MAGIC:
            raw = gzip.decompress(raw)
    except (OSError, EOFError) as exc:
        raise DatasetError(f"cannot read the IDX file {path}: {exc}") from exc
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] not in _IDX_TYPES:
        raise DatasetError(
            f"{path} is not an IDX file: it must start with 0x00 0x00 and a type code in "
            f"{sorted(hex(t) for t in _IDX_TYPES)}, but starts with {raw[:4].hex(' ')}"
        )
    dtype, ndim = _IDX_TYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{path}: truncated header ({len(raw)} bytes for {ndim} dimensions)")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DatasetError(
            f"{path}: the header declares shape {shape} ({expected} data bytes), but the file "
            f"holds {len(raw) - header} data bytes"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def _find_file(folders: list[pathlib.Path], stem: str) -> pathlib.Path | None:
    for folder in folders:
        for name in (stem, f"{stem}.gz"):
            if (folder / name).is_file():
                return folder / name
    return None


@register_dataset(
    "fashion_mnist",
    num_classes=10,
    input_shape=(1, 28, 28),
    classes=FASHION_MNIST_CLASSES,
    mean=(0.2860,),
    std=(0.3530,),
    description=f"Fashion-MNIST IDX files (default {FASHION_MNIST_ROOT}); no augmentation",
)
def fashion_mnist(info: DatasetInfo, *, root: pathlib.Path | None, download: bool) -> RawSplits:
    """Fashion-MNIST from the four IDX files (``.gz`` or not) in ``root``.

    ``root`` defaults to where Debian's ``dataset-fashion-mnist`` package installs them; the
    ``fashion-mnist/`` and torchvision's ``FashionMNIST/raw/`` subfolders of ``root`` are searched
    too. ``download`` is not supported (the files are a package install away).
    """
    base = root or FASHION_MNIST_ROOT
    folders = [base, base / "fashion-mnist", base / "FashionMNIST" / "raw"]
    paths = {key: _find_file(folders, stem) for key, stem in _FILES.items()}
    absent = [_FILES[k] for k, p in paths.items() if p is None]
    if absent:
        raise DatasetError(
            f"Fashion-MNIST not found: {', '.join(absent)} (.gz or not) missing under {base}. "
            f"Install it with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu; files go to "
            f"{FASHION_MNIST_ROOT}), or put the four IDX files from "
            "https://github.com/zalandoresearch/fashion-mnist into a folder passed as root"
        )
    if download:
        logger.info("fashion_mnist: files found under %s; download=True is not needed", base)
    arrays = {key: read_idx(path) for key, path in paths.items() if path is not None}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DatasetError(
                f"Fashion-MNIST {split}: expected (N, 28, 28) images and (N,) labels, but got "
                f"{images.shape} and {labels.shape}"
            )
    tensors = {k: torch.from_numpy(v) for k, v in arrays.items()}
    return RawSplits(
        info,
        tensors["train_images"].unsqueeze(1),
        tensors["train_labels"].long(),
        tensors["test_images"].unsqueeze(1),
        tensors["test_labels"].long(),
    )
