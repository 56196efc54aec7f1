"""Search strategies: DARTS (gradient), Optuna (multi-objective) and random search."""

from __future__ import annotations

from convnas.strategies.base import (
    STRATEGIES,
    ArchitectureResult,
    SearchResult,
    SearchStrategy,
    get_strategy,
    pareto_front,
)

__all__ = [
    "STRATEGIES",
    "ArchitectureResult",
    "SearchResult",
    "SearchStrategy",
    "get_strategy",
    "pareto_front",
]
