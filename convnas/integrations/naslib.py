"""NASLib-style primitives over convnas operators.

Mehta, Zela et al., "NAS-Bench-Suite" / NASLib (automl/NASLib). NASLib puts a list of primitives
on each edge of its graph (``edge.data.set("op", [...])``); a primitive is an ``nn.Module`` whose
``forward(x, edge_data)`` takes the edge's data as a second argument, with ``get_embedded_ops()``
(sub-graphs it holds, here None) and the property ``get_op_name``. :class:`ConvNASPrimitive` has
that interface around any convnas module; NASLib itself is not imported.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from convnas.integrations.nni import candidates
from convnas.operators import BuildContext, operator_info

__all__ = ["ConvNASPrimitive", "primitive", "primitives"]


class ConvNASPrimitive(nn.Module):
    """A NASLib primitive wrapping ``op``: ``forward(x, edge_data=None)`` returns ``op(x)``.

    Args:
        op: the wrapped module.
        name: the operator name, returned by :attr:`get_op_name`.
    """

    def __init__(self, op: nn.Module, name: str) -> None:
        super().__init__()
        self.op = op
        self.name = name
        self.init_params = {"name": name}

    def forward(self, x: torch.Tensor, edge_data: Any = None) -> torch.Tensor:
        return self.op(x)

    def get_embedded_ops(self) -> None:
        return None

    @property
    def get_op_name(self) -> str:
        return self.name

    def extra_repr(self) -> str:
        return f"name={self.name!r}"


def primitives(
    C_in: int,  # noqa: N803
    C_out: int | None = None,  # noqa: N803
    stride: int = 1,
    *,
    include: str | list[str] | None = None,
    exclude: str | list[str] | None = None,
    bare: bool = False,
    affine: bool = False,
    track_running_stats: bool = True,
    hparams: Mapping[str, Mapping[str, Any]] | None = None,
    context: BuildContext | None = None,
) -> list[ConvNASPrimitive]:
    """Primitives for one NASLib edge, in the order of ``convnas.integrations.darts.primitives``.

    The modules are those of :func:`convnas.integrations.nni.candidates` (same arguments;
    ``C_out`` defaults to ``C_in``, ``affine`` to False as NASLib's search ops).
    """
    mods = candidates(
        C_in,
        C_in if C_out is None else C_out,
        stride,
        include=include,
        exclude=exclude,
        bare=bare,
        affine=affine,
        track_running_stats=track_running_stats,
        hparams=hparams,
        context=context,
    )
    return [ConvNASPrimitive(m, name) for name, m in mods.items()]


def primitive(
    name: str,
    C_in: int,  # noqa: N803
    C_out: int | None = None,  # noqa: N803
    stride: int = 1,
    **kwargs: Any,
) -> ConvNASPrimitive:
    """One primitive: ``primitives(C_in, C_out, stride, include=[name], **kwargs)[0]``."""
    operator_info(name)  # unknown names fail with close matches
    return primitives(C_in, C_out, stride, include=[name], **kwargs)[0]
