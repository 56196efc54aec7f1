"""The one module that owns padding arithmetic (as timm's ``layers/padding.py``).

Operators never type padding by hand: they ask this module.
"""

from __future__ import annotations

import math

__all__ = [
    "channel_quarters",
    "conv_output_size",
    "even_kernel_group_pads",
    "pair",
    "same_padding",
    "tf_same_pads",
]


def pair(value: int | tuple[int, int], name: str = "value") -> tuple[int, int]:
    """Return ``(value, value)`` for an int, or the 2-tuple itself after checking it."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (value, value)
    if (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        return (int(value[0]), int(value[1]))
    raise ValueError(f"{name} must be an int or a pair of ints, but got {value!r}")


def same_padding(kernel_size: int | tuple[int, int], dilation: int = 1) -> tuple[int, int]:
    """Symmetric padding that keeps the size at stride 1 for odd kernels: ``d*(k-1)//2``."""
    kh, kw = pair(kernel_size, "kernel_size")
    return (dilation * (kh - 1) // 2, dilation * (kw - 1) // 2)


def conv_output_size(size: int, kernel: int, stride: int, pad_total: int, dilation: int = 1) -> int:
    """Output length of a convolution along one axis."""
    return (size + pad_total - dilation * (kernel - 1) - 1) // stride + 1


def tf_same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "SAME" padding along one axis: ``(before, after)``, the surplus after."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return (total // 2, total - total // 2)


def channel_quarters(channels: int) -> tuple[int, int, int, int]:
    """Sizes of the four contiguous channel groups of C2sp: the first ``C mod 4`` get one more."""
    if channels < 1:
        raise ValueError(f"channels must be >= 1, but got {channels}")
    q, r = divmod(channels, 4)
    return tuple(q + 1 if i < r else q for i in range(4))  # type: ignore[return-value]


def even_kernel_group_pads(kernel_size: int) -> tuple[tuple[int, int, int, int], ...]:
    """Per-group ``F.pad`` tuples ``(left, right, top, bottom)`` of symmetric even padding.

    For an even kernel ``k = 2*kappa`` each axis gets ``k - 1`` pads, ``kappa - 1`` on the small
    side and ``kappa`` on the large side. The groups pad towards the corners in the order of
    OPERATORS.md section 1: G0 bottom-right, G1 top-left, G2 bottom-left, G3 top-right.
    """
    if kernel_size < 2 or kernel_size % 2:
        raise ValueError(f"kernel_size must be even and >= 2, but got {kernel_size}")
    small, large = kernel_size // 2 - 1, kernel_size // 2
    return (
        (small, large, small, large),  # G0: bottom + right
        (large, small, large, small),  # G1: top + left
        (large, small, small, large),  # G2: bottom + left
        (small, large, large, small),  # G3: top + right
    )
