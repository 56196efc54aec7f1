"""DARTS: settings, the architect (the bilevel step) and the strategy."""

from __future__ import annotations

from convnas.strategies.darts.architect import unrolled_arch_gradient
from convnas.strategies.darts.settings import CHECKPOINT, PENALTY_METRICS, DartsSettings
from convnas.strategies.darts.strategy import DartsStrategy

__all__ = [
    "CHECKPOINT",
    "PENALTY_METRICS",
    "DartsSettings",
    "DartsStrategy",
    "unrolled_arch_gradient",
]
