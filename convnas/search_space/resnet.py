"""The ``resnet`` search space: a CIFAR-style ResNet where every conv position chooses an operator.

This is the macro space in which the papers compare their operators (ResNet-20/56/110 with one
operator in place of every 3x3). With ``granularity="block"`` both convs of a basic block share
one decision.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from convnas.errors import ConfigError
from convnas.models import CifarResNet, resnet_layout
from convnas.operators import BuildContext, create_operator
from convnas.search_space.architecture import Architecture
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

__all__ = ["ResNetSpace"]

DEFAULT_CANDIDATES = ("conv_3x3", "c2sp", "do_conv_3x3", "osep_3x3", "csg_conv_3x3", "sw_sep")


@register_space
class ResNetSpace(SearchSpace):
    """CIFAR ResNet with an operator choice at every block convolution.

    Args:
        candidates: operator names or ``{op, hparams}`` mappings offered at every decision
            (filtered per position for stride and channel support). Not needed to build a
            model from an Architecture.
        depth: 6n+2.
        widths: stage widths before the multiplier.
        width_multiplier: scales every width.
        shortcut: "A" or "B".
        num_classes: classifier size.
        input_shape: ``(channels, height, width)`` of the input images.
        granularity: "layer" (one decision per conv), "block" (one per basic block) or
            "network" (one operator for the whole network, as in the papers' comparisons).
        memory: the supernet's memory mode, "plain" or "recompute" (no effect on models).
    """

    name = "resnet"

    def __init__(
        self,
        *,
        candidates: Sequence[Any] | None = None,
        depth: int = 20,
        widths: Sequence[int] = (16, 32, 64),
        width_multiplier: float = 1.0,
        shortcut: str = "A",
        num_classes: int = 10,
        input_shape: Sequence[int] = (3, 32, 32),
        granularity: str = "layer",
        memory: str = "plain",
    ) -> None:
        if granularity not in ("layer", "block", "network"):
            raise ConfigError(
                f"must be 'layer', 'block' or 'network', but got {granularity!r}",
                key="granularity",
            )
        if shortcut not in ("A", "B"):
            raise ConfigError(f"must be 'A' or 'B', but got {shortcut!r}", key="shortcut")
        if len(input_shape) != 3 or any(int(v) < 1 for v in input_shape):
            raise ConfigError(f"must be (C, H, W), but got {input_shape!r}", key="input_shape")
        try:
            self._layout = resnet_layout(depth, tuple(widths), width_multiplier)
        except ValueError as exc:
            raise ConfigError(str(exc), key="depth") from None
        self.depth, self.widths = depth, tuple(int(w) for w in widths)
        self.width_multiplier, self.shortcut = float(width_multiplier), shortcut
        self.num_classes, self.granularity = int(num_classes), granularity
        self.memory = check_memory(memory)
        self._input_shape = tuple(int(v) for v in input_shape)
        self.candidates: tuple[Candidate, ...] = size_shared_generators(
            parse_candidates(candidates) if candidates is not None else (),
            sum(cin * cout * 9 for cin, cout, _ in self._layout),
        )
        self._decisions: list[Decision] | None = None

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self._input_shape  # type: ignore[return-value]

    def settings(self) -> dict[str, Any]:
        return {
            "depth": self.depth,
            "widths": list(self.widths),
            "width_multiplier": self.width_multiplier,
            "shortcut": self.shortcut,
            "num_classes": self.num_classes,
            "input_shape": list(self._input_shape),
            "granularity": self.granularity,
        }

    def _sites(self) -> list[Site]:
        hw = self._input_shape[1:]
        sites = []
        for cin, cout, stride in self._layout:
            sites.append(Site(cin, cout, stride, (hw[0], hw[1])))
            hw = (math.ceil(hw[0] / stride), math.ceil(hw[1] / stride))
        return sites

    def decision_of_position(self, position: int) -> str:
        if self.granularity == "network":
            return "all"
        return f"block{position // 2}" if self.granularity == "block" else f"conv{position}"

    def decisions(self) -> list[Decision]:
        if self._decisions is not None:
            return self._decisions
        grouped: dict[str, list[Site]] = {}
        for pos, site in enumerate(self._sites()):
            grouped.setdefault(self.decision_of_position(pos), []).append(site)
        decisions = []
        for name, sites in grouped.items():
            if self.candidates:
                offered = tuple(
                    c for c in self.candidates if all(candidate_fits(c.op, s) for s in sites)
                )
                if not offered:
                    raise ConfigError(
                        f"no candidate fits decision {name!r} (stride {sites[0].stride}, "
                        f"{sites[0].in_channels}->{sites[0].out_channels} channels); add an "
                        f"operator that supports it, e.g. conv_3x3",
                        key="candidates",
                    )
            else:
                offered = ()
            decisions.append(Decision(name, offered, tuple(sites)))
        self._decisions = decisions
        return decisions

    def _network(self, factory) -> CifarResNet:
        return CifarResNet(
            self.depth,
            factory,
            widths=self.widths,
            width_multiplier=self.width_multiplier,
            shortcut=self.shortcut,
            num_classes=self.num_classes,
            in_channels=self._input_shape[0],
        )

    def build_supernet(
        self,
        mode: str = "weighted",
        *,
        generator: torch.Generator | None = None,
        memory: str | None = None,
    ) -> Supernet:
        if not self.candidates:
            raise ConfigError("a supernet needs candidates", key="candidates")
        memory = check_memory(self.memory if memory is None else memory)
        decisions = {d.name: d for d in self.decisions()}
        state = ArchState(list(decisions.values()), mode, generator=generator, memory=memory)

        def factory(pos: int, cin: int, cout: int, stride: int, ctx: BuildContext) -> nn.Module:
            decision = decisions[self.decision_of_position(pos)]
            ops = [
                create_operator(c.op, cin, cout, stride, context=ctx, **c.kwargs)
                for c in decision.candidates
            ]
            return MixedOp(ops, decision.name, state)

        return Supernet(self, self._network(factory), state)

    def build_model(self, arch: Architecture) -> nn.Module:
        by_decision = {c.decision: c for c in arch.choices}

        def factory(pos: int, cin: int, cout: int, stride: int, ctx: BuildContext) -> nn.Module:
            choice = by_decision[self.decision_of_position(pos)]
            return create_operator(choice.op, cin, cout, stride, context=ctx, **choice.kwargs)

        return self._network(factory)
