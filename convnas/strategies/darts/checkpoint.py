"""What a DARTS checkpoint must hold and check for a resume to equal an uninterrupted run."""

from __future__ import annotations

import pathlib
from typing import Any

import torch

from convnas.errors import CheckpointError

__all__ = ["check_epochs", "rng_states", "set_rng_states"]


def rng_states(device: torch.device) -> dict[str, Any]:
    """The RNG states a resume needs: the (forked) CPU stream and, on CUDA, the device's."""
    states: dict[str, Any] = {"torch_rng": torch.get_rng_state()}
    if device.type == "cuda":
        states["cuda_rng"] = torch.cuda.get_rng_state(device)
    return states


def set_rng_states(state: dict[str, Any], device: torch.device) -> None:
    try:
        torch.set_rng_state(state["torch_rng"].cpu())
        if device.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"].cpu(), device)
    except (KeyError, TypeError, RuntimeError, AttributeError) as exc:
        raise CheckpointError(f"the checkpoint's RNG state cannot be restored: {exc}") from None


def check_epochs(state: dict[str, Any], epochs: int, path: pathlib.Path) -> None:
    """A cosine schedule over E epochs cannot become one over E' != E without changing the
    learning rates of the epochs already run, so such a resume could never equal an
    uninterrupted run of the new length: refuse it."""
    saved = state.get("epochs")
    if saved is not None and int(saved) != epochs:
        raise CheckpointError(
            f"{path} belongs to a search of epochs={saved}; resuming it with epochs={epochs} "
            f"would restart the cosine learning-rate schedule (the epochs already run used the "
            f"rates of a {saved}-epoch schedule). Resume with epochs={saved}, or start a new "
            f"run directory with epochs={epochs}"
        )
