"""Associative convolution: kernels generated from codes by one shared slice generator (CSG).

Omidvar, Akhlaghi, Su, Franceschetti and Gupta, "Associative Convolutional Layers", AISTATS 2021
(``papers/004``; OPERATORS.md section 5). Each layer holds a code matrix (one code per slice);
one ``SliceGenerator`` per network maps codes to kernel slices, which tile the kernel as blocks
[out-block, in-block, h, w] (the paper's Figure 1), fractional slices cropped. BCSG freezes the
generator to random signs.

Project decisions (OPERATORS.md, decision 5): block tiling instead of the official raw reshape;
He-normal variance of the generated kernel at start (A ~ N(0, 1/n_c), codes ~ N(0, 2/fan_in));
BCSG uses +-1/sqrt(n_c). Frozen generators ("binary", "frozen") store A as a buffer under the
same ``weight`` key as a trainable one, so a trained A loads into a frozen network directly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from convnas.errors import OperatorArgumentError
from convnas.layers.checks import positive_int
from convnas.layers.padding import pair, same_padding
from convnas.operators.context import BuildContext, attach_shared
from convnas.operators.operator_registry import register_operator

__all__ = [
    "GENERATOR_SIZES",
    "MODES",
    "CSGConv2d",
    "SliceGenerator",
    "generator_for",
    "generator_key",
]

MODES = ("trainable", "binary", "frozen")
_PAPER = "Omidvar et al., Associative Convolutional Layers, AISTATS 2021"

#: Generator settings from the largest down: the paper's two (``[16,16,3,3]``-128 for
#: ResNet-56, ``[12,12,3,3]``-72 of its CIFAR files), then smaller slices at the same
#: n_c ~ P/18 rule, for smaller networks.
GENERATOR_SIZES: tuple[tuple[tuple[int, int, int, int], int], ...] = (
    ((16, 16, 3, 3), 128),
    ((12, 12, 3, 3), 72),
    ((8, 8, 3, 3), 32),
    ((4, 4, 3, 3), 8),
)
#: The generator's share of the compressible 3x3 weights the paper accepts for ResNet-56
#: (294,912 of 847,872 = 0.348).
GENERATOR_SHARE = 0.35


def generator_for(conv_weights: int) -> tuple[tuple[int, int, int, int], int]:
    """``(slice_shape, code_size)`` of a generator sized for a network whose compressible
    3x3 convs hold ``conv_weights`` weights: the largest of :data:`GENERATOR_SIZES` whose
    ``P * n_c`` is at most :data:`GENERATOR_SHARE` of them (ResNet-56 gets the paper's
    ``[16,16,3,3]``-128; a ResNet-8 of widths 16/32/64 gets ``[8,8,3,3]``-32), else the smallest.

    The codes then add about 1/18 of the weights (n_c ~ P/18), so the whole CSG network has
    fewer parameters than the plain one whenever the generator's share is below ~0.94.
    """
    for shape, code_size in GENERATOR_SIZES:
        if math.prod(shape) * code_size <= GENERATOR_SHARE * conv_weights:
            return shape, code_size
    return GENERATOR_SIZES[-1]


def _slice_shape(value: Any) -> tuple[int, int, int, int]:
    if (
        not isinstance(value, (tuple, list))
        or len(value) != 4
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)
    ):
        raise OperatorArgumentError(
            f"slice_shape must be 4 positive ints (out, in, h, w), but got {value!r}"
        )
    return tuple(int(v) for v in value)  # type: ignore[return-value]


def _check_args(code_size: Any, mode: Any) -> None:
    positive_int("code_size", code_size)
    if mode not in MODES:
        raise OperatorArgumentError(f"mode must be one of {MODES}, but got {mode!r}")


def generator_key(slice_shape: Sequence[int], code_size: int, mode: str) -> str:
    """The build-context key of the generator shared by layers with these settings."""
    return f"csg_{tuple(slice_shape)}_{code_size}_{mode}"


class SliceGenerator(nn.Module):
    """The convolutional slice generator: a bias-free linear map from codes to slices.

    Args:
        slice_shape: ``(s_out, s_in, h, w)``; a slice holds ``P = prod(slice_shape)`` weights.
        code_size: length n_c of a code.
        mode: "trainable" (A ~ N(0, 1/n_c), trained), "binary" (BCSG: A = sign(N(0, 1)) /
            sqrt(n_c), frozen) or "frozen" (A ~ N(0, 1/n_c), frozen; load a pre-trained A).
    """

    def __init__(
        self,
        slice_shape: Sequence[int] = (16, 16, 3, 3),
        code_size: int = 128,
        mode: str = "trainable",
        *,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        self.slice_shape = _slice_shape(slice_shape)
        _check_args(code_size, mode)
        self.code_size, self.mode = code_size, mode
        self.slice_volume = math.prod(self.slice_shape)
        weight = torch.empty(self.slice_volume, code_size, device=device, dtype=dtype)
        if mode == "trainable":
            self.weight = nn.Parameter(weight)
        else:
            self.register_buffer("weight", weight)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Draw A: N(0, 1/n_c), or random signs scaled by 1/sqrt(n_c) in "binary" mode."""
        with torch.no_grad():
            self.weight.normal_(0.0, 1.0 / math.sqrt(self.code_size))
            if self.mode == "binary":
                self.weight.sign_().div_(math.sqrt(self.code_size))

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        """Slices ``codes @ A^T``: ``(S, n_c) -> (S, P)``."""
        return F.linear(codes, self.weight)

    def extra_repr(self) -> str:
        return f"slice_shape={self.slice_shape}, code_size={self.code_size}, mode={self.mode!r}"


class CSGConv2d(nn.Module):
    """A convolution whose kernel is generated from per-layer codes by a slice generator.

    The generator comes from ``generator`` (kept as an unregistered reference: its owner holds
    it), else from ``context`` (shared by the network: unregistered when the network owns the
    context's modules; with ``BuildContext(owner="layer")`` the first layer built registers it
    as its submodule and later ones reference it), else the layer creates and registers its
    own, so a standalone layer works and checkpoints fully.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation: as ``nn.Conv2d``
            (``padding=None`` keeps the size at stride 1); no groups, no bias.
        slice_shape, code_size, mode: the generator settings (see :class:`SliceGenerator`).
        generator: an existing generator to use.
        context: the network's build context.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int] = 3,
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | None = None,
        dilation: int | tuple[int, int] = 1,
        *,
        slice_shape: Sequence[int] = (16, 16, 3, 3),
        code_size: int = 128,
        mode: str = "trainable",
        generator: SliceGenerator | None = None,
        context: BuildContext | None = None,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        positive_int("in_channels", in_channels)
        positive_int("out_channels", out_channels)
        try:
            self.kernel_size = pair(kernel_size, "kernel_size")
            self.stride = pair(stride, "stride")
            self.dilation = pair(dilation, "dilation")
            self.padding = (
                same_padding(self.kernel_size, self.dilation[0])
                if padding is None
                else pair(padding, "padding")
            )
        except ValueError as err:
            raise OperatorArgumentError(str(err)) from None
        if self.dilation[0] != self.dilation[1] and padding is None:
            raise OperatorArgumentError(f"padding=None needs equal dilations, got {dilation!r}")
        shape = _slice_shape(slice_shape)
        _check_args(code_size, mode)
        if generator is not None and (
            generator.slice_shape,
            generator.code_size,
            generator.mode,
        ) != (shape, code_size, mode):
            raise OperatorArgumentError(
                f"the given generator has slice_shape={generator.slice_shape}, code_size="
                f"{generator.code_size}, mode={generator.mode!r}, but the layer asks for "
                f"slice_shape={shape}, code_size={code_size}, mode={mode!r}"
            )
        self.in_channels, self.out_channels = in_channels, out_channels
        self.slice_shape, self.code_size, self.mode = shape, code_size, mode
        full = (out_channels, in_channels, *self.kernel_size)
        self.grid = tuple(math.ceil(n / s) for n, s in zip(full, shape, strict=True))
        self.num_slices = math.prod(self.grid)
        register = generator is None
        if generator is None and context is not None:
            shared, register = context.acquire(
                generator_key(shape, code_size, mode),
                lambda: SliceGenerator(shape, code_size, mode, device=device, dtype=dtype),
            )
            generator = cast(SliceGenerator, shared)  # the key holds only generators like this
        if generator is None:
            generator = SliceGenerator(shape, code_size, mode, device=device, dtype=dtype)
        if register:
            self.generator = generator  # this layer owns it (a submodule)
        else:
            attach_shared(self, "generator", generator)
        self.codes = nn.Parameter(
            torch.empty(self.num_slices, code_size, device=device, dtype=dtype)
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Codes ~ N(0, 2/fan_in): with A's variance 1/n_c the kernel starts He-normal."""
        fan_in = self.in_channels * self.kernel_size[0] * self.kernel_size[1]
        nn.init.normal_(self.codes, 0.0, math.sqrt(2.0 / fan_in))

    def generate_weight(self) -> torch.Tensor:
        """The kernel ``(C_out, C_in, h, w)``: slices tiled as blocks, fractional ones cropped."""
        slices = self.generator(self.codes)
        tiled = slices.reshape(*self.grid, *self.slice_shape)
        tiled = tiled.permute(0, 4, 1, 5, 2, 6, 3, 7)
        tiled = tiled.reshape(*(g * s for g, s in zip(self.grid, self.slice_shape, strict=True)))
        kh, kw = self.kernel_size
        return tiled[: self.out_channels, : self.in_channels, :kh, :kw]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.generate_weight(), None, self.stride, self.padding, self.dilation)

    def fold(self) -> nn.Conv2d:
        """An ``nn.Conv2d`` holding the materialised kernel."""
        weight = self.generate_weight().detach()
        conv = nn.Conv2d(
            self.in_channels,
            self.out_channels,
            self.kernel_size,
            self.stride,
            self.padding,
            self.dilation,
            bias=False,
            device=weight.device,
            dtype=weight.dtype,
        )
        with torch.no_grad():
            conv.weight.copy_(weight)
        return conv

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, slice_shape={self.slice_shape}, "
            f"code_size={self.code_size}, mode={self.mode!r}, num_slices={self.num_slices}"
        )


@register_operator(
    "csg_conv_3x3",
    family="csg",
    kind="conv",
    paper=_PAPER,
    foldable=True,
    scriptable=False,
    script_note="unfolded weight generation star-unpacks a generator; script fold() instead",
    search_space={
        "slice_shape": ((12, 12, 3, 3), (16, 16, 3, 3)),
        "code_size": (72, 128),
        "mode": MODES,
    },
)
def _csg_conv_3x3(
    in_channels: int,
    out_channels: int,
    stride: int,
    *,
    context: BuildContext | None = None,
    device=None,
    dtype=None,
    slice_shape: Sequence[int] = (16, 16, 3, 3),
    code_size: int = 128,
    mode: str = "trainable",
) -> nn.Module:
    """3x3 conv whose kernel a network-wide slice generator makes from per-layer codes."""
    return CSGConv2d(
        in_channels,
        out_channels,
        3,
        stride,
        slice_shape=slice_shape,
        code_size=code_size,
        mode=mode,
        context=context,
        device=device,
        dtype=dtype,
    )
