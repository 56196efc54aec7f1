"""MixedOp and the supernet: every candidate at every decision, weighted by logits.

Architecture logits are ``nn.Parameter``s on the supernet (one vector per decision, in
:class:`ArchState`), so they are saved with it, and ``arch_parameters()`` and
``weight_parameters()`` are disjoint. Modes:

- ``weighted``: softmax(alpha)-weighted sum of all candidates (DARTS);
- ``gumbel``: one candidate per call from a hard Gumbel-softmax, straight-through (GDAS);
- ``single_path``: the candidate of the path last drawn by :meth:`Supernet.sample_path`
  (uniform sampling for one-shot training);
- ``fixed``: the candidate set by :meth:`Supernet.set_path`.

Memory modes (:data:`MEMORY_MODES`, independent of the above): ``plain`` keeps every candidate's
activations for backward; ``recompute`` keeps only each decision's input and recomputes the
candidates one by one in backward (``weighted`` and ``gumbel``; same gradients, see
:mod:`convnas.search_space.recompute`). Edge logits (``ArchState.betas``, one vector per group of
decisions, e.g. the incoming edges of a PC-DARTS node) are architecture parameters too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from convnas.errors import ArchitectureError, ConfigError
from convnas.operators import attach_shared
from convnas.search_space.recompute import MEMORY_MODES, check_memory, recompute_weighted_sum

if TYPE_CHECKING:
    from convnas.search_space.architecture import Architecture
    from convnas.search_space.space import Decision, SearchSpace

__all__ = ["MEMORY_MODES", "MODES", "ArchState", "MixedOp", "Supernet"]

MODES = ("weighted", "gumbel", "single_path", "fixed")


class ArchState(nn.Module):
    """Architecture logits (one Parameter per decision) and the sampling state.

    The logits start at ``1e-3 * N(0, 1)`` drawn from ``generator`` (default: seed 0), never
    from the global RNG. ``memory`` is the memory mode of the weighted and Gumbel MixedOps.
    """

    def __init__(
        self,
        decisions: Sequence[Decision],
        mode: str = "weighted",
        *,
        generator: torch.Generator | None = None,
        memory: str = "plain",
    ) -> None:
        super().__init__()
        self.decision_names = [d.name for d in decisions]
        generator = generator if generator is not None else torch.Generator().manual_seed(0)
        self.alphas = nn.ParameterDict(
            {
                d.name: nn.Parameter(1e-3 * torch.randn(len(d.candidates), generator=generator))
                for d in decisions
            }
        )
        self.num_candidates = {d.name: len(d.candidates) for d in decisions}
        self.betas = nn.ParameterDict()
        self.memory = check_memory(memory)
        self.mode = "weighted"
        self.tau = 1.0
        self.active: dict[str, int] = {}
        self.set_mode(mode)

    def set_mode(self, mode: str, *, tau: float | None = None) -> None:
        if mode not in MODES:
            raise ConfigError(f"supernet mode must be one of {MODES}, but got {mode!r}")
        if tau is not None:
            if tau <= 0:
                raise ConfigError(f"gumbel temperature must be > 0, but got {tau}")
            self.tau = float(tau)
        self.mode = mode

    def add_edge_logits(
        self, groups: Mapping[str, int], *, generator: torch.Generator | None = None
    ) -> None:
        """Add one logit vector per group (``name -> size``), ``1e-3 * N(0, 1)`` from
        ``generator`` (default: seed 1)."""
        generator = generator if generator is not None else torch.Generator().manual_seed(1)
        for name, size in groups.items():
            self.betas[name] = nn.Parameter(1e-3 * torch.randn(size, generator=generator))

    def extra_repr(self) -> str:
        extra = "" if self.memory == "plain" else f", memory={self.memory!r}"
        return f"decisions={len(self.decision_names)}, mode={self.mode!r}{extra}"


class MixedOp(nn.Module):
    """The candidates of one decision; how they combine depends on the supernet mode."""

    _state: ArchState  # shared by every MixedOp of a supernet, not a submodule

    def __init__(self, ops: Sequence[nn.Module], decision: str, state: ArchState) -> None:
        super().__init__()
        self.ops = nn.ModuleList(ops)
        self.decision = decision
        attach_shared(self, "_state", state)

    def extra_repr(self) -> str:
        return f"decision={self.decision!r}"

    def forward(self, x: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
        """The mode's combination of the candidates on ``x``; ``scale`` multiplies the
        candidate weights (the edge weight of partial channel connections)."""
        state: ArchState = self._state
        mode = state.mode
        if mode == "weighted":
            weights = F.softmax(state.alphas[self.decision], dim=-1)
            if scale is not None:
                weights = weights * scale
            if state.memory == "recompute":
                return recompute_weighted_sum(x, weights, self.ops)
            return sum(w * op(x) for w, op in zip(weights, self.ops, strict=True))
        if mode == "gumbel":
            weights = F.gumbel_softmax(state.alphas[self.decision], tau=state.tau, hard=True)
            if scale is not None:
                weights = weights * scale
            k = int(weights.argmax())
            if state.memory == "recompute":
                return recompute_weighted_sum(x, weights[k : k + 1], [self.ops[k]])
            return weights[k] * self.ops[k](x)
        if self.decision not in state.active:
            raise ArchitectureError(
                f"supernet is in {mode!r} mode but no path is set for decision "
                f"{self.decision!r}; call sample_path() or set_path() first"
            )
        return self.ops[state.active[self.decision]](x)


class Supernet(nn.Module):
    """A search space's network with a :class:`MixedOp` at every decision.

    Args:
        space: the search space it was built from.
        body: the network, whose MixedOps read ``state``.
        state: the architecture logits and sampling state.
    """

    space: SearchSpace  # a plain reference: a space is not a module
    arch: ArchState

    def __init__(self, space: SearchSpace, body: nn.Module, state: ArchState) -> None:
        super().__init__()
        self.body = body
        self.arch = state
        object.__setattr__(self, "space", space)
        self.decisions = space.decisions()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    @property
    def mode(self) -> str:
        return self.arch.mode

    @property
    def memory(self) -> str:
        """The memory mode: "plain" or "recompute"."""
        return self.arch.memory

    def set_memory(self, memory: str) -> None:
        self.arch.memory = check_memory(memory)

    def set_mode(self, mode: str, *, tau: float | None = None) -> None:
        self.arch.set_mode(mode, tau=tau)

    def arch_parameters(self) -> list[nn.Parameter]:
        return [p for _, p in self.named_arch_parameters()]

    def named_arch_parameters(self) -> list[tuple[str, nn.Parameter]]:
        alphas = [(f"arch.alphas.{n}", self.arch.alphas[n]) for n in self.arch.decision_names]
        return alphas + [(f"arch.betas.{n}", p) for n, p in self.arch.betas.items()]

    def weight_parameters(self) -> list[nn.Parameter]:
        arch_ids = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch_ids]

    def probabilities(self) -> dict[str, list[float]]:
        """softmax(alpha) of every decision, as plain floats."""
        return {
            n: F.softmax(self.arch.alphas[n].detach(), dim=-1).tolist()
            for n in self.arch.decision_names
        }

    def sample_path(self, generator: torch.Generator | None = None) -> dict[str, int]:
        """Draw one candidate per decision uniformly and make it the active path."""
        path = {
            n: int(torch.randint(k, (1,), generator=generator))
            for n, k in self.arch.num_candidates.items()
        }
        self.arch.active = path
        return path

    def set_path(self, path: Mapping[str, int] | Architecture) -> dict[str, int]:
        """Activate a path: candidate indices per decision, or an Architecture."""
        from convnas.search_space.architecture import Architecture

        if isinstance(path, Architecture):
            by_name = {d.name: d for d in self.decisions}
            indices = {c.decision: by_name[c.decision].index(c) for c in path.choices}
            chosen = self.space.complete_path(indices)
        else:
            chosen = dict(path)
        missing = [n for n in self.arch.decision_names if n not in chosen]
        if missing:
            raise ArchitectureError(f"path misses decisions {missing[:5]}")
        for n, k in chosen.items():
            if n not in self.arch.num_candidates:
                raise ArchitectureError(f"path names unknown decision {n!r}")
            if not 0 <= int(k) < self.arch.num_candidates[n]:
                raise ArchitectureError(
                    f"path[{n!r}] = {k} is out of range 0..{self.arch.num_candidates[n] - 1}"
                )
        self.arch.active = {n: int(k) for n, k in chosen.items()}
        return dict(self.arch.active)

    def derive(self) -> Architecture:
        """The discrete architecture the logits favour (the space's derivation rule)."""
        return self.space.derive(self)
