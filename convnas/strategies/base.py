"""The strategy interface: ``SearchStrategy.search(space, data, run_dir) -> SearchResult``."""

from __future__ import annotations

import abc
import hashlib
import json
import pathlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from convnas.registry import Registry
from convnas.search_space import Architecture

if TYPE_CHECKING:
    from convnas.search_space.space import SearchSpace

__all__ = [
    "STRATEGIES",
    "ArchitectureResult",
    "SearchResult",
    "SearchStrategy",
    "config_hash",
    "get_strategy",
    "list_strategies",
    "register_strategy",
    "pareto_front",
]


@dataclass(frozen=True)
class ArchitectureResult:
    """One evaluated architecture and its metrics (accuracy, params, macs, train_memory...)."""

    architecture: Architecture
    metrics: Mapping[str, float]
    trial: int | None = None


@dataclass
class SearchResult:
    """What a search found; for multi-objective searches ``pareto`` holds the front."""

    strategy: str
    results: list[ArchitectureResult]
    pareto: list[ArchitectureResult] = field(default_factory=list)
    run_dir: pathlib.Path | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def best(self) -> ArchitectureResult:
        if not self.results:
            raise ValueError("the search produced no architecture")
        return max(self.results, key=lambda r: r.metrics.get("accuracy", float("-inf")))


def dominates(
    a: Mapping[str, float], b: Mapping[str, float], directions: Mapping[str, str]
) -> bool:
    """Whether ``a`` is at least as good as ``b`` everywhere and better somewhere."""
    better = False
    for key, direction in directions.items():
        va, vb = (a[key], b[key]) if direction == "maximize" else (-a[key], -b[key])
        if va < vb:
            return False
        if va > vb:
            better = True
    return better


def pareto_front(
    results: Sequence[ArchitectureResult], directions: Mapping[str, str]
) -> list[ArchitectureResult]:
    """The mutually non-dominated results under ``directions`` (metric -> maximize/minimize)."""
    return [
        r
        for r in results
        if not any(dominates(o.metrics, r.metrics, directions) for o in results if o is not r)
    ]


def config_hash(*parts: Any) -> str:
    """A stable hash of JSON-serialisable settings (identifies a run's configuration)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class SearchStrategy(abc.ABC):
    """A way to search a space; settings are keyword arguments of the constructor."""

    name: ClassVar[str]
    settings_class: ClassVar[type | None] = None  # the dataclass its keyword settings build

    @abc.abstractmethod
    def search(
        self, space: SearchSpace, data: Any, run_dir: str | pathlib.Path, *, resume: bool = False
    ) -> SearchResult:
        """Search ``space`` on ``data`` (a DataBundle), writing everything under ``run_dir``."""


STRATEGIES: Registry[type[SearchStrategy]] = Registry("strategy")


def register_strategy(cls: type[SearchStrategy], *, replace: bool = False) -> type[SearchStrategy]:
    """Register a :class:`SearchStrategy` subclass under its ``name`` (usable as a decorator)."""
    STRATEGIES.add(cls.name, cls, replace=replace)
    return cls


def list_strategies(pattern: str = "*") -> list[str]:
    """The names of the registered strategies matching ``pattern``."""
    return STRATEGIES.names(pattern)


def get_strategy(name: str, **settings: Any) -> SearchStrategy:
    """Construct the registered strategy ``name`` with ``settings``.

    Raises:
        UnknownNameError: no such strategy (a KeyError listing close matches).
        ConfigError: a setting is unknown or invalid.
    """
    result: SearchStrategy = STRATEGIES.construct(name, **settings)
    return result
