"""Per-decision cost tables: the cost of every candidate at every decision, measured once.

:func:`cost_of_candidate` measures one operator in isolation on the meta device (its input
requires a gradient, as an inner layer's does) and memoises the result on all its arguments.
:class:`CostTable` arranges these costs by decision so that a strategy can use expected costs
(a differentiable resource penalty) or pick the cheapest candidates without measuring again.

Isolated costs add up to a network's cost up to what the layers share: the input saved by one
layer is the output of the previous one, and modules shared through a
:class:`~convnas.operators.BuildContext` (the CSG generator) are counted by every candidate that
uses them; ``Costs.shared_params`` tells how much that is.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from convnas.costs.measure import METRICS, Costs, _canonical_optimizer, measure
from convnas.errors import ConfigError
from convnas.operators import BuildContext, create_operator

__all__ = ["CandidateSpec", "CostTable", "cost_of_candidate"]


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return ("__mapping__", tuple(sorted((str(k), _freeze(v)) for k, v in value.items())))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, (set, frozenset)):
        return frozenset(_freeze(v) for v in value)
    try:
        hash(value)
    except TypeError:
        raise ConfigError(
            f"hyper-parameter values must be hashable, lists or mappings, but got {value!r}"
        ) from None
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, tuple) and len(value) == 2 and value[0] == "__mapping__":
        return {k: _thaw(v) for k, v in value[1]}
    if isinstance(value, tuple):
        return tuple(_thaw(v) for v in value)
    return value


@dataclass(frozen=True)
class CandidateSpec:
    """One candidate operator at one site: what :func:`cost_of_candidate` needs."""

    op: str
    hparams: Mapping[str, Any] = field(default_factory=dict)
    in_channels: int = 16
    out_channels: int = 16
    stride: int = 1
    input_hw: tuple[int, int] = (32, 32)

    @property
    def label(self) -> str:
        if not self.hparams:
            return self.op
        args = ",".join(f"{k}={v}" for k, v in sorted(self.hparams.items()))
        return f"{self.op}({args})"


class _Isolated(nn.Module):
    """An operator plus the shared modules it was built with, so both are measured."""

    def __init__(self, op: nn.Module, context: BuildContext) -> None:
        super().__init__()
        self.op = op
        self.shared = context.modules

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


@functools.lru_cache(maxsize=8192)
def _cached_cost(
    op: str,
    hparams: tuple,
    in_channels: int,
    out_channels: int,
    stride: int,
    input_hw: tuple[int, int],
    batch_size: int,
    optimizer: str,
    dtype: torch.dtype,
) -> Costs:
    context = BuildContext()
    kwargs = {k: _thaw(v) for k, v in hparams}
    module = create_operator(
        op, in_channels, out_channels, stride, context=context, device="meta", **kwargs
    )
    return measure(
        _Isolated(module, context),
        (in_channels, *input_hw),
        batch_size=batch_size,
        optimizer=optimizer,
        dtype=dtype,
        input_requires_grad=True,
    )


def cost_of_candidate(
    op_name: str,
    hparams: Mapping[str, Any] | None,
    in_channels: int,
    out_channels: int,
    stride: int,
    input_hw: Sequence[int],
    *,
    batch_size: int = 1,
    optimizer: str = "sgd",
    dtype: torch.dtype = torch.float32,
) -> Costs:
    """Costs of the operator ``op_name`` alone, at one site; memoised on all arguments.

    Args:
        op_name: a registered operator.
        hparams: its hyper-parameters (lists and mappings are fine).
        in_channels, out_channels, stride: the site.
        input_hw: spatial size of the operator's input.
        batch_size, optimizer, dtype: as for :func:`~convnas.search_space.measure`.
    """
    hw = tuple(int(s) for s in input_hw)
    if len(hw) != 2:
        raise ConfigError(f"input_hw must be (height, width), but got {input_hw!r}")
    frozen = tuple(sorted((str(k), _freeze(v)) for k, v in (hparams or {}).items()))
    return _cached_cost(
        op_name,
        frozen,
        int(in_channels),
        int(out_channels),
        int(stride),
        hw,
        int(batch_size),
        _canonical_optimizer(optimizer),
        dtype,
    )


def _as_specs(candidate: Any) -> list[CandidateSpec]:
    if isinstance(candidate, CandidateSpec):
        return [candidate]
    if isinstance(candidate, Mapping):
        return [CandidateSpec(**candidate)]
    if isinstance(candidate, Sequence) and candidate and isinstance(candidate[0], CandidateSpec):
        return list(candidate)
    if isinstance(candidate, Sequence) and len(candidate) == 6:
        op, hparams, cin, cout, stride, hw = candidate
        return [CandidateSpec(op, dict(hparams or {}), cin, cout, stride, tuple(hw))]
    raise ConfigError(
        "a candidate must be a CandidateSpec, a mapping of its fields, a list of CandidateSpecs "
        f"(one per site) or (op, hparams, in, out, stride, input_hw), but got {candidate!r}"
    )


def _decision_specs(decision: Any) -> list[list[CandidateSpec]]:
    """Candidates of one decision, each as the list of its sites."""
    if hasattr(decision, "candidates") and hasattr(decision, "sites"):
        return [
            [
                CandidateSpec(
                    c.op, dict(c.hparams), s.in_channels, s.out_channels, s.stride, s.input_hw
                )
                for s in decision.sites
            ]
            for c in decision.candidates
        ]
    if isinstance(decision, (str, bytes)) or not isinstance(decision, Sequence) or not decision:
        raise ConfigError(f"a decision must be a non-empty list of candidates, got {decision!r}")
    return [_as_specs(c) for c in decision]


class CostTable:
    """Costs of every candidate at every decision of a search space, measured once.

    Args:
        decisions: each decision is either an object with ``candidates`` (``.op``,
            ``.hparams``) and ``sites`` (``.in_channels``, ``.out_channels``, ``.stride``,
            ``.input_hw``), whose candidate costs are summed over its sites, or a list of
            candidates (see :class:`CandidateSpec`).
        names: decision names (default: ``decision.name`` or the index).
        batch_size, optimizer, dtype: as for :func:`~convnas.search_space.measure`.

    Attributes:
        table: ``table[d][c]`` is the :class:`~convnas.search_space.Costs` of candidate c at
            decision d.
        labels: ``labels[d][c]``, the candidate's operator and hyper-parameters.
    """

    def __init__(
        self,
        decisions: Sequence[Any],
        *,
        names: Sequence[str] | None = None,
        batch_size: int = 1,
        optimizer: str = "sgd",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if not decisions:
            raise ConfigError("a cost table needs at least one decision")
        if names is not None and len(names) != len(decisions):
            raise ConfigError(f"got {len(names)} names for {len(decisions)} decisions")
        self.names = [
            str(names[i]) if names is not None else str(getattr(d, "name", i))
            for i, d in enumerate(decisions)
        ]
        self.table: list[list[Costs]] = []
        self.labels: list[list[str]] = []
        for decision in decisions:
            row, labels = [], []
            for sites in _decision_specs(decision):
                costs = [
                    cost_of_candidate(
                        s.op,
                        s.hparams,
                        s.in_channels,
                        s.out_channels,
                        s.stride,
                        s.input_hw,
                        batch_size=batch_size,
                        optimizer=optimizer,
                        dtype=dtype,
                    )
                    for s in sites
                ]
                row.append(functools.reduce(lambda a, b: a + b, costs))
                labels.append(sites[0].label)
            self.table.append(row)
            self.labels.append(labels)

    def __len__(self) -> int:
        return len(self.table)

    def values(self, metric: str) -> list[list[int]]:
        """``metric`` of every candidate, decision by decision."""
        return [[c[metric] for c in row] for row in self.table]

    def expected(self, decision_probs: Any, metric: str) -> torch.Tensor:
        """Sum over decisions of ``probs[d] @ costs[d]``: differentiable in the probabilities.

        Args:
            decision_probs: one probability vector per decision (a list of 1-D tensors, a
                mapping from decision name, or a 2-D tensor when all decisions have as many
                candidates).
            metric: a field of :class:`Costs` (see ``METRICS``).
        """
        if metric not in METRICS:
            raise ConfigError(f"unknown cost metric {metric!r}; choose one of {list(METRICS)}")
        if isinstance(decision_probs, Mapping):
            decision_probs = [decision_probs[name] for name in self.names]
        if len(decision_probs) != len(self.table):
            raise ConfigError(
                f"expected probabilities for {len(self.table)} decisions, "
                f"but got {len(decision_probs)}"
            )
        total = None
        for d, (probs, row) in enumerate(zip(decision_probs, self.table, strict=True)):
            if probs.shape != (len(row),):
                raise ConfigError(
                    f"decision {self.names[d]!r} has {len(row)} candidates, but its "
                    f"probabilities have shape {tuple(probs.shape)}"
                )
            costs = torch.tensor([c[metric] for c in row], dtype=probs.dtype, device=probs.device)
            term = probs @ costs
            total = term if total is None else total + term
        if total is None:  # unreachable: the constructor refuses a table without decisions
            raise ConfigError("a cost table needs at least one decision")
        return total

    def cheapest(self, metric: str) -> list[int]:
        """Index of the cheapest candidate at each decision (the first one on ties)."""
        return [min(range(len(row)), key=row.__getitem__) for row in self.values(metric)]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict: decisions, candidate labels and their costs."""
        return {
            "decisions": [
                {
                    "name": name,
                    "candidates": [
                        {"label": label, "costs": costs.to_dict()}
                        for label, costs in zip(labels, row, strict=True)
                    ],
                }
                for name, labels, row in zip(self.names, self.labels, self.table, strict=True)
            ]
        }
