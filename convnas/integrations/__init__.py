"""Adapters that plug convnas operators into other NAS code and existing models.

- :mod:`convnas.integrations.darts`: ``ops()`` / ``primitives()``, a drop-in ``OPS`` /
  ``PRIMITIVES`` for DARTS-family code bases (DARTS, PC-DARTS, Fair-DARTS, DARTS-);
- :mod:`convnas.integrations.nasbench201`: the ``(C_in, C_out, stride, affine,
  track_running_stats)`` signature of NAS-Bench-201;
- :mod:`convnas.integrations.nni`: an NNI ``LayerChoice`` builder (NNI imported lazily);
- :mod:`convnas.integrations.naslib`: NASLib-style primitives, ``forward(x, edge_data)``;
- :func:`convert_model`: swap the 3x3 convs of any network for an operator.

The submodules load on first use, so ``import convnas.integrations`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["ConversionReport", "convert_model", "darts", "nasbench201", "naslib", "nni"]

_SUBMODULES = ("darts", "nasbench201", "naslib", "nni", "convert")


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in ("convert_model", "ConversionReport"):
        return getattr(importlib.import_module(f"{__name__}.convert"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
