"""Candidate operators: the registry and every built-in operator family.

Importing this package registers the built-in operators; third-party operators load from the
entry-point group ``convnas.operators`` on first lookup.
"""

from __future__ import annotations

# Built-in operator modules register themselves on import.
from convnas.operators import (  # noqa: F401
    csg,
    darts_ops,
    do_conv,
    even_kernels,
    osep,
    shiftwise,
)
from convnas.operators.context import BuildContext, SharedModules, attach_shared
from convnas.operators.operator_registry import (
    OPERATORS,
    OperatorInfo,
    create_operator,
    list_operators,
    operator_info,
    register_operator,
)

__all__ = [
    "OPERATORS",
    "BuildContext",
    "OperatorInfo",
    "SharedModules",
    "attach_shared",
    "create_operator",
    "list_operators",
    "operator_info",
    "register_operator",
]
