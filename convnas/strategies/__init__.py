"""Search strategies (DARTS, Optuna multi-objective, random search) and evaluators.

Importing this package registers the built-in strategies and evaluators; the Optuna strategies
import optuna only when they run.
"""

from __future__ import annotations

from convnas.strategies.base import (
    STRATEGIES,
    ArchitectureResult,
    SearchResult,
    SearchStrategy,
    get_strategy,
    list_strategies,
    pareto_front,
    register_strategy,
)

# Built-in strategies register themselves on import.
from convnas.strategies.darts import DartsStrategy  # noqa: E402, I001
from convnas.strategies.evaluators import (
    EVALUATORS,
    Evaluator,
    SupernetEvaluator,
    TrainEvaluator,
    get_evaluator,
    list_evaluators,
    recalibrate_batchnorm,
    register_evaluator,
)
from convnas.strategies.optuna import OptunaStrategy, RandomStrategy  # noqa: E402

__all__ = [
    "EVALUATORS",
    "STRATEGIES",
    "ArchitectureResult",
    "DartsStrategy",
    "Evaluator",
    "OptunaStrategy",
    "RandomStrategy",
    "SearchResult",
    "SearchStrategy",
    "SupernetEvaluator",
    "TrainEvaluator",
    "get_evaluator",
    "get_strategy",
    "list_evaluators",
    "list_strategies",
    "pareto_front",
    "recalibrate_batchnorm",
    "register_evaluator",
    "register_strategy",
]
