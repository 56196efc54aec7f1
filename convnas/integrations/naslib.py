"""NASLib primitives over convnas operators.

Mehta, Zela et al., "NAS-Bench-Suite" / NASLib (automl/NASLib). NASLib puts a list of primitives
on each edge of its graph (``edge.data.set("op", [...])``); a primitive is an ``nn.Module`` whose
``forward(x, edge_data)`` takes the edge's data as a second argument, with ``get_embedded_ops()``
(sub-graphs it holds, here None), the property ``get_op_name``, and ``init_params``: the keyword
arguments that rebuild it, ``type(op)(**op.init_params)``. NASLib edits ``C_in``/``C_out`` there
to rebuild an op at another width (``PartialConnectionOp``, hierarchical spaces) and ``affine``/
``track_running_stats`` when it discretizes.

When NASLib is importable, :func:`primitive_class` (used by :func:`primitive` and
:func:`primitives`) returns a subclass of NASLib's ``AbstractPrimitive``, so that NASLib's graph
code (``_get_child_graphs``, ``get_final_architecture``) accepts it; without NASLib it returns
:class:`ConvNASPrimitive`, which has the same interface and needs nothing. NASLib is imported
only when :func:`primitive_class` is first called.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from convnas.integrations.nni import candidate_names, candidates
from convnas.operators import BuildContext, operator_info

__all__ = ["ConvNASPrimitive", "naslib_available", "primitive", "primitive_class", "primitives"]


class ConvNASPrimitive(nn.Module):
    """A NASLib primitive: the convnas operation ``name`` mapping ``C_in`` to ``C_out`` channels.

    ``forward(x, edge_data=None)`` returns ``self.op(x)``. The constructor's arguments are kept
    in ``init_params``, so ``type(p)(**p.init_params)`` rebuilds it (with fresh weights), also
    after NASLib changed ``C_in``/``C_out``/``affine`` there.

    Args:
        name: the operator name (``convnas.integrations.darts.primitives``), also
            :attr:`get_op_name`.
        C_in, C_out, stride: the shape; ``C_out`` defaults to ``C_in``.
        bare: the bare operator (``create_operator``) instead of a NAS-Bench-201 edge operation.
        affine, track_running_stats: BatchNorm settings of the edge operation.
        hparams: the operator's hyper-parameters.
        context: a build context whose ``modules`` the host network owns (CSG generator).
    """

    def __init__(
        self,
        name: str,
        C_in: int,  # noqa: N803
        C_out: int | None = None,  # noqa: N803
        stride: int = 1,
        bare: bool = False,
        affine: bool = False,
        track_running_stats: bool = True,
        hparams: Mapping[str, Any] | None = None,
        context: BuildContext | None = None,
    ) -> None:
        operator_info(name)  # unknown names fail with close matches
        C_out = C_in if C_out is None else C_out  # noqa: N806
        own_hparams: dict[str, Any] = dict(hparams or {})
        params: dict[str, Any] = {
            "name": name,
            "C_in": C_in,
            "C_out": C_out,
            "stride": stride,
            "bare": bare,
            "affine": affine,
            "track_running_stats": track_running_stats,
            "hparams": own_hparams,
            "context": context,
        }
        self._init_base(params)
        self.name = name
        self.C_in, self.C_out, self.stride = C_in, C_out, stride
        (self.op,) = candidates(
            C_in,
            C_out,
            stride,
            include=[name],
            bare=bare,
            affine=affine,
            track_running_stats=track_running_stats,
            hparams={name: own_hparams},
            context=context,
        ).values()

    def _init_base(self, params: dict[str, Any]) -> None:
        nn.Module.__init__(self)
        self.init_params = dict(params)

    def forward(self, x: torch.Tensor, edge_data: Any = None) -> torch.Tensor:
        return self.op(x)

    def get_embedded_ops(self) -> None:
        return None

    @property
    def get_op_name(self) -> str:
        return self.name

    def extra_repr(self) -> str:
        return f"name={self.name!r}, C_in={self.C_in}, C_out={self.C_out}, stride={self.stride}"


_NASLIB_CLASS: type[ConvNASPrimitive] | None = None


def naslib_available() -> bool:
    """Whether ``naslib.search_spaces.core.primitives.AbstractPrimitive`` can be imported."""
    try:
        from naslib.search_spaces.core.primitives import AbstractPrimitive  # noqa: F401
    except ImportError:
        return False
    return True


def primitive_class() -> type[ConvNASPrimitive]:
    """The primitive class: with NASLib, a subclass of ``ConvNASPrimitive`` and NASLib's
    ``AbstractPrimitive`` (made once, on the first call); without it, :class:`ConvNASPrimitive`.
    """
    global _NASLIB_CLASS
    if _NASLIB_CLASS is not None:
        return _NASLIB_CLASS
    try:
        from naslib.search_spaces.core.primitives import AbstractPrimitive
    except ImportError:
        return ConvNASPrimitive

    class NASLibConvNASPrimitive(ConvNASPrimitive, AbstractPrimitive):
        __doc__ = ConvNASPrimitive.__doc__

        def _init_base(self, params: dict[str, Any]) -> None:
            AbstractPrimitive.__init__(self, params)  # sets init_params

    NASLibConvNASPrimitive.__module__ = __name__
    _NASLIB_CLASS = NASLibConvNASPrimitive
    return NASLibConvNASPrimitive


def __getattr__(name: str) -> Any:  # pickle finds the NASLib class by name
    if name == "NASLibConvNASPrimitive":
        cls = primitive_class()
        if cls is not ConvNASPrimitive:
            return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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

    The operators are those of :func:`convnas.integrations.nni.candidates` (same arguments;
    ``C_out`` defaults to ``C_in``, ``affine`` to False as NASLib's search ops), each wrapped in
    :func:`primitive_class`.
    """
    C_out = C_in if C_out is None else C_out  # noqa: N806
    cls = primitive_class()
    hparams = dict(hparams or {})
    return [
        cls(
            name,
            C_in,
            C_out,
            stride,
            bare=bare,
            affine=affine,
            track_running_stats=track_running_stats,
            hparams=hparams.get(name),
            context=context,
        )
        for name in candidate_names(C_in, C_out, stride, include, exclude, bare)
    ]


def primitive(
    name: str,
    C_in: int,  # noqa: N803
    C_out: int | None = None,  # noqa: N803
    stride: int = 1,
    *,
    hparams: Mapping[str, Mapping[str, Any]] | None = None,
    **kwargs: Any,
) -> ConvNASPrimitive:
    """One primitive: ``primitives(C_in, C_out, stride, include=[name], **kwargs)[0]``.

    ``hparams`` maps operator names to hyper-parameters, as in :func:`primitives`; ``kwargs``:
    ``bare``, ``affine``, ``track_running_stats``, ``context``.
    """
    own = (hparams or {}).get(name)
    return primitive_class()(name, C_in, C_out, stride, hparams=own, **kwargs)
