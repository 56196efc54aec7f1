"""The Optuna strategies (multi-objective NSGA-II by default, and random search): settings,
storage, the strategy, and what a study's results look like on disk."""

from __future__ import annotations

from convnas.strategies.optuna.results import collect, write_trials_csv
from convnas.strategies.optuna.sampling import sample_architecture
from convnas.strategies.optuna.settings import (
    CONSTRAINTS,
    OBJECTIVES,
    SAMPLERS,
    OptunaSettings,
    import_optuna,
    make_sampler,
    node_index,
)
from convnas.strategies.optuna.storage import file_lock, make_storage
from convnas.strategies.optuna.strategy import OptunaStrategy, RandomStrategy

__all__ = [
    "CONSTRAINTS",
    "OBJECTIVES",
    "SAMPLERS",
    "OptunaSettings",
    "OptunaStrategy",
    "RandomStrategy",
    "collect",
    "file_lock",
    "import_optuna",
    "make_sampler",
    "make_storage",
    "node_index",
    "sample_architecture",
    "write_trials_csv",
]
