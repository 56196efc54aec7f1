"""Small helpers shared by the kernel files: routing, memory formats, the Triton gate.

Nothing here imports triton; :func:`triton_usable` imports it on first call only.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable

import torch

from convnas.kernels.switch import kernels_enabled

__all__ = [
    "TRITON_DTYPES",
    "cuda_kernel",
    "flop_formula",
    "interpreting",
    "memory_format_of",
    "register_flop_formulas",
    "route_to_custom_op",
    "triton_usable",
]

logger = logging.getLogger(__name__)

# Dtypes the CUDA Triton path takes; float64 on CUDA runs the reference (cuDNN/ATen) instead.
TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def route_to_custom_op(x: torch.Tensor) -> bool:
    """The dispatchers' rule: custom op when kernels are on and ``x`` is on CUDA or ``meta``.

    On CPU the pure-PyTorch composition runs with ordinary autograd (the op's CPU kernel is that
    same composition); ``meta`` goes through the op so the cost model sees its FLOP formula.
    """
    return kernels_enabled() and x.device.type in ("cuda", "meta")


def interpreting() -> bool:
    """True when ``TRITON_INTERPRET=1`` asks Triton to run kernels on CPU tensors."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


@functools.lru_cache(maxsize=1)
def _triton_importable() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        logger.warning(
            "custom kernels are on but triton is not installed; using the PyTorch reference "
            '(pip install "convnas[gpu]", or set CONVNAS_KERNELS=0 to silence this)'
        )
        return False
    return True


def triton_usable(*tensors: torch.Tensor) -> bool:
    """Whether the Triton kernels can take these tensors (dtype supported, triton importable)."""
    return all(t.dtype in TRITON_DTYPES for t in tensors) and _triton_importable()


def cuda_kernel(triton_fn: Callable, reference_fn: Callable, n_tensors: int) -> Callable:
    """The CUDA kernel of an op: Triton when the first ``n_tensors`` args allow it, else the ref."""

    def kernel(*args):
        if triton_usable(*args[:n_tensors]):
            return triton_fn(*args)
        return reference_fn(*args)

    kernel.__name__ = getattr(triton_fn, "__name__", "kernel")
    return kernel


def memory_format_of(x: torch.Tensor) -> torch.memory_format:
    """``channels_last`` when a 4-d ``x`` is laid out so (and not also NCHW-contiguous)."""
    if (
        x.dim() == 4
        and not x.is_contiguous()
        and x.is_contiguous(memory_format=torch.channels_last)
    ):
        return torch.channels_last
    return torch.contiguous_format


# torch.utils.flop_counter imports triton when it is installed, so the FLOP formulas of the
# custom ops are queued here and handed to it only once it is loaded (or on request).
_PENDING_FLOPS: list[tuple[tuple, Callable]] = []
_FLOP_MODULE = "torch.utils.flop_counter"


def flop_formula(*targets) -> Callable[[Callable], Callable]:
    """Queue ``fn`` as the FLOP formula of ``targets`` (``torch.ops.convnas.*`` packets)."""

    def wrap(fn: Callable) -> Callable:
        _PENDING_FLOPS.append((targets, fn))
        if _FLOP_MODULE in sys.modules:
            register_flop_formulas()
        return fn

    return wrap


def register_flop_formulas() -> None:
    """Register every queued formula with ``torch.utils.flop_counter`` (idempotent).

    Call before building a ``FlopCounterMode`` when ``torch.utils.flop_counter`` was imported
    after the kernel modules; later kernel imports register on their own.
    """
    from torch.utils import flop_counter

    for targets, fn in _PENDING_FLOPS:
        todo = [t for t in targets if t not in flop_counter.flop_registry]
        if todo:
            flop_counter.register_flop_formula(todo)(fn)
