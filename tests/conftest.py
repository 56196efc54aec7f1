"""Shared test fixtures: RNG isolation, the gpu marker, and the shared data directory."""

from __future__ import annotations

import pathlib
import random

import numpy as np
import pytest
import torch

SHARED_DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"
CIFAR_SUBSET = SHARED_DATA / "cifar10-subset"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(autouse=True)
def _restore_rng_state():
    """Each test starts from seed 0 and leaves the global RNG states as it found them."""
    torch_state = torch.get_rng_state()
    np_state = np.random.get_state()
    py_state = random.getstate()
    torch.manual_seed(0)
    yield
    torch.set_rng_state(torch_state)
    np.random.set_state(np_state)
    random.setstate(py_state)


@pytest.fixture
def cifar_subset_dir() -> pathlib.Path:
    """The CIFAR-10 subset of ../shared/data; skips the test when it is absent."""
    root = CIFAR_SUBSET / "cifar-10-batches-py"
    if not root.is_dir():
        pytest.skip(f"shared CIFAR-10 subset not found at {root}")
    return CIFAR_SUBSET
