"""Argument checks shared by operators, kernels and the osep planner (no torch import)."""

from __future__ import annotations

from typing import Any

from convnas.errors import OperatorArgumentError

__all__ = ["positive_int", "positive_pair"]


def positive_int(name: str, value: Any) -> int:
    """``value`` if it is an int >= 1 (bools are not), else an error naming ``name``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise OperatorArgumentError(f"{name} must be a positive int, but got {name}={value!r}")
    return value


def positive_pair(name: str, value: Any) -> tuple[int, int]:
    """``(v, v)`` for a positive int, or a checked pair of positive ints."""
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return (positive_int(f"{name}[0]", value[0]), positive_int(f"{name}[1]", value[1]))
    if isinstance(value, int) and not isinstance(value, bool):
        return (positive_int(name, value), positive_int(name, value))
    raise OperatorArgumentError(f"{name} must be a positive int or a pair of them, got {value!r}")
