"""A differentiable resource penalty for gradient-based search.

``penalty = lambda * sum_d softmax(alpha_d) . cost_d / reference`` where ``cost_d`` holds the
cost-model metric of each candidate at decision d (summed over the decision's sites) and the
reference is the cost of the most expensive choice (the maximum at every decision), so the
penalty lies in [0, lambda].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from convnas.costs import CostTable, cost_field
from convnas.errors import ConfigError
from convnas.search_space.space import SearchSpace
from convnas.search_space.supernet import Supernet

__all__ = ["ExpectedCostPenalty"]


class ExpectedCostPenalty:
    """Callable returning the penalty for the supernet's current logits.

    Args:
        space: the search space (its decisions carry candidates and sites).
        supernet: the supernet whose logits are penalised.
        metric: a cost objective: "params", "deploy_params", "macs" or "train_memory"
            (:data:`convnas.costs.COST_OBJECTIVES`).
        lam: the weight lambda.
        batch_size, optimizer: the search's, so training memory is priced as it is paid.
    """

    def __init__(
        self,
        space: SearchSpace,
        supernet: Supernet,
        metric: str,
        lam: float,
        *,
        device: torch.device | None = None,
        batch_size: int = 1,
        optimizer: str = "sgd",
    ) -> None:
        decisions = [d for d in space.decisions() if d.sites]
        self.table = CostTable(decisions, batch_size=batch_size, optimizer=optimizer)
        self.objective, self.lam, self.supernet = metric, float(lam), supernet
        self.metric = cost_field(metric)
        self.reference = float(sum(max(row) for row in self.table.values(self.metric)))
        if self.reference <= 0:
            raise ConfigError(
                f"every candidate has zero {metric}; the penalty is undefined",
                key="strategy.penalty_metric",
            )
        self.device = device

    def __call__(self) -> torch.Tensor:
        alphas = self.supernet.arch.alphas
        probs = {name: F.softmax(alphas[name], dim=-1) for name in self.table.names}
        expected = self.table.expected(probs, self.metric)
        return self.lam * expected / self.reference
