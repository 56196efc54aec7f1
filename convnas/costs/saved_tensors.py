"""The bytes of the tensors autograd holds for backward, over a forward and backward pass.

:class:`SavedTensorMeter` installs ``saved_tensors_hooks``: every tensor a graph saves is wrapped
while that graph holds it, so the meter sees it appear (at the forward op) and disappear (when
its backward node has run, or the graph is freed). Each storage counts once, however many views
or nodes hold it. The peak covers graphs built during backward too, such as the candidates that
recompute mode rebuilds one at a time. It works on any device, ``meta`` included.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import Any

import torch

__all__ = ["SavedTensorMeter"]


class _Held:
    """A saved tensor, as its graph holds it; freed with the graph's reference."""

    __slots__ = ("__weakref__", "tensor")

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor


def _key(tensor: torch.Tensor) -> int:
    return tensor.untyped_storage()._cdata


class SavedTensorMeter:
    """Context manager counting the bytes of saved tensors currently held, and their peak.

    Args:
        exclude: tensors whose storages are not counted (parameters and buffers, which a graph
            saves by reference and that exist anyway).

    Attributes:
        current: bytes held now.
        peak: the most bytes held at once since the meter was created.

    Example:
        >>> with SavedTensorMeter(model.parameters()) as meter:  # doctest: +SKIP
        ...     model(x).sum().backward()
        >>> meter.peak  # doctest: +SKIP
    """

    def __init__(self, exclude: Iterable[torch.Tensor] = ()) -> None:
        self._exclude = {_key(t) for t in exclude}
        self._count: dict[int, int] = {}
        self._bytes: dict[int, int] = {}
        self.current = 0
        self.peak = 0
        self._hooks: Any = None

    def _pack(self, tensor: torch.Tensor) -> Any:
        key = _key(tensor)
        if key in self._exclude:
            return tensor
        if self._count.get(key, 0) == 0:
            nbytes = tensor.untyped_storage().nbytes()
            self._bytes[key] = nbytes
            self.current += nbytes
            self.peak = max(self.peak, self.current)
        self._count[key] = self._count.get(key, 0) + 1
        held = _Held(tensor)
        weakref.finalize(held, self._release, key)
        return held

    @staticmethod
    def _unpack(packed: Any) -> torch.Tensor:
        return packed.tensor if isinstance(packed, _Held) else packed

    def _release(self, key: int) -> None:
        self._count[key] -= 1
        if self._count[key] == 0:
            del self._count[key]
            self.current -= self._bytes.pop(key)

    def __enter__(self) -> SavedTensorMeter:
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._hooks.__exit__(*exc)
        self._hooks = None
