"""The registry of search spaces."""

from __future__ import annotations

from typing import Any

from convnas.errors import ConfigError
from convnas.registry import Registry
from convnas.search_space.space import SearchSpace

__all__ = ["SEARCH_SPACES", "get_space", "register_space"]


def _load_builtin() -> None:
    from convnas.search_space.darts_space import DartsSpace
    from convnas.search_space.resnet_space import ResNetSpace

    SEARCH_SPACES.add(ResNetSpace.name, ResNetSpace)
    SEARCH_SPACES.add(DartsSpace.name, DartsSpace)


SEARCH_SPACES: Registry[type[SearchSpace]] = Registry("search space", loader=_load_builtin)


def register_space(cls: type[SearchSpace], *, replace: bool = False) -> type[SearchSpace]:
    """Register a :class:`SearchSpace` subclass under its ``name`` (usable as a decorator)."""
    SEARCH_SPACES.add(cls.name, cls, replace=replace)
    return cls


def get_space(name: str, **settings: Any) -> SearchSpace:
    """Construct the registered space ``name`` with ``settings``.

    Raises:
        UnknownNameError: no such space (a KeyError listing close matches).
        ConfigError: a setting is unknown or invalid.
    """
    cls = SEARCH_SPACES.get(name)
    try:
        return cls(**settings)
    except TypeError as exc:
        raise ConfigError(f"search space {name!r}: {exc}") from None
