"""The cost model: params, MACs and training memory on the meta device, per-candidate cost
tables, and the one objective-name -> cost-field map."""

from __future__ import annotations

from convnas.costs.cost_table import CandidateSpec, CostTable, cost_of_candidate
from convnas.costs.measure import METRICS, OPTIMIZERS, Costs, measure
from convnas.costs.objectives import (
    COST_OBJECTIVES,
    OBJECTIVE_DIRECTIONS,
    OBJECTIVE_FIELDS,
    cost_field,
    objective_values,
)
from convnas.costs.saved_tensors import SavedTensorMeter

__all__ = [
    "COST_OBJECTIVES",
    "METRICS",
    "OBJECTIVE_DIRECTIONS",
    "OBJECTIVE_FIELDS",
    "OPTIMIZERS",
    "CandidateSpec",
    "CostTable",
    "Costs",
    "SavedTensorMeter",
    "cost_field",
    "cost_of_candidate",
    "measure",
    "objective_values",
]
