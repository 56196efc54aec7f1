"""What a DARTS checkpoint must hold and check for a resume to equal an uninterrupted run."""

from __future__ import annotations

import math
import pathlib
from typing import Any

import torch

from convnas.errors import CheckpointError

__all__ = [
    "apply_optimiser_settings",
    "check_epochs",
    "check_state",
    "rng_states",
    "set_rng_states",
]


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
    except (KeyError, TypeError, RuntimeError, AttributeError, ValueError) as exc:
        raise CheckpointError(
            f"the checkpoint's RNG state cannot be restored ({exc}); the checkpoint is damaged: "
            f"start a new run directory"
        ) from None


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


REQUIRED = {
    "supernet": dict,
    "w_opt": dict,
    "a_opt": dict,
    "sched": dict,
    "torch_rng": torch.Tensor,
    "epoch": int,
    "epochs": int,
    "history": list,
    "config_hash": str,
}


def check_state(state: dict[str, Any], epochs: int, path: pathlib.Path) -> None:
    """The checkpoint holds every entry a resume needs, with plausible values.

    The seal of :func:`convnas.io.save_checkpoint` detects corruption, not tampering, so a
    resume checks the contents too: a missing key, an epoch outside ``[0, epochs]`` or a
    history of another length is refused instead of "resuming past the end".
    """
    for key, kind in REQUIRED.items():
        value = state.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise CheckpointError(
                f"{path} is not a complete DARTS checkpoint: {key!r} is missing or not a "
                f"{kind.__name__} (got {type(value).__name__}); start a new run directory"
            )
    check_epochs(state, epochs, path)
    rng, expected = state["torch_rng"], torch.get_rng_state()
    if rng.dtype != expected.dtype or rng.shape != expected.shape:
        raise CheckpointError(
            f"{path}: the checkpoint's RNG state cannot be restored (a {rng.dtype} tensor of "
            f"shape {list(rng.shape)}, not {list(expected.shape)}); start a new run directory"
        )
    epoch = state["epoch"]
    if not 0 <= epoch <= epochs or len(state["history"]) != epoch:
        raise CheckpointError(
            f"{path} is inconsistent: epoch {epoch} of {epochs} with {len(state['history'])} "
            f"history record(s); start a new run directory"
        )


def apply_optimiser_settings(w_opt: Any, a_opt: Any, sched: Any, settings: Any) -> None:
    """Put ``settings``' optimiser values into optimisers restored from a checkpoint: the
    weights' learning rate continues the cosine schedule of the new ``w_lr``/``w_lr_min`` at
    the epoch reached."""
    t, total = sched.last_epoch, sched.T_max
    lr = (
        settings.w_lr_min
        + (settings.w_lr - settings.w_lr_min) * (1 + math.cos(math.pi * t / total)) / 2
    )
    sched.base_lrs = [settings.w_lr for _ in w_opt.param_groups]
    sched.eta_min = settings.w_lr_min
    sched._last_lr = [lr for _ in w_opt.param_groups]
    for group in w_opt.param_groups:
        group.update(
            lr=lr,
            initial_lr=settings.w_lr,
            momentum=settings.w_momentum,
            weight_decay=settings.w_weight_decay,
        )
    for group in a_opt.param_groups:
        group.update(
            lr=settings.a_lr,
            betas=(settings.a_beta1, settings.a_beta2),
            weight_decay=settings.a_weight_decay,
        )
