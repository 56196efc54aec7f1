"""Operators with NAS-Bench-201's ``(C_in, C_out, stride, affine, track_running_stats)``.

Dong and Yang, "NAS-Bench-201: Extending the Scope of Reproducible Neural Architecture Search",
ICLR 2020 (also AutoDL-Projects and the NATS-Bench code). Its ``OPS`` table maps a name to
``factory(C_in, C_out, stride, affine, track_running_stats)``. :func:`ops` returns such a table
for the five NAS-Bench-201 names (``none``, ``skip_connect``, ``nor_conv_1x1``, ``nor_conv_3x3``,
``avg_pool_3x3``) and every registered operator.

Semantics:

- ``kind="conv"`` operators are ReLU-op-BN, as NAS-Bench-201's ``ReLUConvBN``
  (``nor_conv_kxk`` is ``conv_kxk`` so wrapped). An operator that cannot change the channel count
  is followed by a 1x1 conv to ``C_out`` inside the same ReLU ... BN.
- blocks are used as they are when ``C_in == C_out`` or they can change channels; otherwise a
  1x1 ReLU-conv-BN to ``C_out`` goes first, as NAS-Bench-201's pooling does. ``none`` outputs
  zeros of the output shape.
- stride-1-only operators get a 2x2 average pool in front at stride 2.
- ``track_running_stats=False`` applies to every BatchNorm inside the operation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from convnas.integrations.darts import Patterns, select_names, with_stride
from convnas.operators import BuildContext, create_operator, list_operators, operator_info
from convnas.operators.darts_ops import ReLUConvBN

__all__ = ["ALIASES", "NB201_PRIMITIVES", "Zeros", "edge_op", "ops", "primitives"]

NB201_PRIMITIVES = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
ALIASES: Mapping[str, str] = {"nor_conv_1x1": "conv_1x1", "nor_conv_3x3": "conv_3x3"}


class Zeros(nn.Module):
    """Zeros of shape ``(B, out_channels, ceil(H/stride), ceil(W/stride))``: no edge."""

    def __init__(self, out_channels: int, stride: int) -> None:
        super().__init__()
        self.out_channels, self.stride = out_channels, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        size = (b, self.out_channels, math.ceil(h / self.stride), math.ceil(w / self.stride))
        return x.new_zeros(size)

    def extra_repr(self) -> str:
        return f"out_channels={self.out_channels}, stride={self.stride}"


def primitives(include: Patterns = None, exclude: Patterns = None) -> list[str]:
    """The five NAS-Bench-201 names, then every other registered operator (sorted), filtered.

    ``conv_1x1`` and ``conv_3x3`` are left out of the default list, being ``nor_conv_1x1`` and
    ``nor_conv_3x3``; :func:`ops` accepts them all the same.
    """
    names = list(NB201_PRIMITIVES)
    taken = set(names) | set(ALIASES.values())
    names += [n for n in list_operators() if n not in taken]
    return select_names(names, include, exclude)


def _set_track_running_stats(module: nn.Module, flag: bool) -> None:
    if flag:
        return
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.track_running_stats = False
            m.running_mean = None
            m.running_var = None
            m.num_batches_tracked = None


def _conv_edge(name, c_in, c_out, stride, affine, kwargs) -> nn.Module:
    info = operator_info(name)
    c_op = c_out if info.channel_change else c_in
    layers = [nn.ReLU(inplace=False), create_operator(name, c_in, c_op, stride, **kwargs)]
    if c_op != c_out:
        layers.append(nn.Conv2d(c_op, c_out, 1, bias=False))
    layers.append(nn.BatchNorm2d(c_out, affine=affine))
    return nn.Sequential(*layers)


def _block_edge(name, c_in, c_out, stride, affine, kwargs) -> nn.Module:
    info = operator_info(name)
    names = info.hparam_names()
    if names is None or "affine" in names:
        kwargs = {"affine": affine, **kwargs}
    if c_in == c_out or info.channel_change:
        return create_operator(name, c_in, c_out, stride, **kwargs)
    return nn.Sequential(
        ReLUConvBN(c_in, c_out, 1, 1, 0, affine=affine),
        create_operator(name, c_out, c_out, stride, **kwargs),
    )


def edge_op(
    name: str,
    C_in: int,  # noqa: N803
    C_out: int,  # noqa: N803
    stride: int,
    affine: bool = True,
    track_running_stats: bool = True,
    *,
    hparams: Mapping[str, Any] | None = None,
    context: BuildContext | None = None,
) -> nn.Module:
    """One NAS-Bench-201 edge operation (see the module docstring for the semantics).

    Args:
        name: a registered operator or a NAS-Bench-201 name (``nor_conv_3x3``, ...).
        C_in, C_out: input and output channels.
        stride: the stride.
        affine: affine BatchNorm.
        track_running_stats: BatchNorm running statistics.
        hparams: hyper-parameters of the operator.
        context: a build context whose ``modules`` the host network owns (CSG generator).
    """
    op = ALIASES.get(name, name)
    info = operator_info(op)
    kwargs = dict(hparams or {})
    if context is not None:
        kwargs["context"] = context
    if op == "none":
        module: nn.Module = Zeros(C_out, stride)
    else:
        edge = _conv_edge if info.kind == "conv" else _block_edge
        module = with_stride(op, stride, lambda s: edge(op, C_in, C_out, s, affine, kwargs))
    _set_track_running_stats(module, track_running_stats)
    return module


class NB201OpFactory:
    """``factory(C_in, C_out, stride, affine, track_running_stats)`` for one operator."""

    def __init__(
        self,
        name: str,
        *,
        hparams: Mapping[str, Any] | None = None,
        context: BuildContext | None = None,
    ) -> None:
        operator_info(ALIASES.get(name, name))
        self.name, self.hparams, self.context = name, dict(hparams or {}), context

    def __call__(
        self,
        C_in: int,  # noqa: N803
        C_out: int,  # noqa: N803
        stride: int,
        affine: bool = True,
        track_running_stats: bool = True,
    ) -> nn.Module:
        return edge_op(
            self.name,
            C_in,
            C_out,
            stride,
            affine,
            track_running_stats,
            hparams=self.hparams,
            context=self.context,
        )

    def __repr__(self) -> str:
        return f"NB201OpFactory({self.name!r})"


def ops(
    *,
    include: Patterns = None,
    exclude: Patterns = None,
    hparams: Mapping[str, Mapping[str, Any]] | None = None,
    context: BuildContext | None = None,
) -> dict[str, NB201OpFactory]:
    """The NAS-Bench-201 ``OPS`` table: name -> ``factory(C_in, C_out, stride, affine,
    track_running_stats)`` over :func:`primitives` plus ``conv_1x1`` and ``conv_3x3``.

    Args:
        include, exclude: shell patterns selecting names.
        hparams: operator name -> its hyper-parameters.
        context: shared by every operator built.
    """
    hparams = dict(hparams or {})
    names = primitives() + [n for n in ALIASES.values() if n in list_operators()]
    return {
        n: NB201OpFactory(n, hparams=hparams.get(n), context=context)
        for n in select_names(names, include, exclude)
    }
