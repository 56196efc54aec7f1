"""The one map from objective and penalty names to fields of :class:`~convnas.costs.Costs`.

Searches, penalties, reports and the CLI name costs as objectives (``train_memory``); the cost
model names the fields it measures (``train_memory_bytes``). Everything that turns one into the
other goes through this module, so the names can never drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from convnas.errors import ConfigError

if TYPE_CHECKING:
    from convnas.costs.measure import Costs

__all__ = [
    "COST_OBJECTIVES",
    "OBJECTIVE_DIRECTIONS",
    "OBJECTIVE_FIELDS",
    "cost_field",
    "objective_values",
]

# objective name -> Costs field
OBJECTIVE_FIELDS: Mapping[str, str] = {
    "params": "params",
    "deploy_params": "deploy_params",
    "macs": "macs",
    "train_memory": "train_memory_bytes",
}
COST_OBJECTIVES: tuple[str, ...] = tuple(OBJECTIVE_FIELDS)
OBJECTIVE_DIRECTIONS: Mapping[str, str] = {
    "accuracy": "maximize",
    **{name: "minimize" for name in COST_OBJECTIVES},
}


def cost_field(objective: str) -> str:
    """The :class:`Costs` field that measures ``objective`` (e.g. ``train_memory``)."""
    try:
        return OBJECTIVE_FIELDS[objective]
    except KeyError:
        raise ConfigError(
            f"unknown cost objective {objective!r}; choose one of {list(COST_OBJECTIVES)}"
        ) from None


def objective_values(costs: Costs) -> dict[str, float]:
    """Every cost objective of ``costs`` by objective name."""
    return {name: float(getattr(costs, field)) for name, field in OBJECTIVE_FIELDS.items()}
