"""CIFAR-10 and CIFAR-100 from the official python-pickle layout, read with a restricted unpickler.

Krizhevsky, *Learning Multiple Layers of Features from Tiny Images*, tech. report, University
of Toronto, 2009. The batches are pickles, and unpickling runs code named in the file, so they are
read with :class:`CifarUnpickler`, which resolves only the few numpy globals the batches need.
"""

from __future__ import annotations

import codecs
import dataclasses
import importlib
import logging
import pathlib
import pickle
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from convnas.data.download import download_archive, extract_tar
from convnas.data.registry import DatasetInfo, RawSplits, default_data_root, register_dataset
from convnas.data.tensors import RandomCropFlip
from convnas.errors import ConfigError, DatasetError

__all__ = ["CIFAR10_CLASSES", "CifarUnpickler", "load_cifar_batch"]

logger = logging.getLogger(__name__)

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
# Per-channel statistics of the official training sets, pixels scaled to [0, 1].
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)


def _safe_dtype(spec: Any, align: bool = False, copy: bool = False) -> np.dtype:
    dtype = np.dtype(spec, align, copy)
    if dtype.hasobject:
        raise pickle.UnpicklingError(f"refusing the object dtype {dtype} (it can hold any object)")
    return dtype


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    if codecs.lookup(encoding).name != "iso8859-1":
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r}")
    return codecs.encode(text, encoding)


def _allowed_globals() -> dict[tuple[str, str], Any]:
    try:
        multiarray = importlib.import_module("numpy._core.multiarray")  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        multiarray = importlib.import_module("numpy.core.multiarray")
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): _safe_dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = multiarray._reconstruct
        allowed[(module, "ndarray")] = np.ndarray
        allowed[(module, "dtype")] = _safe_dtype
    return allowed


class CifarUnpickler(pickle.Unpickler):
    """An unpickler that builds plain containers and numpy arrays and nothing else.

    Any other global named in the stream (``os.system``, ``builtins.eval``, ...) raises
    :class:`pickle.UnpicklingError` instead of being imported.
    """

    _ALLOWED = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load the global {module}.{name}: a CIFAR batch only needs numpy "
                "arrays, so this file is not a CIFAR batch and may be malicious"
            ) from None


def load_cifar_batch(path: pathlib.Path) -> dict[str, Any]:
    """Read one CIFAR batch (or meta) file safely; keys are returned as ``str``.

    Raises:
        DatasetError: the file is missing, truncated, or asks for anything but numpy arrays.
    """
    try:
        with open(path, "rb") as f:
            content = CifarUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError) as exc:
        raise DatasetError(f"cannot read the CIFAR file {path}: {exc}") from exc
    except FileNotFoundError as exc:
        raise DatasetError(f"CIFAR file not found: {path}") from exc
    if not isinstance(content, dict):
        raise DatasetError(f"{path} holds a {type(content).__name__}, not a CIFAR dict")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in content.items()}


@dataclass(frozen=True)
class _Layout:
    title: str
    folder: str
    train_files: tuple[str, ...]
    test_file: str
    meta_file: str
    url: str
    md5: str


CIFAR10_LAYOUT = _Layout(
    "CIFAR-10",
    "cifar-10-batches-py",
    tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test_batch",
    "batches.meta",
    "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    "c58f30108f718f92721af3b95e74349a",
)
CIFAR100_LAYOUT = _Layout(
    "CIFAR-100",
    "cifar-100-python",
    ("train",),
    "test",
    "meta",
    "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    "eb9058c3a382ffc7106e4002c42a8d85",
)


def _usable(folder: pathlib.Path, layout: _Layout) -> bool:
    has_train = any((folder / f).is_file() for f in layout.train_files)
    return has_train and (folder / layout.test_file).is_file()


def find_cifar_folder(root: pathlib.Path, layout: _Layout, *, download: bool) -> pathlib.Path:
    """The folder holding the batches: ``root/<folder>``, or ``root`` itself; downloads if asked.

    A folder with the test batch and at least one training batch is used as it is.

    Raises:
        DatasetError: no usable folder, and ``download`` is False or the download failed.
    """
    for folder in (root / layout.folder, root):
        if _usable(folder, layout):
            return folder
    where = (
        f"put the extracted {layout.folder} folder under {root} (it comes from {layout.url}, "
        f"md5 {layout.md5})"
    )
    if not download:
        raise DatasetError(
            f"{layout.title} not found: no {layout.folder} folder with {layout.test_file} and a "
            f"training batch under {root}; {where}, or pass download=True when online "
            f"(convnas search: --set data.download=true; convnas train: --download)"
        )
    archive = root / layout.url.rsplit("/", 1)[-1]
    try:
        download_archive(layout.url, archive, md5=layout.md5)
        extract_tar(archive, root)
    except DatasetError as exc:
        raise DatasetError(f"{exc}; to install {layout.title} by hand, {where}") from exc
    if not _usable(root / layout.folder, layout):
        raise DatasetError(f"{archive} did not contain a usable {layout.folder} folder")
    return root / layout.folder


def _read_split(
    folder: pathlib.Path, files: list[str], label_key: str
) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = [], []
    for name in files:
        batch = load_cifar_batch(folder / name)
        data, target = batch.get("data"), batch.get(label_key)
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
            raise DatasetError(f"{folder / name}: 'data' must be a uint8 (N, 3072) array")
        if data.shape[1] != 3072 or target is None or len(target) != data.shape[0]:
            raise DatasetError(
                f"{folder / name}: expected (N, 3072) pixels and N {label_key!r}, but got "
                f"{data.shape} and {None if target is None else len(target)}"
            )
        images.append(torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()))
        labels.append(torch.as_tensor(np.asarray(target, dtype=np.int64)))
    return torch.cat(images), torch.cat(labels)


def _load(
    info: DatasetInfo, layout: _Layout, root: pathlib.Path | None, download: bool, label_key: str
) -> tuple[RawSplits, pathlib.Path]:
    folder = find_cifar_folder(root or default_data_root(), layout, download=download)
    found = [f for f in layout.train_files if (folder / f).is_file()]
    missing = [f for f in layout.train_files if f not in found]
    logger.info("%s: training files found in %s: %s", layout.title, folder, ", ".join(found))
    if missing:
        logger.warning("%s: training files missing (using a subset): %s", layout.title, missing)
    train_x, train_y = _read_split(folder, found, label_key)
    test_x, test_y = _read_split(folder, [layout.test_file], label_key)
    raw = RawSplits(info, train_x, train_y, test_x, test_y, augmentation=RandomCropFlip(4))
    return raw, folder


def _class_names(meta: pathlib.Path, key: str) -> tuple[str, ...]:
    names = load_cifar_batch(meta).get(key) if meta.is_file() else None
    if not isinstance(names, list):
        return ()
    return tuple(n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names)


@register_dataset(
    "cifar10",
    num_classes=10,
    input_shape=(3, 32, 32),
    classes=CIFAR10_CLASSES,
    mean=CIFAR10_MEAN,
    std=CIFAR10_STD,
    description="CIFAR-10 (python pickles under root/cifar-10-batches-py); crop+flip augmentation",
)
def cifar10(info: DatasetInfo, *, root: pathlib.Path | None, download: bool) -> RawSplits:
    """CIFAR-10; ``root`` (default :func:`default_data_root`) holds ``cifar-10-batches-py/``."""
    return _load(info, CIFAR10_LAYOUT, root, download, "labels")[0]


@register_dataset(
    "cifar100",
    num_classes=100,
    input_shape=(3, 32, 32),
    mean=CIFAR100_MEAN,
    std=CIFAR100_STD,
    description="CIFAR-100 (python pickles under root/cifar-100-python); crop+flip augmentation",
)
def cifar100(
    info: DatasetInfo, *, root: pathlib.Path | None, download: bool, label_mode: str = "fine"
) -> RawSplits:
    """CIFAR-100 with its 100 ``"fine"`` or 20 ``"coarse"`` labels."""
    if label_mode not in ("fine", "coarse"):
        raise ConfigError(f"label_mode must be 'fine' or 'coarse', but got {label_mode!r}")
    raw, folder = _load(info, CIFAR100_LAYOUT, root, download, f"{label_mode}_labels")
    classes = _class_names(folder / CIFAR100_LAYOUT.meta_file, f"{label_mode}_label_names")
    num_classes = 100 if label_mode == "fine" else 20
    return dataclasses.replace(
        raw, info=dataclasses.replace(info, num_classes=num_classes, classes=classes)
    )
