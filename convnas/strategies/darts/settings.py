"""Settings of the DARTS strategy (the defaults of the DARTS paper's CIFAR-10 search)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from convnas.costs import COST_OBJECTIVES
from convnas.errors import ConfigError
from convnas.seeding import check_seeds
from convnas.strategies.rules import (
    FRACTION,
    NON_NEGATIVE,
    OPTIONAL_POSITIVE_INT,
    POSITIVE,
    POSITIVE_INT,
    SEED,
    check,
)

__all__ = ["CHECKPOINT", "OPTIMISER_KEYS", "PENALTY_METRICS", "DartsSettings"]

CHECKPOINT = "darts_checkpoint.pt"
# What a resume may change, e.g. lower learning rates after a divergence.
OPTIMISER_KEYS = (
    "w_lr",
    "w_lr_min",
    "w_momentum",
    "w_weight_decay",
    "grad_clip",
    "a_lr",
    "a_beta1",
    "a_beta2",
    "a_weight_decay",
)
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
    seeds: dict[str, int] = dataclasses.field(default_factory=dict)
    device: str = "auto"
    progress: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "seeds", check_seeds(self.seeds))
        check(
            self,
            {
                "epochs": POSITIVE_INT,
                "batch_size": POSITIVE_INT,
                "tau": POSITIVE,
                "w_lr": POSITIVE,
                "w_lr_min": NON_NEGATIVE,
                "w_momentum": FRACTION,
                "w_weight_decay": NON_NEGATIVE,
                "grad_clip": POSITIVE,
                "a_lr": POSITIVE,
                "a_beta1": FRACTION,
                "a_beta2": FRACTION,
                "a_weight_decay": NON_NEGATIVE,
                "warmup_epochs": (lambda v: isinstance(v, int) and v >= 0, "an integer >= 0"),
                "steps_per_epoch": OPTIONAL_POSITIVE_INT,
                "penalty_lambda": NON_NEGATIVE,
                "fd_scale": POSITIVE,
                "seed": SEED,
                "order": (lambda v: v in (1, 2), "1 or 2"),
                "mode": (lambda v: v in ("weighted", "gumbel"), "'weighted' or 'gumbel'"),
                "penalty_metric": (
                    lambda v: v in (None, *PENALTY_METRICS),
                    f"null or one of {list(PENALTY_METRICS)}",
                ),
            },
        )
        if self.mode == "gumbel" and self.order == 2:
            raise ConfigError("second order needs mode 'weighted'", key="order")
        if self.w_lr_min > self.w_lr:
            raise ConfigError(
                f"w_lr_min <= w_lr must hold, but got w_lr_min={self.w_lr_min}, w_lr={self.w_lr}",
                key="w_lr_min",
            )

    def optimiser_settings(self) -> dict[str, Any]:
        """The settings a resume may change (recorded in the run's history when it does)."""
        return {k: getattr(self, k) for k in OPTIMISER_KEYS}

    def resume_fingerprint(self) -> dict[str, Any]:
        """The settings a resume must keep: :meth:`fingerprint` less the optimiser's."""
        return {k: v for k, v in self.fingerprint().items() if k not in OPTIMISER_KEYS}

    def fingerprint(self) -> dict[str, Any]:
        """The settings that change results (progress bars and device do not)."""
        skip = {"progress", "device", "epochs"}
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in skip}
