"""The ``darts`` search space: the DARTS cell space (Liu et al., ICLR 2019).

Two input nodes, ``steps`` (4) intermediate nodes, 14 mixed edges per cell; normal cells share
one set of logits and reduction cells another. Candidates are the DARTS primitives plus any
registered conv operator wrapped ReLU-op-BN. Derivation keeps, for every node, the two incoming
edges whose strongest non-``none`` candidate is strongest, with that candidate as the operation.

Supernet memory: ``memory="recompute"`` recomputes the candidates in backward (see
:mod:`convnas.search_space.recompute`); ``partial_channels=K`` sends ``C // K`` channels of every
edge through the MixedOp, with edge normalisation (PC-DARTS, see
:mod:`convnas.search_space.partial_channels`). Neither changes the discrete models.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from convnas.errors import ArchitectureError, ConfigError, OperatorArgumentError
from convnas.models.darts_network import CellNetwork, edge_name, edges_of_cell
from convnas.operators import BuildContext
from convnas.operators.darts_edge import DARTS_PRIMITIVES, darts_edge_op
from convnas.search_space.architecture import Architecture, Choice
from convnas.search_space.partial_channels import PartialEdge, partial_width
from convnas.search_space.recompute import check_memory
from convnas.search_space.space import (
    Candidate,
    Decision,
    SearchSpace,
    Site,
    candidate_fits,
    parse_candidates,
    register_space,
    size_shared_generators,
)
from convnas.search_space.supernet import ArchState, MixedOp, Supernet

__all__ = ["DARTS_PRIMITIVES", "DartsSpace", "darts_edge_op"]

_EDGE = re.compile(r"^(normal|reduce)/(\d+)<-(\d+)$")


@register_space
class DartsSpace(SearchSpace):
    """The DARTS cell space.

    Args:
        candidates: operators offered on every edge (default: the 8 DARTS primitives).
        channels: initial channels C (16 in DARTS search, 36 for the final network).
        layers: number of cells (8 in search, 20 final).
        steps: intermediate nodes per cell.
        multiplier: how many of the last nodes form the cell output.
        stem_multiplier: stem width = stem_multiplier * C.
        num_classes: classifier size.
        input_shape: ``(channels, height, width)`` of the input images.
        affine: BN affine inside the supernet's edges (DARTS: False); discrete models always
            use affine BN.
        memory: the supernet's memory mode, "plain" or "recompute".
        partial_channels: K of PC-DARTS (1: off); only ``C // K`` channels of every supernet
            edge go through its MixedOp.
    """

    name = "darts"

    def __init__(
        self,
        *,
        candidates: Sequence[Any] | None = None,
        channels: int = 16,
        layers: int = 8,
        steps: int = 4,
        multiplier: int = 4,
        stem_multiplier: int = 3,
        num_classes: int = 10,
        input_shape: Sequence[int] = (3, 32, 32),
        affine: bool = False,
        memory: str = "plain",
        partial_channels: int = 1,
    ) -> None:
        for key, value, low in (
            ("channels", channels, 2),
            ("layers", layers, 1),
            ("steps", steps, 1),
            ("multiplier", multiplier, 1),
            ("stem_multiplier", stem_multiplier, 1),
            ("num_classes", num_classes, 2),
            ("partial_channels", partial_channels, 1),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigError(f"must be an int >= {low}, but got {value!r}", key=key)
        if multiplier > steps:
            raise ConfigError(f"must be <= steps={steps}, but got {multiplier}", key="multiplier")
        if len(input_shape) != 3 or any(int(v) < 1 for v in input_shape):
            raise ConfigError(f"must be (C, H, W), but got {input_shape!r}", key="input_shape")
        self.channels, self.layers, self.steps = channels, layers, steps
        self.multiplier, self.stem_multiplier = multiplier, stem_multiplier
        self.num_classes, self.affine = num_classes, bool(affine)
        self.memory, self.partial_channels = check_memory(memory), partial_channels
        partial_width(channels, partial_channels)
        self._input_shape = tuple(int(v) for v in input_shape)
        # A derived cell keeps 2 inputs per intermediate node: 2 * steps C x C edges.
        self.candidates: tuple[Candidate, ...] = size_shared_generators(
            parse_candidates(candidates) if candidates is not None else (),
            sum(2 * steps * c * c * 9 for _, c, _ in self._cell_plan()),
        )
        self._decisions: list[Decision] | None = None

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self._input_shape  # type: ignore[return-value]

    def settings(self) -> dict[str, Any]:
        return {
            "channels": self.channels,
            "layers": self.layers,
            "steps": self.steps,
            "multiplier": self.multiplier,
            "stem_multiplier": self.stem_multiplier,
            "num_classes": self.num_classes,
            "input_shape": list(self._input_shape),
            "affine": self.affine,
        } | ({"partial_channels": self.partial_channels} if self.partial_channels > 1 else {})

    def _cell_plan(self) -> list[tuple[bool, int, tuple[int, int]]]:
        """``(reduction, channels, input_hw)`` of every cell."""
        reductions = {self.layers // 3, 2 * self.layers // 3}
        hw, c, plan = self._input_shape[1:], self.channels, []
        for i in range(self.layers):
            reduction = i in reductions
            if reduction:
                c *= 2
            plan.append((reduction, c, (hw[0], hw[1])))
            if reduction:
                hw = (math.ceil(hw[0] / 2), math.ceil(hw[1] / 2))
        return plan

    def decisions(self) -> list[Decision]:
        if self._decisions is not None:
            return self._decisions
        plan = self._cell_plan()
        decisions = []
        for kind, reduction in (("normal", False), ("reduce", True)):
            cells = [(c, hw) for red, c, hw in plan if red == reduction]
            for node, src in edges_of_cell(self.steps):
                stride = 2 if reduction and src < 2 else 1
                # An edge leaving an intermediate node of a reduction cell sees the halved
                # map (the stride-2 edges into node 2 produced it), not the cell's input.
                halved = reduction and src >= 2
                sites = tuple(
                    Site(
                        c, c, stride, (math.ceil(hw[0] / 2), math.ceil(hw[1] / 2)) if halved else hw
                    )
                    for c, hw in cells
                )
                offered = tuple(
                    cand
                    for cand in self.candidates
                    if all(candidate_fits(cand.op, s) for s in sites)
                )
                if self.candidates and sites and not offered:
                    raise ConfigError(
                        f"no candidate supports edge {edge_name(kind, node, src)!r} (stride "
                        f"{stride})",
                        key="candidates",
                    )
                decisions.append(Decision(edge_name(kind, node, src), offered, sites))
        self._decisions = decisions
        return decisions

    def _network(self, factory, affine: bool, context: BuildContext) -> CellNetwork:
        return CellNetwork(
            factory,
            channels=self.channels,
            layers=self.layers,
            num_classes=self.num_classes,
            in_channels=self._input_shape[0],
            steps=self.steps,
            multiplier=self.multiplier,
            stem_multiplier=self.stem_multiplier,
            affine=affine,
            shared=context.modules,
        )

    def build_supernet(
        self,
        mode: str = "weighted",
        *,
        generator: torch.Generator | None = None,
        memory: str | None = None,
        partial_channels: int | None = None,
    ) -> Supernet:
        """The supernet; ``memory`` and ``partial_channels`` default to the space's settings."""
        if not self.candidates:
            raise ConfigError("a supernet needs candidates", key="candidates")
        memory = check_memory(self.memory if memory is None else memory)
        k = self.partial_channels if partial_channels is None else partial_channels
        partial_width(self.channels, k)
        decisions = {d.name: d for d in self.decisions() if d.sites}
        state = ArchState(list(decisions.values()), mode, generator=generator, memory=memory)
        if k > 1:
            groups = {name.split("<-")[0]: 0 for name in decisions}
            for name in decisions:
                groups[name.split("<-")[0]] += 1
            state.add_edge_logits(groups, generator=generator)
        context = BuildContext()

        def edge_ops(name: str, c: int, stride: int) -> list[nn.Module]:
            ops = []
            for cand in decisions[name].candidates:
                try:
                    op = darts_edge_op(
                        cand.op,
                        cand.hparams,
                        c // k,
                        stride,
                        affine=self.affine,
                        search=True,
                        context=context,
                    )
                except OperatorArgumentError as exc:
                    if k == 1:
                        raise
                    raise ConfigError(
                        f"operator {cand.op!r} cannot run on the {c // k} of {c} channels that "
                        f"partial_channels={k} leaves edge {name!r} ({exc}); choose a smaller "
                        f"partial_channels or drop {cand.op!r} from the candidates",
                        key="partial_channels",
                    ) from None
                ops.append(op)
            return ops

        def factory(name: str, c: int, stride: int, index: int, reduction: bool) -> nn.Module:
            if k == 1:
                return MixedOp(edge_ops(name, c, stride), name, state)
            mixed = MixedOp(edge_ops(name, c, stride), name, state)
            group, src = name.split("<-")
            return PartialEdge(
                mixed, channels=c, k=k, stride=stride, group=group, index=int(src), state=state
            )

        return Supernet(self, self._network(factory, self.affine, context), state)

    def build_model(self, arch: Architecture) -> nn.Module:
        kept = {c.decision: c for c in arch.choices}
        context = BuildContext()

        def factory(name: str, c: int, stride: int, index: int, reduction: bool):
            choice = kept.get(name)
            if choice is None:
                return None
            return darts_edge_op(
                choice.op, choice.hparams, c, stride, affine=True, search=False, context=context
            )

        return self._network(factory, True, context)

    def validate(self, arch: Architecture) -> None:
        if arch.space != self.name:
            raise ArchitectureError(f"space: expected {self.name!r}, but got {arch.space!r}")
        inputs: dict[tuple[str, int], list[int]] = {}
        for i, c in enumerate(arch.choices):
            m = _EDGE.match(c.decision)
            if not m:
                raise ArchitectureError(
                    f"choices[{i}].decision: expected 'normal/NODE<-SOURCE' or "
                    f"'reduce/NODE<-SOURCE', but got {c.decision!r}"
                )
            kind, node, src = m.group(1), int(m.group(2)), int(m.group(3))
            if not 2 <= node < self.steps + 2 or not 0 <= src < node:
                raise ArchitectureError(
                    f"choices[{i}].decision: {c.decision!r} is not an edge of a cell with "
                    f"{self.steps} steps"
                )
            if c.op == "none":
                raise ArchitectureError(f"choices[{i}].op: 'none' cannot be a kept edge")
            inputs.setdefault((kind, node), []).append(src)
        has_reduce = any(red for red, _, _ in self._cell_plan())
        for kind in ("normal", "reduce") if has_reduce else ("normal",):
            for node in range(2, self.steps + 2):
                srcs = inputs.get((kind, node), [])
                if len(srcs) != 2 or len(set(srcs)) != 2:
                    raise ArchitectureError(
                        f"choices: {kind} node {node} must keep exactly 2 edges from distinct "
                        f"inputs, but keeps {sorted(srcs)}"
                    )
        self._check_ops_at_sites(arch)

    def derive(self, supernet: Supernet) -> Architecture:
        probs = supernet.probabilities()
        for name in probs:  # PC-DARTS: edges are ranked by beta-weighted probabilities
            group, source = name.split("<-")
            if group in supernet.arch.betas:
                beta = torch.softmax(supernet.arch.betas[group].detach(), dim=-1)[int(source)]
                probs[name] = [p * float(beta) for p in probs[name]]
        offered = {d.name: d.candidates for d in self.decisions()}
        choices: list[Choice] = []
        for kind in ("normal", "reduce"):
            for node in range(2, self.steps + 2):
                scored = []
                for src in range(node):
                    name = edge_name(kind, node, src)
                    if name not in probs:
                        continue
                    ranked = [
                        (p, k) for k, p in enumerate(probs[name]) if offered[name][k].op != "none"
                    ]
                    if ranked:
                        best_p, best_k = max(ranked)
                        scored.append((best_p, -src, src, best_k))
                for _, _, src, k in sorted(scored, reverse=True)[:2]:
                    cand = offered[edge_name(kind, node, src)][k]
                    choices.append(Choice(edge_name(kind, node, src), cand.op, cand.hparams))
        choices.sort(key=lambda c: _edge_order(c.decision))
        return Architecture(
            self.name, self.settings(), tuple(choices), {"derived_from": "darts top-2 edges"}
        )

    def complete_path(self, indices: Mapping[str, int]) -> dict[str, int]:
        path = {}
        for d in self.decisions():
            if not d.sites:
                continue
            ops = [c.op for c in d.candidates]
            if d.name not in indices and "none" not in ops:
                raise ArchitectureError(
                    "a supernet path for a DARTS cell needs 'none' among the candidates"
                )
            path[d.name] = indices.get(d.name, ops.index("none") if "none" in ops else 0)
        return path

    def architecture(self, indices, metadata=None) -> Architecture:
        """Pick two edges per node: the first two non-``none`` choices in ``indices``."""
        if not isinstance(indices, Mapping):
            indices = {d.name: i for d, i in zip(self.decisions(), indices, strict=True)}
        offered = {d.name: d.candidates for d in self.decisions()}
        choices: list[Choice] = []
        for kind in ("normal", "reduce"):
            for node in range(2, self.steps + 2):
                names = [edge_name(kind, node, src) for src in range(node)]
                picked = [
                    (src, offered[n][indices[n]])
                    for src, n in enumerate(names)
                    if n in indices and offered[n][indices[n]].op != "none"
                ][:2]
                choices.extend(Choice(edge_name(kind, node, s), c.op, c.hparams) for s, c in picked)
        return Architecture(self.name, self.settings(), tuple(choices), metadata or {})


def _edge_order(name: str) -> tuple[int, int, int]:
    m = _EDGE.match(name)
    if m is None:
        raise ArchitectureError(f"not a DARTS edge name: {name!r}")
    return (0 if m.group(1) == "normal" else 1, int(m.group(2)), int(m.group(3)))
