"""Custom GPU kernels (Triton) registered as ``torch.library`` custom ops.

One file per hot operator; each holds the pure-PyTorch reference (the CPU path and the test
oracle), the custom op ``torch.ops.convnas.*`` with fake, autograd and FLOP registrations, and
the dispatcher the operator modules call:

- :func:`shift_add` (``sw_shift_add.py``): ShiftwiseConv's three branches from ``Z``;
- :func:`even_conv2d` (``even_conv.py``): C2sp/C4sp conv with per-group padding offsets;
- :func:`osep_group_conv` (``osep_conv.py``): one osep grouped conv, shuffle and uneven groups
  folded into the indexing.

Importing this package does not import triton: the Triton modules load on the first CUDA call,
and because ``torch.utils.flop_counter`` imports triton, the FLOP formulas are handed to it when
it is already loaded or when :func:`register_flop_formulas` is called (do so before building a
``FlopCounterMode``).
``CONVNAS_KERNELS=0`` or ``use_kernels(False)`` routes everything to the references.
"""

from __future__ import annotations

from convnas.kernels._support import register_flop_formulas
from convnas.kernels.even_conv import even_conv2d
from convnas.kernels.osep_conv import osep_group_conv
from convnas.kernels.sw_shift_add import shift_add, strip_conv, strip_weights
from convnas.kernels.switch import ENV_VAR, kernels_enabled, use_kernels

__all__ = [
    "ENV_VAR",
    "even_conv2d",
    "kernels_enabled",
    "osep_group_conv",
    "register_flop_formulas",
    "shift_add",
    "strip_conv",
    "strip_weights",
    "use_kernels",
]
