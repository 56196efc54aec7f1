"""Settings of the DARTS strategy (the defaults of the DARTS paper's CIFAR-10 search)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from convnas.costs import COST_OBJECTIVES
from convnas.errors import ConfigError

__all__ = ["CHECKPOINT", "PENALTY_METRICS", "DartsSettings"]

CHECKPOINT = "darts_checkpoint.pt"
PENALTY_METRICS = COST_OBJECTIVES


@dataclass(frozen=True)
class DartsSettings:
    """Settings of the DARTS strategy (defaults of the DARTS paper, CIFAR-10 search)."""

    epochs: int = 50
    batch_size: int = 64
    order: int = 1
    mode: str = "weighted"
    tau: float = 1.0
    w_lr: float = 0.025
    w_lr_min: float = 0.001
    w_momentum: float = 0.9
    w_weight_decay: float = 3e-4
    grad_clip: float = 5.0
    a_lr: float = 3e-4
    a_beta1: float = 0.5
    a_beta2: float = 0.999
    a_weight_decay: float = 1e-3
    warmup_epochs: int = 0
    steps_per_epoch: int | None = None
    penalty_metric: str | None = None
    penalty_lambda: float = 0.0
    fd_scale: float = 0.01
    seed: int = 0
    device: str = "auto"
    progress: bool = True

    def __post_init__(self) -> None:
        checks = [
            ("epochs", self.epochs >= 1, "an int >= 1"),
            ("batch_size", self.batch_size >= 1, "an int >= 1"),
            ("order", self.order in (1, 2), "1 or 2"),
            ("mode", self.mode in ("weighted", "gumbel"), "'weighted' or 'gumbel'"),
            ("tau", self.tau > 0, "> 0"),
            ("w_lr", self.w_lr > 0, "> 0"),
            ("a_lr", self.a_lr > 0, "> 0"),
            ("warmup_epochs", 0 <= self.warmup_epochs, ">= 0"),
            (
                "steps_per_epoch",
                self.steps_per_epoch is None or self.steps_per_epoch >= 1,
                "None or >= 1",
            ),
            (
                "penalty_metric",
                self.penalty_metric in (None, *PENALTY_METRICS),
                f"None or one of {PENALTY_METRICS}",
            ),
            ("penalty_lambda", self.penalty_lambda >= 0, ">= 0"),
            ("grad_clip", self.grad_clip > 0, "> 0"),
            ("fd_scale", self.fd_scale > 0, "> 0"),
        ]
        for key, ok, rule in checks:
            if not ok:
                raise ConfigError(f"must be {rule}, but got {getattr(self, key)!r}", key=key)
        if self.mode == "gumbel" and self.order == 2:
            raise ConfigError("second order needs mode 'weighted'", key="order")

    def fingerprint(self) -> dict[str, Any]:
        """The settings that change results (progress bars and device do not)."""
        skip = {"progress", "device", "epochs"}
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in skip}
