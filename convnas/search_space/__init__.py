"""Search spaces, the supernet, architectures and the cost model."""

from __future__ import annotations

from convnas.search_space.cost_model import METRICS, OPTIMIZERS, Costs, measure
from convnas.search_space.cost_table import CandidateSpec, CostTable, cost_of_candidate

__all__ = [
    "METRICS",
    "OPTIMIZERS",
    "CandidateSpec",
    "CostTable",
    "Costs",
    "cost_of_candidate",
    "measure",
]
