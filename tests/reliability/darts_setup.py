"""A tiny DARTS search config and helpers shared by the DARTS reliability tests."""

from __future__ import annotations

import copy
import os
import pathlib
from typing import Any

import torch
import yaml

from convnas.io import load_checkpoint

ROOT = pathlib.Path(__file__).resolve().parents[2]


def darts_config(root: pathlib.Path, **strategy: Any) -> dict[str, Any]:
    """Synthetic data, a depth-8 ResNet space with three candidates, a few DARTS steps."""
    return {
        "seed": 3,
        "device": "cpu",
        "data": {
            "dataset": "synthetic",
            "val_fraction": 0.5,
            "limit_test": 16,
            "options": {"num_classes": 4, "input_shape": [3, 8, 8], "size": 256},
        },
        "space": {
            "kind": "resnet",
            "depth": 8,
            "widths": [4, 8, 8],
            "candidates": ["conv_3x3", "conv_1x1", "c2sp"],
        },
        "strategy": {
            "kind": "darts",
            "epochs": 2,
            "batch_size": 32,
            "steps_per_epoch": 3,
            "a_lr": 0.01,
            **strategy,
        },
        "output": {"progress": False, "report": False, "root": str(root)},
    }


def write_config(path: pathlib.Path, config: dict[str, Any]) -> pathlib.Path:
    path.write_text(yaml.safe_dump(copy.deepcopy(config)))
    return path


def subprocess_env() -> dict[str, str]:
    """One thread per process, and the checkout first on the import path."""
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))


def final_alphas(run: pathlib.Path, epochs: int | None = None) -> dict[str, torch.Tensor]:
    state = load_checkpoint(run / "darts_checkpoint.pt")
    if epochs is not None:
        assert state["epoch"] == epochs
    return {k: v for k, v in state["supernet"].items() if k.startswith("arch.alphas")}
