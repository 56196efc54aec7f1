"""The DARTS primitives and one DARTS edge operation built from any registered operator.

Liu, Simonyan and Yang, "DARTS: Differentiable Architecture Search", ICLR 2019: conv
operators are wrapped ReLU-op-BN; pooling, skip and zero are used as they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from convnas.operators.context import BuildContext
from convnas.operators.operator_registry import create_operator, operator_info

__all__ = ["DARTS_PRIMITIVES", "darts_edge_op"]

DARTS_PRIMITIVES = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)


def darts_edge_op(
    op: str,
    hparams: Mapping[str, Any],
    channels: int,
    stride: int,
    *,
    affine: bool,
    search: bool,
    context: BuildContext | None = None,
) -> nn.Module:
    """One DARTS edge operation: conv operators wrapped ReLU-op-BN, blocks as they are.

    In the supernet (``search=True``) pooling is followed by a non-affine BN, as in DARTS.
    ``context`` holds what the edges of one network share (the CSG slice generator).
    """
    info = operator_info(op)
    kwargs = dict(hparams)
    context = kwargs.pop("context", context)
    names = info.hparam_names()
    if "affine" not in kwargs and (names is None or "affine" in names):
        kwargs["affine"] = affine
    if info.kind == "conv":
        kwargs.pop("affine", None)
        return nn.Sequential(
            nn.ReLU(inplace=False),
            create_operator(op, channels, channels, stride, context=context, **kwargs),
            nn.BatchNorm2d(channels, affine=affine),
        )
    module = create_operator(op, channels, channels, stride, context=context, **kwargs)
    if search and "pool" in op:
        return nn.Sequential(module, nn.BatchNorm2d(channels, affine=False))
    return module
