"""Rules for numeric settings, checked where a settings object is made (so at config time).

A rule is ``(test, description)``; :func:`check` raises a :class:`ConfigError` naming the key,
the rule and the value. Every number must be finite: ``lr: .nan`` or ``.inf`` would otherwise
train nothing and still produce a "result".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from convnas.errors import ConfigError

__all__ = [
    "FRACTION",
    "NON_NEGATIVE",
    "OPTIONAL_POSITIVE",
    "OPTIONAL_POSITIVE_INT",
    "POSITIVE",
    "POSITIVE_INT",
    "SEED",
    "Rule",
    "check",
    "is_finite_number",
    "optional",
]

Rule = tuple[Callable[[Any], bool], str]


def is_finite_number(value: Any) -> bool:
    """An int or float (not a bool) that is neither NaN nor infinite."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def optional(rule: Rule) -> Rule:
    """``rule``, or null."""
    test, text = rule
    return (lambda v: v is None or test(v), f"null or {text}")


POSITIVE: Rule = (lambda v: is_finite_number(v) and v > 0, "a finite number > 0")
NON_NEGATIVE: Rule = (lambda v: is_finite_number(v) and v >= 0, "a finite number >= 0")
FRACTION: Rule = (lambda v: is_finite_number(v) and 0 <= v < 1, "a number in [0, 1)")
POSITIVE_INT: Rule = (lambda v: _is_int(v) and v >= 1, "an integer >= 1")
SEED: Rule = (lambda v: _is_int(v) and 0 <= v < 2**63, "an integer in [0, 2**63)")
OPTIONAL_POSITIVE = optional(POSITIVE)
OPTIONAL_POSITIVE_INT = optional(POSITIVE_INT)


def check(settings: Any, rules: Mapping[str, Rule], *, prefix: str = "") -> None:
    """Check attributes of ``settings`` against ``rules`` (key -> rule)."""
    for key, (test, text) in rules.items():
        value = getattr(settings, key)
        if not test(value):
            raise ConfigError(f"must be {text}, but got {value!r}", key=f"{prefix}{key}")
