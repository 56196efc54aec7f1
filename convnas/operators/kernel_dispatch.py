"""Route an operator to its custom GPU kernel when the tensor is on CUDA.

The kernels live in :mod:`convnas.kernels` and are imported here only for CUDA tensors, so
``import convnas`` and CPU work never load them. ``CONVNAS_KERNELS=0`` (or
``convnas.kernels.use_kernels(False)``) keeps every operator on its pure-PyTorch path.
"""

from __future__ import annotations

from types import ModuleType

import torch

__all__ = ["gpu_kernels_for"]


def gpu_kernels_for(tensor: torch.Tensor) -> ModuleType | None:
    """The :mod:`convnas.kernels` package if ``tensor`` is on CUDA and kernels are on."""
    if not tensor.is_cuda:
        return None
    from convnas import kernels

    return kernels if kernels.kernels_enabled() else None
