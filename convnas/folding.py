"""Fold a network into its deploy form.

Over-parameterised operators (DO-Conv, CSG, the multi-path ShiftwiseConv) train with extra
parameters that collapse into an ordinary module for inference. Each such module has a
``fold()`` method returning the equivalent deploy module (the :class:`Foldable` protocol);
:func:`fold` applies it throughout a network.
"""

from __future__ import annotations

import copy
from typing import Protocol, runtime_checkable

from torch import nn

from convnas.operators.context import SharedModules

__all__ = ["Foldable", "fold", "is_foldable"]


@runtime_checkable
class Foldable(Protocol):
    """A module with its own deploy form: ``fold()`` returns the equivalent plain module."""

    def fold(self) -> nn.Module: ...


def is_foldable(module: object) -> bool:
    """Whether ``module`` has its own ``fold()`` method (is a :class:`Foldable`)."""
    return isinstance(module, Foldable)


def fold(model: nn.Module, *, inplace: bool = False) -> nn.Module:
    """Return ``model`` with every foldable submodule replaced by its ``fold()`` result.

    The folded network computes the same function as ``model`` in eval mode, to float
    tolerance. Shared modules (the CSG slice generator) are dropped once nothing reads them.

    Args:
        model: any network.
        inplace: modify ``model`` itself instead of a deep copy.
    """
    target = model if inplace else copy.deepcopy(model)
    if isinstance(target, Foldable):
        return target.fold()
    _fold_children(target)
    for module in target.modules():
        if isinstance(module, SharedModules):
            module.clear()
    return target


def _fold_children(module: nn.Module) -> None:
    for name, child in list(module.named_children()):
        if isinstance(child, SharedModules):
            continue
        if isinstance(child, Foldable):
            setattr(module, name, child.fold())
        else:
            _fold_children(child)
