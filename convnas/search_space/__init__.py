"""Search spaces: architectures (the frozen spec), candidates and decisions, the supernet, and
the registered spaces ``resnet`` and ``darts``.

Importing this package registers the built-in spaces.
"""

from __future__ import annotations

# Built-in spaces register themselves on import.
from convnas.search_space import darts, resnet  # noqa: E402, F401, I001
from convnas.search_space.architecture import SCHEMA, Architecture, Choice
from convnas.search_space.space import (
    SEARCH_SPACES,
    Candidate,
    Decision,
    SearchSpace,
    Site,
    build_model,
    get_space,
    list_spaces,
    load_architecture,
    parse_candidates,
    register_space,
    space_of,
)
from convnas.search_space.supernet import MixedOp, Supernet

__all__ = [
    "SCHEMA",
    "SEARCH_SPACES",
    "Architecture",
    "Candidate",
    "Choice",
    "Decision",
    "MixedOp",
    "SearchSpace",
    "Site",
    "Supernet",
    "build_model",
    "get_space",
    "list_spaces",
    "load_architecture",
    "parse_candidates",
    "register_space",
    "space_of",
]
