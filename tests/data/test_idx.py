"""IDX parsing on hand-written files, and Fashion-MNIST discovery."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch

from convnas.data import load_dataset, read_idx
from convnas.errors import DatasetError


def _idx(type_code: int, shape: tuple[int, ...], payload: bytes) -> bytes:
    return bytes([0, 0, type_code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape) + payload


def test_uint8_images_plain_and_gzipped(tmp_path):
    values = bytes(range(24))
    raw = _idx(0x08, (2, 3, 4), values)
    (tmp_path / "a").write_bytes(raw)
    (tmp_path / "a.gz").write_bytes(gzip.compress(raw))
    for name in ("a", "a.gz"):
        out = read_idx(tmp_path / name)
        assert out.shape == (2, 3, 4) and out.dtype == np.uint8
        assert out[1, 2, 3] == 23 and out[0, 1, 0] == 4


def test_big_endian_types_are_converted(tmp_path):
    (tmp_path / "i").write_bytes(_idx(0x0C, (3,), struct.pack(">3i", -2, 70000, 5)))
    (tmp_path / "f").write_bytes(_idx(0x0D, (2,), struct.pack(">2f", 1.5, -0.25)))
    (tmp_path / "s").write_bytes(_idx(0x0B, (1, 2), struct.pack(">2h", -300, 7)))
    assert read_idx(tmp_path / "i").tolist() == [-2, 70000, 5]
    assert read_idx(tmp_path / "f").tolist() == [1.5, -0.25]
    assert read_idx(tmp_path / "s").tolist() == [[-300, 7]]


def test_malformed_files_are_rejected(tmp_path):
    (tmp_path / "short").write_bytes(_idx(0x08, (2, 2), b"\x01\x02\x03"))
    with pytest.raises(DatasetError, match=r"declares shape \(2, 2\) \(4 data bytes\).*holds 3"):
        read_idx(tmp_path / "short")
    (tmp_path / "magic").write_bytes(b"\x01\x00\x08\x01" + struct.pack(">I", 1) + b"\x00")
    with pytest.raises(DatasetError, match="not an IDX file"):
        read_idx(tmp_path / "magic")
    with pytest.raises(DatasetError, match="cannot read"):
        read_idx(tmp_path / "absent")


def _write_fashion(folder, n_train: int, n_test: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8)
    test = rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8)
    files = {
        "train-images-idx3-ubyte": _idx(0x08, train.shape, train.tobytes()),
        "train-labels-idx1-ubyte": _idx(0x08, (n_train,), bytes(i % 10 for i in range(n_train))),
        "t10k-images-idx3-ubyte": _idx(0x08, test.shape, test.tobytes()),
        "t10k-labels-idx1-ubyte": _idx(0x08, (n_test,), bytes(i % 10 for i in range(n_test))),
    }
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / f"{name}.gz").write_bytes(gzip.compress(data))
    return test


def test_fashion_mnist_from_a_folder(tmp_path):
    test = _write_fashion(tmp_path / "fashion-mnist", 30, 10)
    b = load_dataset("fashion_mnist", root=tmp_path, val_fraction=0.2)
    assert (len(b.train), len(b.val), len(b.test)) == (24, 6, 10)
    assert (b.num_classes, b.input_shape) == (10, (1, 28, 28))
    assert torch.equal(b.test.images[:, 0], torch.from_numpy(test))
    assert b.test.labels.tolist() == list(range(10)) and b.train.augmentation is None


def test_fashion_mnist_missing_gives_the_apt_hint(tmp_path):
    with pytest.raises(DatasetError, match="apt-get install dataset-fashion-mnist") as info:
        load_dataset("fashion_mnist", root=tmp_path)
    assert "t10k-labels-idx1-ubyte" in str(info.value) and str(tmp_path) in str(info.value)
