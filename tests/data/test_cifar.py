"""CIFAR: the shared exact-pixel subset, the restricted unpickler, folder discovery, download."""

from __future__ import annotations

import codecs
import dataclasses
import io
import logging
import os
import pathlib
import pickle
import tarfile

import numpy as np
import pytest
import torch

from convnas.data import CifarUnpickler, extract_tar, load_cifar_batch, load_dataset
from convnas.data import cifar as cifar_module
from convnas.data.cifar import CIFAR10_MEAN, CIFAR10_STD
from convnas.data.download import file_md5
from convnas.errors import ConfigError, DatasetError


@pytest.fixture
def subset_bundle(cifar_subset_dir):
    return load_dataset("cifar10", root=cifar_subset_dir, seed=0, val_fraction=0.1)


def test_subset_sizes_and_class_counts(subset_bundle):
    b = subset_bundle
    assert (len(b.train), len(b.val), len(b.test)) == (4707, 523, 870)
    assert (b.num_classes, b.input_shape) == (10, (3, 32, 32))
    all_train = torch.cat([b.train.labels, b.val.labels])
    assert all_train.bincount().tolist() == [523] * 10
    assert b.test.labels.bincount().tolist() == [87] * 10
    assert b.train.images.dtype == torch.uint8


def test_subset_pixel_statistics(subset_bundle):
    b = subset_bundle
    pixels = torch.cat([b.train.images, b.val.images])
    assert (int(pixels.min()), int(pixels.max())) == (0, 255)
    # channel means of the training subset recorded in shared/data/README.md
    means = pixels.sum(dim=(0, 2, 3), dtype=torch.int64).double() / (5230 * 32 * 32)
    torch.testing.assert_close(
        means, torch.tensor([126.1, 123.6, 114.3]).double(), atol=0.05, rtol=0
    )
    images, _ = b.val.get_batch(range(len(b.val)))
    raw = images.double() * torch.tensor(CIFAR10_STD).view(1, 3, 1, 1) + torch.tensor(
        CIFAR10_MEAN
    ).view(1, 3, 1, 1)
    assert raw.min() >= -1e-6 and raw.max() <= 1 + 1e-6
    assert images.mean(dim=(0, 2, 3)).abs().max() < 0.1  # standard constants centre the data
    assert (images.std(dim=(0, 2, 3)) - 1).abs().max() < 0.1


def test_augmentation_only_in_train(subset_bundle):
    b = subset_bundle
    idx = list(range(32))
    first, labels = b.train.get_batch(idx)
    second, labels2 = b.train.get_batch(idx)
    assert first.shape == (32, 3, 32, 32) and torch.equal(labels, labels2)
    assert (first != second).any(dim=(1, 2, 3)).sum() > 24  # most images moved
    for split in (b.val, b.test):
        assert split.augmentation is None
        assert torch.equal(split.get_batch(idx)[0], split.get_batch(idx)[0])


def test_split_is_seeded(cifar_subset_dir):
    a = load_dataset("cifar10", root=cifar_subset_dir, seed=1, augment=False, limit_train=600)
    b = load_dataset("cifar10", root=cifar_subset_dir, seed=1, augment=False, limit_train=600)
    c = load_dataset("cifar10", root=cifar_subset_dir, seed=2, augment=False, limit_train=600)
    assert (len(a.train), len(a.val)) == (540, 60)
    assert torch.equal(a.val.images, b.val.images) and torch.equal(a.train.images, b.train.images)
    assert not torch.equal(a.val.images, c.val.images)


def test_batches_folder_itself_is_accepted_and_found_files_are_logged(cifar_subset_dir, caplog):
    with caplog.at_level(logging.INFO, logger="convnas.data.cifar"):
        b = load_dataset("cifar10", root=cifar_subset_dir / "cifar-10-batches-py", limit_test=10)
    assert len(b.test) == 10 and len(b.train) + len(b.val) == 5230
    assert "training files found" in caplog.text and "data_batch_1" in caplog.text
    assert "missing (using a subset)" in caplog.text and "data_batch_5" in caplog.text


class _Call:
    def __init__(self, fn, args) -> None:
        self.fn, self.args = fn, args

    def __reduce__(self):
        return (self.fn, self.args)


def test_malicious_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "data_batch_1"
    bad.write_bytes(pickle.dumps({b"data": _Call(os.system, (f"touch {marker}",))}, protocol=2))
    with pytest.raises(DatasetError, match=r"refusing to load the global (os|posix)\.system"):
        load_cifar_batch(bad)
    assert not marker.exists()
    with pytest.raises(pickle.UnpicklingError, match="builtins.eval"):
        CifarUnpickler(io.BytesIO(pickle.dumps(eval))).load()
    objects = pickle.dumps(np.array([1, "x"], dtype=object), protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="refusing the object dtype"):
        CifarUnpickler(io.BytesIO(objects)).load()
    rot13 = pickle.dumps(_Call(codecs.encode, ("abc", "rot13")), protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="encoding 'rot13'"):
        CifarUnpickler(io.BytesIO(rot13)).load()


def _write_fake_cifar10(folder: pathlib.Path, protocol: int, n_train: int = 20, n_test: int = 10):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, n in (("data_batch_1", n_train), ("data_batch_2", n_train), ("test_batch", n_test)):
        batch = {
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"labels": [i % 10 for i in range(n)],
        }
        (folder / name).write_bytes(pickle.dumps(batch, protocol=protocol))
    return rng


@pytest.mark.parametrize("protocol", [2, 4])
def test_pickles_written_by_current_numpy_load(tmp_path, protocol):
    _write_fake_cifar10(tmp_path / "cifar-10-batches-py", protocol)
    expected = load_cifar_batch(tmp_path / "cifar-10-batches-py" / "test_batch")["data"]
    b = load_dataset("cifar10", root=tmp_path, val_fraction=0.0, augment=False)
    assert (len(b.train), len(b.test)) == (40, 10)
    assert torch.equal(b.test.images, torch.from_numpy(expected).view(10, 3, 32, 32))
    assert torch.equal(b.test.images[3, 1, 2], torch.from_numpy(expected[3, 1024 + 64 : 1024 + 96]))


def test_truncated_batch_is_reported(tmp_path):
    _write_fake_cifar10(tmp_path / "cifar-10-batches-py", protocol=2)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    batch.write_bytes(batch.read_bytes()[:5000])  # like the prefixes found on GitHub
    with pytest.raises(DatasetError, match="cannot read the CIFAR file .*data_batch_2"):
        load_dataset("cifar10", root=tmp_path)


def test_missing_folder_gives_the_clear_message(tmp_path):
    with pytest.raises(DatasetError) as info:
        load_dataset("cifar10", root=tmp_path)
    assert isinstance(info.value, OSError)
    assert f"put the extracted cifar-10-batches-py folder under {tmp_path}" in str(info.value)
    assert "download=True" in str(info.value)
    with pytest.raises(DatasetError, match="put the extracted cifar-100-python folder under"):
        load_dataset("cifar100", root=tmp_path)


def _make_archive(tmp_path: pathlib.Path) -> pathlib.Path:
    source = tmp_path / "source"
    _write_fake_cifar10(source / "cifar-10-batches-py", protocol=2)
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    return archive


def test_download_checks_md5_and_extracts(tmp_path, monkeypatch):
    archive = _make_archive(tmp_path)
    layout = dataclasses.replace(
        cifar_module.CIFAR10_LAYOUT, url=archive.as_uri(), md5=file_md5(archive)
    )
    monkeypatch.setattr(cifar_module, "CIFAR10_LAYOUT", layout)
    root = tmp_path / "root"
    b = load_dataset("cifar10", root=root, download=True, val_fraction=0.0)
    assert (len(b.train), len(b.test)) == (40, 10)
    assert (root / "cifar-10-batches-py" / "data_batch_2").is_file()

    bad = dataclasses.replace(layout, md5="0" * 32)
    monkeypatch.setattr(cifar_module, "CIFAR10_LAYOUT", bad)
    with pytest.raises(DatasetError, match="md5 .* but 0{32} was expected"):
        load_dataset("cifar10", root=tmp_path / "other", download=True)
    assert not list((tmp_path / "other").iterdir())  # the bad download was deleted

    gone = dataclasses.replace(layout, url=(tmp_path / "absent.tar.gz").as_uri())
    monkeypatch.setattr(cifar_module, "CIFAR10_LAYOUT", gone)
    with pytest.raises(DatasetError, match="could not download .*put the extracted cifar-10"):
        load_dataset("cifar10", root=tmp_path / "third", download=True)


def _tar_with(tmp_path: pathlib.Path, member: tarfile.TarInfo, data: bytes = b"") -> pathlib.Path:
    path = tmp_path / "evil.tar"
    with tarfile.open(path, "w") as tar:
        member.size = len(data) if member.isfile() else 0
        tar.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return path


def test_extraction_refuses_escaping_paths_and_links(tmp_path):
    dest = tmp_path / "dest"
    for name in ("../escaped.txt", "/tmp/absolute-escape.txt", "a/../../escaped.txt"):
        with pytest.raises(DatasetError, match="leaves"):
            extract_tar(_tar_with(tmp_path, tarfile.TarInfo(name), b"x"), dest)
    link = tarfile.TarInfo("cifar-10-batches-py/link")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    with pytest.raises(DatasetError, match="only regular files and folders"):
        extract_tar(_tar_with(tmp_path, link), dest)
    assert not (tmp_path / "escaped.txt").exists() and not dest.exists()


def test_cifar100_fine_and_coarse_labels(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for name, n in (("train", 30), ("test", 12)):
        fine = [i % 100 for i in range(n)]
        batch = {
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"fine_labels": fine,
            b"coarse_labels": [f // 5 for f in fine],
        }
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    names = {
        b"fine_label_names": [f"f{i}".encode() for i in range(100)],
        b"coarse_label_names": [f"c{i}".encode() for i in range(20)],
    }
    (folder / "meta").write_bytes(pickle.dumps(names, protocol=2))
    fine = load_dataset("cifar100", root=tmp_path, val_fraction=0.0)
    coarse = load_dataset("cifar100", root=tmp_path, val_fraction=0.0, label_mode="coarse")
    assert (fine.num_classes, coarse.num_classes) == (100, 20)
    assert torch.equal(coarse.test.labels, fine.test.labels // 5)
    assert coarse.info.classes[:2] == ("c0", "c1") and len(fine.info.classes) == 100
    with pytest.raises(ConfigError, match="label_mode"):
        load_dataset("cifar100", root=tmp_path, label_mode="medium")
