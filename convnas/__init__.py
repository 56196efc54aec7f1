"""convnas: neural architecture search over efficient convolution operators.

Five operator families from the literature (even kernels with symmetric padding, DO-Conv,
optimized separable convolution, ShiftwiseConv, associative convolution) as registered candidate
operators for NAS, with a cost model, search spaces and search strategies.
"""

from __future__ import annotations

import importlib
from typing import Any

from convnas.costs.measure import Costs, measure
from convnas.errors import (
    ArchitectureError,
    CheckpointError,
    ConfigError,
    ConvNASError,
    OperatorArgumentError,
    UnknownOperatorError,
)
from convnas.folding import fold
from convnas.operators import (
    BuildContext,
    OperatorInfo,
    create_operator,
    list_operators,
    operator_info,
    register_operator,
)
from convnas.operators.osep_plan import OSepPlan, osep_plan
from convnas.search_space import (
    Architecture,
    build_model,
    get_space,
    list_spaces,
    load_architecture,
    register_space,
)

__version__ = "0.1.0"

# Names whose modules pull in more than the operators: loaded on first use.
_LAZY = {
    "models": ("convnas.models", None),
    "convert_model": ("convnas.integrations.convert", "convert_model"),
    "Evaluator": ("convnas.strategies", "Evaluator"),
    "register_evaluator": ("convnas.strategies", "register_evaluator"),
    "get_strategy": ("convnas.strategies", "get_strategy"),
    "list_strategies": ("convnas.strategies", "list_strategies"),
    "register_strategy": ("convnas.strategies", "register_strategy"),
    "load_exported": ("convnas.run.export", "load_exported"),
    "rank_run": ("convnas.run.ranking", "rank_run"),
    "run_search": ("convnas.run.runner", "run_search"),
}

__all__ = [
    "Architecture",
    "ArchitectureError",
    "BuildContext",
    "CheckpointError",
    "ConfigError",
    "ConvNASError",
    "Costs",
    "Evaluator",
    "OSepPlan",
    "OperatorArgumentError",
    "OperatorInfo",
    "UnknownOperatorError",
    "__version__",
    "build_model",
    "convert_model",
    "create_operator",
    "fold",
    "get_space",
    "get_strategy",
    "list_operators",
    "list_spaces",
    "list_strategies",
    "load_architecture",
    "load_exported",
    "measure",
    "models",
    "operator_info",
    "osep_plan",
    "rank_run",
    "register_evaluator",
    "register_operator",
    "register_space",
    "register_strategy",
    "run_search",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module_name, attr = _LAZY[name]
        module = importlib.import_module(module_name)
        return module if attr is None else getattr(module, attr)
    raise AttributeError(f"module 'convnas' has no attribute {name!r}")
