"""Training and evaluation loops shared by the strategies and ``convnas train``."""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from convnas.errors import ConfigError, TrainingDivergedError
from convnas.strategies.recipe import Recipe, apply_cutout, auxiliary_tap, drop_path_hooks
from convnas.strategies.rules import (
    FRACTION,
    NON_NEGATIVE,
    OPTIONAL_POSITIVE_INT,
    POSITIVE,
    POSITIVE_INT,
)

__all__ = [
    "TrainResult",
    "check_finite",
    "evaluate",
    "require_one_batch",
    "progress",
    "resolve_device",
    "train_model",
]

logger = logging.getLogger(__name__)


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA when available, else CPU; other strings are torch device names."""
    if isinstance(spec, torch.device):
        return spec
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"not a device: {spec!r} ({exc})", key="device") from None
    if device.type not in ("cpu", "cuda", "mps"):  # meta trains nothing; xla etc. unsupported
        raise ConfigError(f"convnas trains on cpu, cuda or mps, but got {spec!r}", key="device")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{spec!r} requested but CUDA is not available", key="device")
    return device


def progress(iterable: Iterable[Any], *, enabled: bool, **kwargs: Any) -> Any:
    """A tqdm progress bar over ``iterable`` when ``enabled``, else the iterable itself."""
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    # disable=None: bars only on a terminal, so logs and CI output stay readable
    return tqdm(iterable, dynamic_ncols=True, leave=False, disable=None, **kwargs)


def check_finite(loss: torch.Tensor, where: str) -> None:
    """Raise :class:`TrainingDivergedError` when ``loss`` is NaN or infinite."""
    if not torch.isfinite(loss.detach()).all():
        raise TrainingDivergedError(f"loss became {loss.item()} during {where}")


@torch.no_grad()
def evaluate(
    model: nn.Module, loader: Iterable[Any], device: torch.device, *, max_batches: int | None = None
) -> tuple[float, float]:
    """Mean cross-entropy and top-1 accuracy (0..1) of ``model`` over ``loader`` in eval mode."""
    was_training = model.training
    model.eval()
    total, correct, loss_sum = 0, 0, 0.0
    for i, (x, y) in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        logits = model(x)
        loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(1) == y).sum())
        total += int(y.numel())
    model.train(was_training)
    if total == 0:
        return math.nan, math.nan
    return loss_sum / total, correct / total


@dataclass
class TrainResult:
    val_accuracy: float
    val_loss: float
    test_accuracy: float | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    steps: int = 0


def require_one_batch(samples: int, batch_size: int, *, key: str) -> None:
    """Refuse training that would not run one step (it would report an untrained network)."""
    if samples < batch_size:
        raise ConfigError(
            f"the training split has {samples} samples, fewer than one batch of "
            f"batch_size={batch_size}, so not one training step would run; lower batch_size "
            f"or use more training data (data.limit_train, data.val_fraction)",
            key=key,
        )


def train_model(
    model: nn.Module,
    data: Any,
    *,
    epochs: int = 1,
    batch_size: int = 64,
    lr: float = 0.05,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    max_steps: int | None = None,
    seed: int = 0,
    device: str | torch.device = "auto",
    evaluate_test: bool = False,
    show_progress: bool = False,
    on_epoch: Any = None,
    recipe: Recipe | None = None,
) -> TrainResult:
    """Train with SGD + cosine schedule on ``data.train``; score on ``data.val`` (and test).

    Args:
        on_epoch: optional ``callback(epoch, val_accuracy)``; it may raise to stop (pruning).
        recipe: drop-path, auxiliary head, cutout, gradient clipping
            (:mod:`convnas.strategies.recipe`; all off by default).

    Raises:
        TrainingDivergedError: the loss became NaN or infinite.
    """
    from convnas.data import make_loader

    for key, value, (test, rule) in (
        ("epochs", epochs, POSITIVE_INT),
        ("batch_size", batch_size, POSITIVE_INT),
        ("lr", lr, POSITIVE),
        ("momentum", momentum, FRACTION),
        ("weight_decay", weight_decay, NON_NEGATIVE),
        ("max_steps", max_steps, OPTIONAL_POSITIVE_INT),
    ):
        if not test(value):
            raise ConfigError(f"must be {rule}, but got {value!r}", key=key)
    require_one_batch(len(data.train), batch_size, key="batch_size")
    recipe = recipe or Recipe()
    dev = resolve_device(device)
    model.to(dev)
    # Cutout and drop-path draws: their own stream, so the batch order is the same with or
    # without them.
    draws = torch.Generator().manual_seed(seed * 1_000_003 + 17)
    with contextlib.ExitStack() as stack:
        drop = stack.enter_context(drop_path_hooks(model, draws)) if recipe.drop_path else None
        aux = None
        if recipe.auxiliary_weight:
            aux = stack.enter_context(auxiliary_tap(model, data.num_classes, data.input_shape))
        params = [p for p in model.parameters() if p.requires_grad]
        if aux is not None:
            params += list(aux[0].parameters())
        opt = torch.optim.SGD(
            params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=momentum > 0
        )
        loaders = [
            make_loader(data.train, batch_size, shuffle=True, seed=seed + e, drop_last=True)
            for e in range(epochs)
        ]
        per_epoch = len(loaders[0]) if max_steps is None else min(len(loaders[0]), max_steps)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, per_epoch * epochs))
        history, step = [], 0
        val_loader = make_loader(data.val, max(batch_size, 256), shuffle=False, seed=seed)
        val_loss, val_acc = math.nan, math.nan
        for epoch in range(epochs):
            model.train()
            if drop is not None:
                drop.prob = recipe.drop_path * epoch / epochs  # DARTS' linear schedule
            seen, loss_sum = 0, 0.0
            bar = progress(
                loaders[epoch],
                enabled=show_progress,
                total=per_epoch,
                desc=f"train epoch {epoch + 1}/{epochs}",
            )
            for i, (x, y) in enumerate(bar):
                if i >= per_epoch:
                    break
                x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
                x = apply_cutout(x, recipe.cutout, draws)
                loss = F.cross_entropy(model(x), y)
                if aux is not None:
                    head, tap = aux
                    loss = loss + recipe.auxiliary_weight * F.cross_entropy(head(tap.value), y)
                check_finite(loss, f"training (epoch {epoch + 1}, step {i + 1})")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if recipe.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(params, recipe.grad_clip)
                opt.step()
                sched.step()
                step += 1
                seen += int(y.numel())
                loss_sum += float(loss.detach()) * int(y.numel())
            val_loss, val_acc = evaluate(model, val_loader, dev)
            history.append(
                {
                    "epoch": epoch + 1,
                    "train_loss": loss_sum / max(seen, 1),
                    "val_loss": val_loss,
                    "val_accuracy": val_acc,
                }
            )
            logger.debug("epoch %d: %s", epoch + 1, history[-1])
            if on_epoch is not None:
                on_epoch(epoch, val_acc)
    test_acc = None
    if evaluate_test and getattr(data, "test", None) is not None:
        test_loader = make_loader(data.test, max(batch_size, 256), shuffle=False, seed=seed)
        test_acc = evaluate(model, test_loader, dev)[1]
    return TrainResult(val_acc, val_loss, test_acc, history, step)
