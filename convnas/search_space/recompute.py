"""Recompute mode of the MixedOp: the weighted sum of the candidates without their activations.

The DARTS supernet keeps, at every decision, the internal activations of every candidate for
backward, although only each candidate's output is needed to weight it. In recompute mode the
forward pass keeps only the decision's input (and the weights); the backward pass recomputes the
candidates one at a time and accumulates the gradients of the input, of the candidates' weights
and of the architecture weights, freeing each candidate's graph before the next. The peak is
then the held inputs plus the largest single candidate's graph (Chen et al., "Training Deep Nets
with Sublinear Memory Cost", 2016, applied per decision).

The gradients are *returned* by a :class:`torch.autograd.Function`, so ``.backward()``,
``torch.autograd.grad`` (the DARTS architecture step) and DDP's gradient hooks all see them.
Recomputing reproduces the forward pass exactly: the RNG state of the forward is restored (ops
with randomness draw the same numbers), normalisation layers use the same batch statistics but do
not update their running statistics a second time, and parameters are the tensors the forward
used, even when that forward ran under :func:`torch.func.functional_call` (second-order DARTS)
or they are shared between candidates (the CSG generator of a BuildContext).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch
from torch import nn
from torch.autograd.function import once_differentiable
from torch.nn.modules.batchnorm import _NormBase

__all__ = ["MEMORY_MODES", "check_memory", "recompute_weighted_sum"]

MEMORY_MODES = ("plain", "recompute")


def check_memory(memory: str, *, key: str = "memory") -> str:
    """Return ``memory`` if it is one of :data:`MEMORY_MODES`, else raise ConfigError."""
    from convnas.errors import ConfigError

    if memory not in MEMORY_MODES:
        raise ConfigError(f"must be one of {MEMORY_MODES}, but got {memory!r}", key=key)
    return memory


def _modules_of(op: nn.Module) -> list[nn.Module]:
    """``op``'s modules, also those it reaches through unregistered references (shared)."""
    seen: dict[int, nn.Module] = {}

    def visit(module: nn.Module) -> None:
        if id(module) in seen:
            return
        seen[id(module)] = module
        for child in module._modules.values():
            if child is not None:
                visit(child)
        for value in vars(module).values():
            if isinstance(value, nn.Module):
                visit(value)

    visit(op)
    return list(seen.values())


class _Plan:
    """Where the candidates read their parameters, and the distinct tensors found there."""

    def __init__(self, ops: Iterable[nn.Module]) -> None:
        self.ops = list(ops)
        self.tensors: list[torch.Tensor] = []
        index: dict[int, int] = {}
        # per candidate: (module, parameter name, index into self.tensors)
        self.slots: list[list[tuple[nn.Module, str, int]]] = []
        self.norms: list[_NormBase] = []
        for op in self.ops:
            slots = []
            for module in _modules_of(op):
                if isinstance(module, _NormBase):
                    self.norms.append(module)
                for name, p in module._parameters.items():
                    if p is None:
                        continue
                    if id(p) not in index:
                        index[id(p)] = len(self.tensors)
                        self.tensors.append(p)
                    slots.append((module, name, index[id(p)]))
            self.slots.append(slots)

    @contextlib.contextmanager
    def bound(self, i: int, leaves: Sequence[torch.Tensor]) -> Iterator[None]:
        """Candidate ``i`` reads ``leaves`` in place of its parameters while inside."""
        saved = []
        for module, name, k in self.slots[i]:
            saved.append((module, name, module._parameters[name]))
            module._parameters[name] = leaves[k]  # type: ignore[assignment]
        try:
            yield
        finally:
            for module, name, p in reversed(saved):
                module._parameters[name] = p


@contextlib.contextmanager
def _frozen_statistics(norms: Sequence[_NormBase]) -> Iterator[None]:
    """Batch statistics as in the forward pass, but no second update of the running ones."""
    changed = [m for m in norms if m.training and m.track_running_stats]
    for m in changed:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m in changed:
            m.track_running_stats = True


class _RngState:
    """The RNG state at the start of the forward pass, to replay it when recomputing."""

    def __init__(self, x: torch.Tensor) -> None:
        self.cpu = torch.get_rng_state()
        self.device = x.device if x.is_cuda else None
        self.cuda = torch.cuda.get_rng_state(x.device) if self.device is not None else None
        self.autocast: tuple[str, bool, torch.dtype] | None = None
        kind = x.device.type
        if kind in ("cpu", "cuda"):
            self.autocast = (kind, torch.is_autocast_enabled(kind), torch.get_autocast_dtype(kind))

    @contextlib.contextmanager
    def replay(self) -> Iterator[None]:
        devices = [self.device] if self.device is not None else []
        with torch.random.fork_rng(devices=devices):
            torch.set_rng_state(self.cpu)
            if self.cuda is not None and self.device is not None:
                torch.cuda.set_rng_state(self.cuda, self.device)
            if self.autocast is None:
                yield
            else:
                kind, enabled, dtype = self.autocast
                with torch.autocast(kind, dtype=dtype, enabled=enabled):
                    yield


class _WeightedSum(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, plan: _Plan, x: torch.Tensor, weights: torch.Tensor, *tensors: torch.Tensor
    ) -> torch.Tensor:
        ctx.plan = plan
        ctx.rng = _RngState(x)
        out = weights[0] * plan.ops[0](x)
        for i, op in enumerate(plan.ops[1:], start=1):
            out.add_(weights[i] * op(x))
        ctx.save_for_backward(x, weights, *tensors)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        plan: _Plan = ctx.plan
        x, weights, *tensors = ctx.saved_tensors
        need_x, need_w, *need_t = ctx.needs_input_grad[1:]
        grad_x: torch.Tensor | None = None
        grad_w = torch.zeros_like(weights) if need_w else None
        grad_t: list[torch.Tensor | None] = [None] * len(tensors)
        with torch.enable_grad(), ctx.rng.replay(), _frozen_statistics(plan.norms):
            xd = x.detach().requires_grad_(need_x)
            leaves = [t.detach().requires_grad_(n) for t, n in zip(tensors, need_t, strict=True)]
            for i, op in enumerate(plan.ops):
                with plan.bound(i, leaves):
                    y = op(xd)
                if grad_w is not None:
                    grad_w[i] = (grad_out * y.detach()).sum()
                wanted = sorted({k for _, _, k in plan.slots[i] if need_t[k]})
                inputs = ([xd] if need_x else []) + [leaves[k] for k in wanted]
                if not (y.requires_grad and inputs):
                    continue
                grads = torch.autograd.grad(y, inputs, grad_out * weights[i], allow_unused=True)
                del y  # free this candidate's graph before the next one is built
                if need_x:
                    g, grads = grads[0], grads[1:]
                    if g is not None:
                        grad_x = g if grad_x is None else grad_x + g
                for k, g in zip(wanted, grads, strict=True):
                    if g is not None:
                        prev = grad_t[k]
                        grad_t[k] = g if prev is None else prev + g
        return (None, grad_x, grad_w, *grad_t)


def recompute_weighted_sum(
    x: torch.Tensor, weights: torch.Tensor, ops: Iterable[nn.Module]
) -> torch.Tensor:
    """``sum(weights[i] * ops[i](x))``, keeping only ``x`` and ``weights`` for backward.

    Args:
        x: the decision's input.
        weights: one weight per candidate (a 1-D tensor, e.g. ``softmax(alpha)``).
        ops: the candidates.

    Returns:
        The weighted sum, equal to the plain one; its backward recomputes each candidate.
    """
    plan = _Plan(ops)
    out: torch.Tensor = _WeightedSum.apply(plan, x, weights, *plan.tensors)
    return out
