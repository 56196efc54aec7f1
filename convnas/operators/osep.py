"""Optimized separable convolution (osep): a chain of grouped convs solved by the planner.

"Optimized Separable Convolution: Yet Another Efficient Convolution Operator", ICLR 2022
submission (papers/002_*.txt); OPERATORS.md section 3 and Project decision 3. The group
counts and kernels come from :func:`convnas.operators.osep_plan.osep_plan` (Algorithm 1,
rule 6b). Non-divisible groups zero-pad the input channels and drop the surplus outputs, so
the module's parameter count is the plan's padded count. A channel shuffle follows every conv
but the last; the K x K layer carries the stride; there is no norm or activation between the
convs (the host network's BN follows) and no bias.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from convnas.errors import OperatorArgumentError
from convnas.operators.kernel_dispatch import gpu_kernels_for
from convnas.operators.operator_registry import register_operator
from convnas.operators.osep_plan import POLICIES, OSepPlan, osep_plan

__all__ = ["OSepConv2d"]

_PAPER = "Optimized Separable Convolution, ICLR 2022 submission"
_SPACE: dict[str, tuple[Any, ...]] = {
    "n_sep": (2, 3, "auto"),
    "gamma": (0.5, 1.0, 2.0),
    "policy": POLICIES,
    "spatial": (False, True),
}


class OSepConv2d(nn.Module):
    """N grouped convs replacing a dense ``kernel_size`` conv (``nn.Conv2d`` conventions).

    Args:
        in_channels: channels of the input.
        out_channels: channels of the output.
        kernel_size: the replaced kernel, ``K`` or ``(K^H, K^W)``; every layer kernel must be
            odd ("same" padding ``K_l // 2``).
        stride: of the whole operator, on the layer carrying the kernel.
        n_sep, gamma, policy, spatial, kernels, groups: see
            :func:`~convnas.operators.osep_plan.osep_plan`.

    Attributes:
        plan: the :class:`~convnas.operators.osep_plan.OSepPlan` the module was built from.
        convs: the N ``nn.Conv2d`` layers, in the padded layout of the plan.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int] = 3,
        stride: int | tuple[int, int] = 1,
        *,
        n_sep: int | str = 2,
        gamma: float = 1.0,
        policy: str = "min",
        spatial: bool = False,
        kernels: Sequence[int | tuple[int, int]] | None = None,
        groups: Sequence[int | None] | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        plan = osep_plan(
            in_channels,
            out_channels,
            kernel_size,
            n_sep=n_sep,
            gamma=gamma,
            policy=policy,
            spatial=spatial,
            kernels=kernels,
            groups=groups,
            stride=stride,
        )
        self._build(plan, device, dtype)

    @classmethod
    def from_plan(
        cls,
        plan: OSepPlan,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> OSepConv2d:
        """Build the module of an existing plan."""
        module = cls.__new__(cls)
        nn.Module.__init__(module)
        module._build(plan, device, dtype)
        return module

    def _build(self, plan: OSepPlan, device: Any, dtype: Any) -> None:
        even = [
            layer.kernel_size for layer in plan.layers if not all(k % 2 for k in layer.kernel_size)
        ]
        if even:
            raise OperatorArgumentError(
                f"OSepConv2d needs odd layer kernels (same padding K_l // 2), but the plan has "
                f"{even}; use odd kernel_size or preset odd kernels"
            )
        self.plan = plan
        # per layer (in_pad, shuffle groups or 0, out_drop, out_channels): plain ints that
        # TorchScript can read (it cannot see the plan's Python objects)
        self._script_layers: list[list[int]] = [
            [
                int(layer.in_pad),
                int(layer.groups)
                if layer.shuffle and layer.groups > 1 and layer.out_per_group > 1
                else 0,
                int(bool(layer.out_drop)),
                int(layer.out_channels),
            ]
            for layer in plan.layers
        ]
        self.in_channels, self.out_channels = plan.in_channels, plan.out_channels
        self.kernel_size, self.stride = plan.kernel_size, plan.stride
        self.convs = nn.ModuleList(
            nn.Conv2d(
                layer.padded_in,
                layer.padded_out,
                layer.kernel_size,
                layer.stride,
                layer.padding,
                groups=layer.groups,
                bias=False,
                device=device,
                dtype=dtype,
            )
            for layer in plan.layers
        )

    def reset_parameters(self) -> None:
        """Re-initialise every layer as ``nn.Conv2d`` does."""
        for conv in self.convs:
            cast(nn.Conv2d, conv).reset_parameters()  # _build puts only nn.Conv2d there

    def extra_repr(self) -> str:
        p = self.plan
        s = f"{p.in_channels}, {p.out_channels}, kernel_size={p.kernel_size}, stride={p.stride}"
        s += f", n_sep={p.n_sep}, groups={p.groups}"
        if p.gamma != 1.0:
            s += f", gamma={p.gamma}"
        if p.policy != "min":
            s += f", policy={p.policy!r}"
        if p.spatial:
            s += ", spatial=True"
        return s + f", params={p.params}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():
            return self._forward_script(x)
        return self._forward_eager(x)

    def _forward_script(self, x: torch.Tensor) -> torch.Tensor:
        # the pure-PyTorch path of _forward_eager, over the ints of _script_layers
        i = 0
        for conv in self.convs:
            in_pad, shuffle_groups, out_drop, out_channels = self._script_layers[i]
            i += 1
            if in_pad:
                x = F.pad(x, [0, 0, 0, 0, 0, in_pad])
            x = conv(x)
            if shuffle_groups:
                b, c, h, w = x.shape
                x = x.view(b, shuffle_groups, c // shuffle_groups, h, w).transpose(1, 2)
                x = x.reshape(b, c, h, w)
            if out_drop:
                x = x[:, :out_channels]
        return x

    @torch.jit.unused
    def _forward_eager(self, x: torch.Tensor) -> torch.Tensor:
        kernels = gpu_kernels_for(x)
        if kernels is not None:  # shuffle, channel padding and dropping folded into indexing
            for layer, conv in zip(self.plan.layers, self.convs, strict=True):
                x = kernels.osep_group_conv(
                    x, conv.weight, layer.groups, layer.output_index, conv.stride, conv.padding
                )
            return x
        for layer, conv in zip(self.plan.layers, self.convs, strict=True):
            if layer.in_pad:
                x = F.pad(x, (0, 0, 0, 0, 0, layer.in_pad))
            x = conv(x)
            if layer.shuffle and layer.groups > 1 and layer.out_per_group > 1:
                b, c, h, w = x.shape
                x = x.view(b, layer.groups, c // layer.groups, h, w).transpose(1, 2)
                x = x.reshape(b, c, h, w)
            if layer.out_drop:
                x = x[:, : layer.out_channels]
        return x


def _register_fixed(kernel_size: int) -> None:
    @register_operator(
        f"osep_{kernel_size}x{kernel_size}",
        family="osep",
        kind="conv",
        gpu_kernel=True,
        paper=_PAPER,
        search_space=_SPACE,
    )
    def _factory(
        in_channels: int,
        out_channels: int,
        stride: int,
        *,
        context=None,
        device=None,
        dtype=None,
        n_sep: int | str = 2,
        gamma: float = 1.0,
        policy: str = "min",
        spatial: bool = False,
    ) -> nn.Module:
        return OSepConv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            n_sep=n_sep,
            gamma=gamma,
            policy=policy,
            spatial=spatial,
            device=device,
            dtype=dtype,
        )

    _factory.__doc__ = f"Optimized separable conv replacing a {kernel_size}x{kernel_size} conv."


for _k in (3, 5):
    _register_fixed(_k)


@register_operator(
    "osep",
    family="osep",
    kind="conv",
    gpu_kernel=True,
    paper=_PAPER,
    search_space={**_SPACE, "kernel_size": (3, 5, 7)},
)
def _osep(
    in_channels: int,
    out_channels: int,
    stride: int,
    *,
    context=None,
    device=None,
    dtype=None,
    kernel_size: int | tuple[int, int] = 3,
    n_sep: int | str = 2,
    gamma: float = 1.0,
    policy: str = "min",
    spatial: bool = False,
    kernels: Sequence[int | tuple[int, int]] | None = None,
    groups: Sequence[int | None] | None = None,
) -> nn.Module:
    """Optimized separable conv replacing a conv of any (odd) kernel size."""
    return OSepConv2d(
        in_channels,
        out_channels,
        kernel_size,
        stride,
        n_sep=n_sep,
        gamma=gamma,
        policy=policy,
        spatial=spatial,
        kernels=kernels,
        groups=groups,
        device=device,
        dtype=dtype,
    )
