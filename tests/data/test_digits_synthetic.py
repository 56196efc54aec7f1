"""The embedded digits dataset and the synthetic dataset."""

from __future__ import annotations

import pytest
import torch

from convnas.data import load_dataset, make_loader
from convnas.errors import ConfigError


def _all_labels(bundle) -> torch.Tensor:
    return torch.cat([bundle.train.labels, bundle.val.labels, bundle.test.labels])


def test_digits_sizes_shapes_and_values():
    b = load_dataset("digits")
    assert (len(b.train), len(b.val), len(b.test)) == (1294, 144, 359)  # 1797 = 1438 + 359
    assert (b.num_classes, b.input_shape) == (10, (1, 8, 8))
    # class counts of scikit-learn's digits
    assert _all_labels(b).bincount().tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    x, _ = b.test.get_batch(range(len(b.test)))
    assert x.shape == (359, 1, 8, 8)
    levels = (x * 0.3760 + 0.3053) * 16  # undo the normalisation: 17 grey levels 0..16
    torch.testing.assert_close(levels, levels.round(), atol=1e-4, rtol=0)
    assert levels.min().round() == 0 and levels.max().round() == 16


def test_digits_split_depends_on_the_seed_only():
    a, b, c = (load_dataset("digits", seed=s) for s in (4, 4, 5))
    assert torch.equal(a.val.images, b.val.images) and torch.equal(a.train.labels, b.train.labels)
    assert not torch.equal(a.val.images, c.val.images)
    assert torch.equal(a.test.images, c.test.images)  # a fixed hold-out, whatever the seed
    other_test = load_dataset("digits", test_seed=1)
    assert not torch.equal(a.test.images, other_test.test.images)


def test_synthetic_options_and_class_dependent_means():
    b = load_dataset("synthetic", num_classes=4, input_shape=(2, 5, 7), size=400, test_size=40)
    assert (b.num_classes, b.input_shape) == (4, (2, 5, 7))
    assert (len(b.train) + len(b.val), len(b.test)) == (400, 40)
    assert _all_labels(b).bincount().tolist() == [110, 110, 110, 110]
    x, y = b.train.get_batch(range(len(b.train)))
    means = torch.stack([x[y == k].mean(0) for k in range(4)])
    gaps = torch.cdist(means.flatten(1), means.flatten(1))
    assert gaps[~torch.eye(4, dtype=torch.bool)].min() > 1.0  # far apart, the noise averages out
    with pytest.raises(ConfigError, match="input_shape must be"):
        load_dataset("synthetic", input_shape=(5, 7))
    with pytest.raises(ConfigError, match="num_classes must be at least 2"):
        load_dataset("synthetic", num_classes=1)


def test_synthetic_is_learnable_by_a_linear_probe():
    b = load_dataset("synthetic", input_shape=(3, 8, 8), size=500, test_size=200, seed=0)
    probe = torch.nn.Linear(3 * 8 * 8, 10)
    for x, y in make_loader(b.train, 50, shuffle=True, seed=0):
        probe.zero_grad()
        torch.nn.functional.cross_entropy(probe(x.flatten(1)), y).backward()
        with torch.no_grad():  # plain SGD by hand: torch.optim's first step imports dynamo (slow)
            for param in probe.parameters():
                param -= 0.1 * param.grad
    x, y = b.test.get_batch(range(len(b.test)))
    accuracy = (probe(x.flatten(1)).argmax(1) == y).float().mean().item()
    assert accuracy > 0.5  # chance is 0.1; one epoch of 9 steps
