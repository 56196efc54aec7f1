"""The solved osep plan as data: the layer chain and its padded layout, pure Python.

"Optimized Separable Convolution: Yet Another Efficient Convolution Operator", ICLR 2022
submission (papers/002_*.txt), Algorithm 1 as reconstructed in OPERATORS.md section 3.2.
:func:`~convnas.operators.osep_plan.osep_plan` solves the group counts; this module holds what
it returns -- :class:`OSepPlan` and one :class:`OSepLayer` per grouped conv -- and
:func:`build_layers`, steps 7-8: the zero-padded layout of non-divisible groups, the channel
shuffles and the placement of the stride. No torch import: the modules, the kernels and the
cost model all read the plan.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

__all__ = ["OSepLayer", "OSepPlan", "build_layers"]


@dataclasses.dataclass(frozen=True)
class OSepLayer:
    """One grouped conv of the chain, in the padded layout a module or kernel builds.

    The conv sees ``padded_in = groups * in_per_group`` input channels (``in_pad`` zero
    channels appended to the ``in_channels`` real ones) and produces ``padded_out = groups *
    out_per_group`` channels. If ``shuffle``, the output is channel-shuffled with ``groups``
    (reshape to ``(groups, out_per_group)``, transpose, flatten); then the first
    ``out_channels`` are kept. ``output_index[t]`` is the padded conv output channel that
    ends up at position ``t``: this is the whole shuffle-and-drop as one gather.

    Attributes:
        index: 1-based position in the chain.
        pixels_per_output: output pixels of this layer per output pixel of the operator
            (``> 1`` for layers before the strided one).
    """

    index: int
    in_channels: int
    out_channels: int
    kernel_size: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    groups: int
    in_per_group: int
    out_per_group: int
    padded_in: int
    padded_out: int
    in_pad: int
    out_drop: int
    shuffle: bool
    params: int
    pixels_per_output: int
    output_index: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class OSepPlan:
    """A solved osep layer chain (frozen; :meth:`to_dict` gives plain JSON data).

    Attributes:
        in_channels, out_channels: ``C_1`` and ``C_{N+1}``.
        kernel_size: the replaced kernel ``(K^H, K^W)``.
        stride: ``(s_H, s_W)`` of the whole operator.
        n_sep: N, the number of separated convs (resolved when "auto" was asked for).
        gamma, policy, spatial: the request.
        channels: ``(C_1, ..., C_{N+1})``.
        kernels: ``(K_l^H, K_l^W)`` of every layer.
        groups: ``g_l`` of every layer.
        channels_per_group: padded input channels per group, ``ceil(C_l / g_l)``.
        n_continuous: ``n_l`` of the masked continuous solve (steps 4-5).
        layer_params: padded parameter count of every layer.
        params: their sum.
        layer_macs_per_pixel: multiply-accumulates of every layer per output pixel.
        macs_per_pixel: their sum (equals ``params`` at stride 1).
        continuous_params: Theorem 1, ``N * (gamma C_1 prod_l C_{l+1} K_l^H K_l^W)^(1/N)``.
        dense_params: ``C_out C_in K^H K^W``, the conv osep replaces.
        layers: the per-layer description the modules and kernels build from.
        candidates: ``(N, params)`` of every N evaluated by ``n_sep="auto"``; else empty.
    """

    in_channels: int
    out_channels: int
    kernel_size: tuple[int, int]
    stride: tuple[int, int]
    n_sep: int
    gamma: float
    policy: str
    spatial: bool
    channels: tuple[int, ...]
    kernels: tuple[tuple[int, int], ...]
    groups: tuple[int, ...]
    channels_per_group: tuple[int, ...]
    n_continuous: tuple[float, ...]
    layer_params: tuple[int, ...]
    params: int
    layer_macs_per_pixel: tuple[int, ...]
    macs_per_pixel: int
    continuous_params: float
    dense_params: int
    layers: tuple[OSepLayer, ...]
    candidates: tuple[tuple[int, int], ...] = ()

    @property
    def internal_channels(self) -> tuple[int, ...]:
        """``(C_2, ..., C_N)``."""
        return self.channels[1:-1]

    @property
    def saving(self) -> float:
        """How many times fewer parameters than the dense conv."""
        return self.dense_params / self.params

    @property
    def dsep_params(self) -> int:
        """Parameters of a depthwise-separable conv (``K^H x K^W`` depthwise, then 1x1)."""
        kh, kw = self.kernel_size
        return self.in_channels * kh * kw + self.in_channels * self.out_channels

    def macs(self, height: int, width: int) -> int:
        """Multiply-accumulates for one ``height x width`` input image (ceil-mode strides)."""
        total = 0
        for layer in self.layers:
            height = -(-height // layer.stride[0])
            width = -(-width // layer.stride[1])
            total += layer.params * height * width
        return total

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (lists for tuples), with the derived figures added."""
        data = dataclasses.asdict(self)
        data.update(
            internal_channels=self.internal_channels,
            saving=self.saving,
            dsep_params=self.dsep_params,
        )
        return _jsonable(data)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def build_layers(
    channels: tuple[int, ...],
    kernels: tuple[tuple[int, int], ...],
    groups: Sequence[int],
    stride: tuple[int, int],
) -> tuple[OSepLayer, ...]:
    """Steps 7-8: the padded layout, shuffles and stride placement of every layer.

    The stride of each axis goes on the first layer whose kernel is larger than 1 along that
    axis (else along the other axis, else layer 1): the K x K layer when non-spatial, the
    K^H x 1 (H stride) and 1 x K^W (W stride) layers when spatial, so that the chain stays a
    strided K^H x K^W conv.
    """
    n = len(kernels)
    carrier = []
    for axis in (0, 1):
        own = [i for i in range(n) if kernels[i][axis] > 1]
        other = [i for i in range(n) if kernels[i][1 - axis] > 1]
        carrier.append((own or other or [0])[0])
    layers = []
    for i in range(n):
        cin, cout, g = channels[i], channels[i + 1], groups[i]
        kh, kw = kernels[i]
        in_pg, out_pg = -(-cin // g), -(-cout // g)
        shuffle = i < n - 1
        order: Sequence[int] = range(g * out_pg)
        if shuffle:
            order = [(t % g) * out_pg + t // g for t in order]
        layer_stride = (stride[0] if carrier[0] == i else 1, stride[1] if carrier[1] == i else 1)
        before = [stride[a] for a in (0, 1) if i < carrier[a]]
        layers.append(
            OSepLayer(
                index=i + 1,
                in_channels=cin,
                out_channels=cout,
                kernel_size=(kh, kw),
                stride=layer_stride,
                padding=(kh // 2, kw // 2),
                groups=g,
                in_per_group=in_pg,
                out_per_group=out_pg,
                padded_in=g * in_pg,
                padded_out=g * out_pg,
                in_pad=g * in_pg - cin,
                out_drop=g * out_pg - cout,
                shuffle=shuffle,
                params=g * out_pg * in_pg * kh * kw,
                pixels_per_output=math.prod(before),
                output_index=tuple(order[:cout]),
            )
        )
    return tuple(layers)
