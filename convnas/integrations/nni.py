"""An NNI ``LayerChoice`` over convnas operators.

NNI (Microsoft, "Neural Network Intelligence") writes a model space as a PyTorch module whose
``LayerChoice(candidates, label=...)`` picks one of several modules; its one-shot (DARTS, ENAS,
random one-shot) and multi-trial strategies search over it. :func:`layer_choice` builds one whose
candidates are convnas operators. NNI is imported only when :func:`layer_choice` is called (NNI 3
``nni.nas.nn.pytorch``, else NNI 2 ``nni.retiarii.nn.pytorch``); :func:`candidates` needs no NNI.
"""

from __future__ import annotations

import importlib
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from torch import nn

from convnas.errors import OperatorArgumentError, OptionalDependencyError
from convnas.integrations.darts import Patterns, primitives
from convnas.integrations.nasbench201 import edge_op
from convnas.operators import BuildContext, create_operator, list_operators, operator_info

__all__ = ["candidate_names", "candidates", "layer_choice", "layer_choice_class"]


def layer_choice_class() -> type:
    """NNI's ``LayerChoice`` class.

    Raises:
        OptionalDependencyError: NNI is not installed, or a package NNI imports is missing
            (NNI 3 imports ``pytorch_lightning``); the message names the missing one.
    """
    errors: list[ImportError] = []
    for path in ("nni.nas.nn.pytorch", "nni.retiarii.nn.pytorch"):  # NNI 3, NNI 2
        try:
            module = importlib.import_module(path)
            return module.LayerChoice
        except (ImportError, AttributeError) as exc:
            if isinstance(exc, ImportError):
                errors.append(exc)
    missing = "nni"
    for error in errors:  # a module other than NNI's own is what is really missing
        top = (error.name or "nni").split(".")[0]
        if top != "nni":
            missing = top
            break
    feature = "convnas.integrations.nni.layer_choice"
    if missing != "nni":
        feature += " (through NNI, which imports it)"
    raise OptionalDependencyError(missing, feature) from (errors[0] if errors else None)


def _fits(name: str, in_channels: int, out_channels: int, stride: int) -> bool:
    info = operator_info(name)
    return (
        info.kind == "conv"
        and stride in info.strides
        and (in_channels == out_channels or info.channel_change)
    )


def candidate_names(
    in_channels: int,
    out_channels: int,
    stride: int = 1,
    include: Patterns = None,
    exclude: Patterns = None,
    bare: bool = False,
) -> list[str]:
    """The operator names :func:`candidates` builds (same arguments), in its order.

    Raises:
        OperatorArgumentError: nothing is selected.
    """
    names = primitives(include, exclude)
    if bare and include is None:
        names = [n for n in names if _fits(n, in_channels, out_channels, stride)]
    if not names:
        raise OperatorArgumentError(
            f"no operator selected by include={include!r}, exclude={exclude!r} "
            f"(registered: {', '.join(list_operators())})"
        )
    return names


def candidates(
    in_channels: int,
    out_channels: int,
    stride: int = 1,
    *,
    include: Patterns = None,
    exclude: Patterns = None,
    bare: bool = False,
    affine: bool = True,
    track_running_stats: bool = True,
    hparams: Mapping[str, Mapping[str, Any]] | None = None,
    context: BuildContext | None = None,
) -> OrderedDict[str, nn.Module]:
    """Name -> module for each selected operator, all mapping ``in_channels`` to ``out_channels``.

    Args:
        in_channels, out_channels, stride: the shape of the choice.
        include, exclude: shell patterns over :func:`convnas.integrations.darts.primitives`.
        bare: the bare conv operators (``create_operator``), to choose among replacements of a
            conv; without ``include`` only the conv operators that support the stride and the
            channel change are offered. Otherwise each candidate is an edge operation with
            NAS-Bench-201 semantics (ReLU-op-BN for conv operators, see ``nasbench201``).
        affine, track_running_stats: BatchNorm settings of the edge operations.
        hparams: operator name -> its hyper-parameters.
        context: a build context whose ``modules`` the host network owns (CSG generator).
    """
    hparams = dict(hparams or {})
    names = candidate_names(in_channels, out_channels, stride, include, exclude, bare)
    out: OrderedDict[str, nn.Module] = OrderedDict()
    for name in names:
        kwargs = dict(hparams.get(name, {}))
        if bare:
            out[name] = create_operator(
                name, in_channels, out_channels, stride, context=context, **kwargs
            )
        else:
            out[name] = edge_op(
                name,
                in_channels,
                out_channels,
                stride,
                affine,
                track_running_stats,
                hparams=kwargs,
                context=context,
            )
    return out


def layer_choice(
    in_channels: int,
    out_channels: int,
    stride: int = 1,
    *,
    label: str | None = None,
    include: Patterns = None,
    exclude: Patterns = None,
    bare: bool = False,
    affine: bool = True,
    track_running_stats: bool = True,
    hparams: Mapping[str, Mapping[str, Any]] | None = None,
    context: BuildContext | None = None,
) -> nn.Module:
    """An NNI ``LayerChoice`` over :func:`candidates` (same arguments), labelled ``label``.

    Example:
        >>> choice = layer_choice(16, 16, include=["conv_3x3", "c2sp", "osep_3x3"], label="b1")

    Raises:
        OptionalDependencyError: NNI is not installed (``pip install nni``).
    """
    cls = layer_choice_class()
    modules = candidates(
        in_channels,
        out_channels,
        stride,
        include=include,
        exclude=exclude,
        bare=bare,
        affine=affine,
        track_running_stats=track_running_stats,
        hparams=hparams,
        context=context,
    )
    return cls(modules, label=label)
