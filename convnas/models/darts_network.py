"""DARTS cells and networks (Liu et al., ICLR 2019, ``cnn/model_search.py`` and ``model.py``).

A cell has two input nodes (the outputs of the two previous cells, preprocessed to C channels),
``steps`` intermediate nodes and outputs the concatenation of the last ``multiplier`` nodes.
Node j sums an operation on every earlier node (search) or on two chosen ones (discrete).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from convnas.operators.darts_ops import FactorizedReduce, ReLUConvBN

__all__ = ["CellNetwork", "EdgeFactory", "edge_name", "edges_of_cell"]

EdgeFactory = Callable[[str, int, int, int, bool], "nn.Module | None"]
"""``factory(edge_name, channels, stride, cell_index, reduction) -> module or None``.

Returning None leaves the edge out of the cell (discrete cells keep two edges per node).
"""


def edge_name(kind: str, node: int, source: int) -> str:
    """Decision name of the edge from ``source`` into intermediate ``node`` (nodes 2..)."""
    return f"{kind}/{node}<-{source}"


def edges_of_cell(steps: int) -> list[tuple[int, int]]:
    """``(node, source)`` of every edge, nodes numbered from 2 (0 and 1 are the inputs)."""
    return [(node, src) for node in range(2, steps + 2) for src in range(node)]


class Cell(nn.Module):
    def __init__(
        self,
        factory: EdgeFactory,
        index: int,
        steps: int,
        multiplier: int,
        c_pp: int,
        c_p: int,
        c: int,
        reduction: bool,
        reduction_prev: bool,
        affine: bool,
    ) -> None:
        super().__init__()
        self.reduction, self.steps, self.multiplier = reduction, steps, multiplier
        if reduction_prev:
            self.preprocess0: nn.Module = FactorizedReduce(c_pp, c, affine=affine)
        else:
            self.preprocess0 = ReLUConvBN(c_pp, c, 1, 1, 0, affine=affine)
        self.preprocess1 = ReLUConvBN(c_p, c, 1, 1, 0, affine=affine)
        kind = "reduce" if reduction else "normal"
        self.edges = nn.ModuleDict()
        self._inputs: dict[int, list[tuple[int, str]]] = {}
        for node, src in edges_of_cell(steps):
            stride = 2 if reduction and src < 2 else 1
            op = factory(edge_name(kind, node, src), c, stride, index, reduction)
            if op is None:
                continue
            key = f"e{node}_{src}"
            self.edges[key] = op
            self._inputs.setdefault(node, []).append((src, key))
        for node in range(2, steps + 2):
            if not self._inputs.get(node):
                raise ValueError(f"{kind} cell node {node} has no incoming edge")

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for node in range(2, self.steps + 2):
            states.append(sum(self.edges[key](states[src]) for src, key in self._inputs[node]))
        return torch.cat(states[-self.multiplier :], dim=1)


class CellNetwork(nn.Module):
    """Stem, ``layers`` cells (reduction at 1/3 and 2/3 depth), global pool, classifier."""

    def __init__(
        self,
        factory: EdgeFactory,
        *,
        channels: int,
        layers: int,
        num_classes: int,
        in_channels: int,
        steps: int = 4,
        multiplier: int = 4,
        stem_multiplier: int = 3,
        affine: bool = True,
        reduction_layers: Sequence[int] | None = None,
        shared: nn.Module | None = None,
    ) -> None:
        super().__init__()
        c_curr = stem_multiplier * channels
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, c_curr, 3, padding=1, bias=False), nn.BatchNorm2d(c_curr)
        )
        c_pp, c_p, c_curr = c_curr, c_curr, channels
        reductions = set(reduction_layers or (layers // 3, 2 * layers // 3))
        cells, reduction_prev = [], False
        for i in range(layers):
            reduction = i in reductions
            if reduction:
                c_curr *= 2
            cells.append(
                Cell(
                    factory,
                    i,
                    steps,
                    multiplier,
                    c_pp,
                    c_p,
                    c_curr,
                    reduction,
                    reduction_prev,
                    affine,
                )
            )
            reduction_prev = reduction
            c_pp, c_p = c_p, multiplier * c_curr
        self.cells = nn.ModuleList(cells)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_p, num_classes)
        if shared is not None:  # the network owns what its edges share (CSG generators)
            self.shared = shared

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        return self.classifier(torch.flatten(self.pool(s1), 1))
