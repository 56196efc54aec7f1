"""Autograd helpers shared by operators."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["contiguous_grad"]


class _ContiguousGrad(torch.autograd.Function):
    """Identity forward; the gradient that flows back is made contiguous."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        return tensor.view_as(tensor)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad.contiguous()


def contiguous_grad(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor``, whose gradient arrives contiguous.

    Operators that compose a kernel from parameters (einsum, reshapes) would otherwise hand
    autograd's strided gradients to the parameters; DARTS-family code flattens parameter
    gradients with ``.view(-1)``, which needs contiguous memory.
    """
    return _ContiguousGrad.apply(tensor)
