"""DO-Conv: depthwise over-parameterised convolution (also DO-DConv and DO-GConv).

Cao, Li, Sun, Li, Wang, Li, Zhang and Xu, "DO-Conv: Depthwise Over-parameterized Convolutional
Layer", IEEE TIP 2022 (``papers/001_*.txt``; official code ``yangyanli/DO-Conv``,
``do_conv_pytorch.py``). See OPERATORS.md section 2.

A conventional weight ``W (C_out, C_in/G, D_mul)`` is composed with a per-input-channel
depthwise matrix ``D = D' + I_D`` of shape ``(C_in, M*N, D_mul)`` into an ``M x N`` kernel:

    K[o, j, m] = sum_s D[iota(o, j), m, s] * W[o, j, s],
    iota(o, j) = floor(o / (C_out/G)) * (C_in/G) + j,

the paper's pairing, where each depthwise matrix belongs to the true input channel that
``W[o, j]`` reads (project decision 2; the official code pairs ``(o*C_in/G + j) mod C_in``,
which differs for ``G > 1``). ``D'`` is a zero-initialised parameter and ``I_D`` a fixed
buffer of stacked identities, so at initialisation the layer is the plain conv ``reshape(W)``.
At inference :meth:`DOConv2d.fold` returns that plain ``nn.Conv2d``.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from convnas.errors import OperatorArgumentError
from convnas.layers.autograd import contiguous_grad
from convnas.layers.checks import positive_int
from convnas.layers.padding import pair, same_padding
from convnas.operators.operator_registry import register_operator

__all__ = ["DOConv2d", "DOSepConv2d", "compose_do_kernel", "do_identity"]

_PAPER = "Cao et al., DO-Conv: Depthwise Over-parameterized Convolutional Layer, TIP 2022"


def do_identity(
    in_channels: int, mn: int, d_mul: int, *, device: Any = None, dtype: Any = None
) -> torch.Tensor:
    """``I_D (C_in, MN, D_mul)``: ``floor(D_mul/MN)`` stacked identities, then zero columns."""
    reps = d_mul // mn
    eye = torch.eye(mn, device=device, dtype=dtype).repeat(1, reps)
    cols = torch.cat([eye, eye.new_zeros(mn, d_mul - mn * reps)], dim=1)
    return cols.unsqueeze(0).expand(in_channels, mn, d_mul).contiguous()


def compose_do_kernel(
    weight: torch.Tensor, d_total: torch.Tensor, groups: int, kernel_size: tuple[int, int]
) -> torch.Tensor:
    """Compose ``W (C_out, C_in/G, D_mul)`` and ``D (C_in, MN, D_mul)`` into the conv kernel.

    The result has shape ``(C_out, C_in/G, M, N)`` with ``m = a*N + b`` (row-major). Uses the
    paper's pairing: output channels of group ``g`` use the depthwise matrices of the input
    channels of group ``g``.
    """
    c_out, cin_g, d_mul = weight.shape
    mn = d_total.shape[1]
    w = weight.reshape(groups, c_out // groups, cin_g, d_mul)
    d = d_total.reshape(groups, cin_g, mn, d_mul)
    kernel = torch.einsum("gjms,gpjs->gpjm", d, w)
    return kernel.reshape(c_out, cin_g, *kernel_size)


class DOConv2d(nn.Module):
    """Depthwise over-parameterised conv (DO-Conv for ``G=1``, DO-DConv for ``G=C_in``).

    Args:
        in_channels: input channels ``C_in``.
        out_channels: output channels ``C_out``.
        kernel_size: ``M x N``; ``M*N == 1`` gives a plain conv with no ``D`` (``d_mul`` is 1).
        stride: as ``nn.Conv2d``.
        padding: as ``nn.Conv2d``; ``None`` means "same" padding ``d*(k-1)//2``.
        dilation: as ``nn.Conv2d``.
        groups: ``G``; ``in_channels`` and ``out_channels`` must be divisible by it.
        bias: add a learnable bias.
        d_mul: depth multiplier ``D_mul >= M*N``; ``None`` means ``M*N``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int] = 3,
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | None = None,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = False,
        d_mul: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        # declared here, not on the class: TorchScript cannot parse ``X | None`` there
        self.d_prime: nn.Parameter | None
        self.d_identity: torch.Tensor | None
        self.bias: nn.Parameter | None
        for name, value in (
            ("in_channels", in_channels),
            ("out_channels", out_channels),
            ("groups", groups),
        ):
            positive_int(name, value)
        if in_channels % groups or out_channels % groups:
            raise OperatorArgumentError(
                "in_channels % groups == 0 and out_channels % groups == 0 must hold, but got "
                f"in_channels={in_channels}, out_channels={out_channels}, groups={groups}"
            )
        try:
            k, s = pair(kernel_size, "kernel_size"), pair(stride, "stride")
            dil = pair(dilation, "dilation")
            if padding is None:
                pad = (same_padding(k[0], dil[0])[0], same_padding(k[1], dil[1])[0])
            else:
                pad = pair(padding, "padding")
        except ValueError as exc:
            raise OperatorArgumentError(str(exc)) from None
        if min(k) < 1 or min(s) < 1 or min(dil) < 1 or min(pad) < 0:
            raise OperatorArgumentError(
                "kernel_size, stride and dilation must be >= 1 and padding >= 0, but got "
                f"kernel_size={k}, stride={s}, dilation={dil}, padding={pad}"
            )
        mn = k[0] * k[1]
        if mn == 1:
            d_mul = 1  # a 1x1 conv is not over-parameterised (OPERATORS.md 2.1)
        elif d_mul is None:
            d_mul = mn
        else:
            positive_int("d_mul", d_mul)
            if d_mul < mn:
                raise OperatorArgumentError(
                    "d_mul >= kernel_size[0]*kernel_size[1] must hold (a smaller D_mul makes the "
                    f"layer rank-deficient), but got d_mul={d_mul}, M*N={mn}; use d_mul=None "
                    f"for M*N={mn}"
                )
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size, self.stride, self.padding, self.dilation = k, s, pad, dil
        self.d_mul = d_mul
        self.weight = nn.Parameter(
            torch.empty(out_channels, in_channels // groups, d_mul, device=device, dtype=dtype)
        )
        if mn > 1:
            self.d_prime = nn.Parameter(
                torch.empty(in_channels, mn, d_mul, device=device, dtype=dtype)
            )
            self.register_buffer(
                "d_identity", torch.empty(in_channels, mn, d_mul, device=device, dtype=dtype)
            )
        else:
            self.register_parameter("d_prime", None)
            self.register_buffer("d_identity", None)
        self.bias = (
            nn.Parameter(torch.empty(out_channels, device=device, dtype=dtype)) if bias else None
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``W``: kaiming_uniform(a=sqrt(5)) with fan_in ``(C_in/G)*D_mul``; ``D' = 0``."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1.0 / math.sqrt(self.weight[0].numel())
            nn.init.uniform_(self.bias, -bound, bound)
        # D' and I_D exist together (kernels larger than 1x1) or not at all
        if self.d_prime is not None and self.d_identity is not None:
            nn.init.zeros_(self.d_prime)
            with torch.no_grad():
                self.d_identity.copy_(
                    do_identity(
                        self.in_channels,
                        self.d_prime.shape[1],
                        self.d_mul,
                        device=self.d_identity.device,
                        dtype=self.d_identity.dtype,
                    )
                )

    def kernel(self) -> torch.Tensor:
        """The composed ``(C_out, C_in/G, M, N)`` kernel (differentiable)."""
        weight = contiguous_grad(self.weight)  # hosts flatten gradients with .view(-1)
        if self.d_prime is None or self.d_identity is None:
            return weight.reshape(*weight.shape[:2], *self.kernel_size)
        d_prime = contiguous_grad(self.d_prime)
        return compose_do_kernel(weight, d_prime + self.d_identity, self.groups, self.kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():
            return F.conv2d(
                x,
                self._kernel_script(),
                self.bias,
                self.stride,
                self.padding,
                self.dilation,
                self.groups,
            )
        return F.conv2d(
            x, self.kernel(), self.bias, self.stride, self.padding, self.dilation, self.groups
        )

    def _kernel_script(self) -> torch.Tensor:
        # kernel() without contiguous_grad (an autograd.Function TorchScript cannot call):
        # the same values, only the layout of the parameters' gradients may differ
        weight = self.weight
        kh, kw = self.kernel_size
        d_prime, d_identity = self.d_prime, self.d_identity
        if d_prime is None or d_identity is None:
            return weight.reshape(weight.shape[0], weight.shape[1], kh, kw)
        d_total = d_prime + d_identity
        c_out, cin_g, d_mul = weight.shape[0], weight.shape[1], weight.shape[2]
        mn = d_total.shape[1]
        w = weight.reshape(self.groups, c_out // self.groups, cin_g, d_mul)
        d = d_total.reshape(self.groups, cin_g, mn, d_mul)
        kernel = torch.einsum("gjms,gpjs->gpjm", d, w)
        return kernel.reshape(c_out, cin_g, kh, kw)

    @torch.no_grad()
    def fold(self) -> nn.Conv2d:
        """A plain ``nn.Conv2d`` holding the composed kernel: the same function at inference."""
        conv = nn.Conv2d(
            self.in_channels,
            self.out_channels,
            self.kernel_size,
            self.stride,
            self.padding,
            self.dilation,
            self.groups,
            bias=self.bias is not None,
            device=self.weight.device,
            dtype=self.weight.dtype,
        )
        conv.weight.copy_(self.kernel())
        if self.bias is not None and conv.bias is not None:
            conv.bias.copy_(self.bias)
        return conv

    def extra_repr(self) -> str:
        text = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, d_mul={self.d_mul}"
        )
        if self.dilation != (1, 1):
            text += f", dilation={self.dilation}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        if self.bias is None:
            text += ", bias=False"
        return text


class DOSepConv2d(nn.Module):
    """Separable block: DO-DConv ``k x k`` depthwise (carrying the stride), then a 1x1 conv.

    No normalisation sits between the two, so the block is one linear map and folds into a
    plain depthwise conv followed by the same pointwise conv.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int] = 3,
        stride: int | tuple[int, int] = 1,
        d_mul: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.depthwise = DOConv2d(
            in_channels,
            in_channels,
            kernel_size,
            stride,
            groups=in_channels,
            d_mul=d_mul,
            device=device,
            dtype=dtype,
        )
        positive_int("out_channels", out_channels)
        self.pointwise = nn.Conv2d(
            in_channels, out_channels, 1, bias=False, device=device, dtype=dtype
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))

    def fold(self) -> nn.Sequential:
        """Plain depthwise conv then the pointwise conv."""
        return nn.Sequential(self.depthwise.fold(), copy.deepcopy(self.pointwise))


@register_operator(
    "do_conv_3x3",
    family="do_conv",
    kind="conv",
    paper=_PAPER,
    strides=(1, 2),
    foldable=True,
    search_space={"d_mul": (9, 25, 36)},
)
def _do_conv_3x3(
    in_channels: int,
    out_channels: int,
    stride: int,
    *,
    context=None,
    device=None,
    dtype=None,
    d_mul: int | None = None,
    groups: int = 1,
) -> nn.Module:
    """DO-Conv 3x3 (DO-GConv with groups > 1); folds to a plain 3x3 conv."""
    return DOConv2d(
        in_channels,
        out_channels,
        3,
        stride,
        groups=groups,
        d_mul=d_mul,
        device=device,
        dtype=dtype,
    )


@register_operator(
    "do_sep_conv_3x3",
    family="do_conv",
    kind="conv",
    paper=_PAPER,
    strides=(1, 2),
    foldable=True,
    search_space={"d_mul": (9, 25, 36)},
)
def _do_sep_conv_3x3(
    in_channels: int,
    out_channels: int,
    stride: int,
    *,
    context=None,
    device=None,
    dtype=None,
    d_mul: int | None = None,
) -> nn.Module:
    """DO-DConv 3x3 depthwise then 1x1 pointwise, no norm between; folds to dw + pw convs."""
    return DOSepConv2d(
        in_channels, out_channels, 3, stride, d_mul=d_mul, device=device, dtype=dtype
    )
