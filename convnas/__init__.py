"""convnas: neural architecture search over efficient convolution operators.

Five operator families from the literature (even kernels with symmetric padding, DO-Conv,
optimized separable convolution, ShiftwiseConv, associative convolution) as registered candidate
operators for NAS, with a cost model, search spaces and search strategies.
"""

from __future__ import annotations

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
from convnas.search_space.cost_model import Costs, measure

__version__ = "0.1.0"

__all__ = [
    "ArchitectureError",
    "BuildContext",
    "CheckpointError",
    "ConfigError",
    "ConvNASError",
    "Costs",
    "OperatorArgumentError",
    "OSepPlan",
    "OperatorInfo",
    "UnknownOperatorError",
    "__version__",
    "convert_model",
    "create_operator",
    "fold",
    "list_operators",
    "measure",
    "models",
    "operator_info",
    "osep_plan",
    "register_operator",
]


def __getattr__(name: str):
    # Submodules that pull in more than the operators load on first use.
    if name == "models":
        import importlib

        return importlib.import_module("convnas.models")
    if name == "convert_model":
        from convnas.integrations.convert import convert_model

        return convert_model
    raise AttributeError(f"module 'convnas' has no attribute {name!r}")
