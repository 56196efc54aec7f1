"""The dataset registry, load_dataset's split logic, TensorImageDataset and make_loader."""

from __future__ import annotations

import itertools

import pytest
import torch

from convnas.data import (
    DATASETS,
    DatasetInfo,
    RandomCropFlip,
    RawSplits,
    TensorImageDataset,
    dataset_info,
    list_datasets,
    load_dataset,
    make_loader,
    register_dataset,
)
from convnas.errors import ConfigError, DatasetError, DuplicateNameError, UnknownNameError


def _toy_builder(info: DatasetInfo, *, root, download, n: int = 50) -> RawSplits:
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (n, 3, 6, 6), dtype=torch.uint8, generator=g)
    y = torch.arange(n) % info.num_classes
    return RawSplits(info, x, y, x[:7].clone(), y[:7].clone(), augmentation=RandomCropFlip(2))


def test_builtin_datasets_are_registered():
    assert set(list_datasets()) >= {"digits", "cifar10", "cifar100", "fashion_mnist", "synthetic"}
    assert list_datasets("cifar*") == ["cifar10", "cifar100"]
    info = dataset_info("cifar10")
    assert (info.num_classes, info.input_shape, info.classes[3]) == (10, (3, 32, 32), "cat")
    assert dataset_info("fashion_mnist").input_shape == (1, 28, 28)
    assert DATASETS.get("cifar100").options == ("label_mode",)


def test_unknown_dataset_suggests_close_names():
    with pytest.raises(UnknownNameError, match="did you mean 'cifar10'"):
        load_dataset("cifar-10")


def test_unknown_option_and_bad_split_settings_are_config_errors():
    with pytest.raises(ConfigError, match="no option.*'colour'.*options are: num_classes"):
        load_dataset("synthetic", colour=True)
    for kwargs in ({"val_fraction": 1.0}, {"val_fraction": -0.1}, {"limit_train": 0}):
        with pytest.raises(ConfigError):
            load_dataset("synthetic", **kwargs)


def test_register_custom_dataset_split_sizes_and_limits():
    with DATASETS.temporary():
        register = register_dataset(
            "toy", num_classes=5, input_shape=(3, 6, 6), mean=(0.5,) * 3, std=(0.25,) * 3
        )
        register(_toy_builder)
        with pytest.raises(DuplicateNameError):
            register_dataset("toy", num_classes=5, input_shape=(3, 6, 6))(_toy_builder)
        bundle = load_dataset("toy", val_fraction=0.2, n=50)
        assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (40, 10, 7)
        assert (bundle.name, bundle.num_classes, bundle.input_shape) == ("toy", 5, (3, 6, 6))
        assert bundle.train.augmentation is not None and bundle.val.augmentation is None
        limited = load_dataset("toy", limit_train=20, limit_test=3, val_fraction=0.25)
        assert (len(limited.train), len(limited.val), len(limited.test)) == (15, 5, 3)
        no_val = load_dataset("toy", val_fraction=0.0, augment=False)
        assert no_val.val is None and len(no_val.train) == 50
        assert no_val.train.augmentation is None
    assert "toy" not in DATASETS


def test_builder_with_wrong_shapes_is_reported():
    def bad(info, *, root, download):
        x = torch.zeros(4, 3, 5, 5, dtype=torch.uint8)
        return RawSplits(info, x, torch.zeros(4, dtype=torch.int64), x, torch.zeros(4))

    with DATASETS.temporary():
        register_dataset("bad", num_classes=2, input_shape=(3, 6, 6))(bad)
        with pytest.raises(DatasetError, match=r"shape \(N, \*\(3, 6, 6\)\)"):
            load_dataset("bad")


def test_normalisation_matches_the_formula():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (5, 2, 3, 3), dtype=torch.uint8, generator=g)
    mean, std = (0.3, 0.6), (0.2, 0.5)
    ds = TensorImageDataset(x, torch.arange(5), mean=mean, std=std)
    expected = (x.double() / 255 - torch.tensor(mean).view(1, 2, 1, 1)) / torch.tensor(std).view(
        1, 2, 1, 1
    )
    images, labels = ds.get_batch([4, 0, 2])
    torch.testing.assert_close(images.double(), expected[[4, 0, 2]], rtol=1e-6, atol=1e-6)
    assert labels.tolist() == [4, 0, 2] and images.dtype == torch.float32
    item, label = ds[3]
    torch.testing.assert_close(item.double(), expected[3], rtol=1e-6, atol=1e-6)
    assert label == 3 and isinstance(label, int)
    with pytest.raises(IndexError):
        ds[5]


def _windows(padded: torch.Tensor, size: int) -> list[torch.Tensor]:
    span = padded.shape[-1] - size + 1
    return [
        padded[:, i : i + size, j : j + size] for i, j in itertools.product(range(span), repeat=2)
    ]


def test_random_crop_flip_returns_windows_of_the_padded_image():
    g = torch.Generator().manual_seed(3)
    x = torch.randint(1, 256, (40, 3, 8, 8), dtype=torch.uint8, generator=g)
    out = RandomCropFlip(2)(x, g)
    assert out.shape == x.shape and out.dtype == torch.uint8
    flips = 0
    offsets = set()
    for img, res in zip(x, out, strict=True):
        padded = torch.nn.functional.pad(img, (2, 2, 2, 2))
        plain = [k for k, w in enumerate(_windows(padded, 8)) if torch.equal(w, res)]
        mirrored = [k for k, w in enumerate(_windows(padded, 8)) if torch.equal(w.flip(-1), res)]
        assert plain or mirrored
        flips += bool(mirrored)
        offsets.update(plain + mirrored)
    assert 5 < flips < 35 and len(offsets) > 10
    assert torch.equal(RandomCropFlip(0, flip=False)(x, g), x)


def test_loaders_are_deterministic():
    bundle = load_dataset("synthetic", size=64, test_size=8, input_shape=(1, 4, 4))

    def epochs(seed: int, count: int = 2) -> list[list[list[float]]]:
        loader = make_loader(bundle.train, 16, shuffle=True, seed=seed)
        # the first pixel and the label identify each item
        return [
            [torch.cat([x[:, 0, 0, 0], y.float()]).tolist() for x, y in loader]
            for _ in range(count)
        ]

    same, again, other = epochs(5), epochs(5), epochs(6)
    assert same == again
    assert same != other
    assert same[0] != same[1]  # every epoch draws a new order
    ordered = [y for _, y in make_loader(bundle.test, 3, shuffle=False, seed=0)]
    assert torch.cat(ordered).tolist() == bundle.test.labels.tolist()
    dropped = list(make_loader(bundle.train, 10, shuffle=True, seed=0, drop_last=True))
    assert len(dropped) == len(bundle.train) // 10
    with pytest.raises(ConfigError):
        make_loader(bundle.train, 0, shuffle=True, seed=0)


def _augmented_batches(num_workers: int) -> list[torch.Tensor]:
    with DATASETS.temporary():
        register_dataset("toy", num_classes=5, input_shape=(3, 6, 6))(_toy_builder)
        bundle = load_dataset("toy", seed=3)
    loader = make_loader(bundle.train, 8, shuffle=True, seed=1, num_workers=num_workers)
    return [x for x, _ in loader]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_augmented_batches_repeat_with_the_same_seeds(num_workers):
    first, second = _augmented_batches(num_workers), _augmented_batches(num_workers)
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


def test_worker_processes_draw_different_augmentations():
    image = torch.arange(3 * 6 * 6, dtype=torch.uint8).view(1, 3, 6, 6)
    ds = TensorImageDataset(
        image.repeat(16, 1, 1, 1), torch.zeros(16), augmentation=RandomCropFlip(2)
    )
    batches = [x for x, _ in make_loader(ds, 8, shuffle=False, seed=0, num_workers=2)]
    assert len(batches) == 2 and not torch.equal(batches[0], batches[1])
