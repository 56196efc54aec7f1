"""Op-level accounting for the cost model: MACs, other ops and live memory on ``meta`` tensors.

:class:`CostMode` is a ``TorchDispatchMode`` that sees every aten (and custom) op of a forward and
backward pass. It

- counts multiply-accumulates through ``torch.utils.flop_counter.flop_registry`` (FLOPs / 2), so a
  custom op that registers a FLOP formula with ``register_flop_formula`` is counted too;
- splits them into data MACs (the op reads, directly or not, the input batch) and weight MACs (the
  op only reads parameters: DO-Conv / CSG kernel composition, independent of batch and resolution);
- counts the element operations of norms, activations, pooling and element-wise arithmetic
  separately ("other ops"), never in the MAC total;
- keeps a running sum of the bytes of every live storage (each storage once, however many views
  point into it) and its peak: the tensor-level picture of what a caching allocator holds.
"""

from __future__ import annotations

import weakref
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.weak import WeakIdKeyDictionary

__all__ = ["OTHER_OP_CATEGORIES", "CostMode", "MemoryTracker", "other_op_category"]

OTHER_OP_CATEGORIES = ("norm", "activation", "pooling", "elementwise")

_NORM = {
    "native_batch_norm",
    "_native_batch_norm_legit",
    "_native_batch_norm_legit_no_training",
    "_native_batch_norm_legit_functional",
    "native_layer_norm",
    "native_group_norm",
    "cudnn_batch_norm",
    "miopen_batch_norm",
}
_ACTIVATION = {
    "relu",
    "relu6",
    "gelu",
    "silu",
    "sigmoid",
    "tanh",
    "hardtanh",
    "hardswish",
    "hardsigmoid",
    "leaky_relu",
    "elu",
    "mish",
    "threshold",
    "clamp",
    "clamp_min",
    "_softmax",
    "_log_softmax",
    "softplus",
}
_WINDOW_POOL = {
    "max_pool2d_with_indices",
    "max_pool2d",
    "avg_pool2d",
    "max_pool3d_with_indices",
    "avg_pool3d",
}
_GLOBAL_POOL = {"mean", "_adaptive_avg_pool2d", "adaptive_max_pool2d"}
_ELEMENTWISE = {"add", "sub", "mul", "div", "addcmul", "addcdiv", "neg", "rsub", "where", "lerp"}


def other_op_category(name: str) -> str | None:
    """The "other ops" category of an aten op name (``relu_`` counts as ``relu``), or None."""
    base = name[:-1] if name.endswith("_") and not name.startswith("_") else name
    if base in _NORM:
        return "norm"
    if base in _ACTIVATION:
        return "activation"
    if base in _WINDOW_POOL or base in _GLOBAL_POOL:
        return "pooling"
    if base in _ELEMENTWISE:
        return "elementwise"
    return None


def _tensors(tree: Any) -> list[torch.Tensor]:
    return [t for t in tree_flatten(tree)[0] if isinstance(t, torch.Tensor)]


def _other_op_count(base: str, args: tuple, out: Any) -> int:
    """Element operations of a non-MAC op: output elements, or the pooled elements."""
    outs = _tensors(out)
    if not outs:
        return 0
    if base in _WINDOW_POOL:
        kernel = args[1] if len(args) > 1 else 1
        sizes = list(kernel) if isinstance(kernel, (list, tuple)) else [kernel]
        if len(sizes) == 1:
            sizes *= outs[0].dim() - 2
        window = 1
        for k in sizes:
            window *= int(k)
        return outs[0].numel() * window
    if base in _GLOBAL_POOL:
        first = args[0] if args and isinstance(args[0], torch.Tensor) else outs[0]
        return first.numel()
    return outs[0].numel()


class MemoryTracker:
    """Running sum and peak of the bytes of live storages, each storage counted once."""

    def __init__(self) -> None:
        self.live: dict[int, int] = {}
        self.current = 0
        self.peak = 0

    @staticmethod
    def key(tensor: torch.Tensor) -> int:
        """Identity of the storage behind ``tensor`` (shared by all its views)."""
        return tensor.untyped_storage()._cdata

    def add(self, tensors: Iterable[torch.Tensor]) -> None:
        """Start tracking the storages of ``tensors`` until they are freed."""
        for t in tensors:
            storage = t.untyped_storage()
            key = storage._cdata
            if key in self.live:
                continue
            nbytes = storage.nbytes()
            self.live[key] = nbytes
            self.current += nbytes
            weakref.finalize(storage, self._free, key)
        self.peak = max(self.peak, self.current)

    def _free(self, key: int) -> None:
        self.current -= self.live.pop(key, 0)

    def reset_peak(self) -> None:
        self.peak = self.current


class CostMode(TorchDispatchMode):
    """Counts MACs and other ops of the forward pass and tracks live memory throughout.

    Set :attr:`phase` to ``"forward"`` while the model runs and to anything else (``"backward"``)
    afterwards: only forward ops are counted, every op's outputs are tracked.

    Args:
        data_tensors: the input batch; ops that read it, directly or not, are per-image work.
        tracker: the memory tracker that receives every op output.
    """

    def __init__(self, data_tensors: Iterable[torch.Tensor], tracker: MemoryTracker) -> None:
        super().__init__()
        # flop_counter imports triton when installed: keep it out of ``import convnas``.
        from torch.utils.flop_counter import flop_registry

        self._flop_registry = flop_registry
        self.tracker = tracker
        self.phase = "forward"
        self.data_macs = 0
        self.weight_macs = 0
        self.other_ops: dict[str, int] = defaultdict(int)
        self.weight_other_ops = 0
        self._data = WeakIdKeyDictionary()
        for t in data_tensors:
            self._data[t] = True

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        outs = _tensors(out)
        if self.phase == "forward":
            on_data = any(t in self._data for t in _tensors((args, kwargs)))
            self._count(func, args, kwargs, out, on_data)
            if on_data:
                for t in outs:
                    self._data[t] = True
        self.tracker.add(outs)
        return out

    def _count(self, func: Any, args: tuple, kwargs: dict, out: Any, on_data: bool) -> None:
        packet = func._overloadpacket
        formula = self._flop_registry.get(packet)
        if formula is not None:
            macs = int(formula(*args, **kwargs, out_val=out)) // 2
            if on_data:
                self.data_macs += macs
            else:
                self.weight_macs += macs
            return
        base = packet.__name__
        category = other_op_category(base)
        if category is None:
            return
        count = _other_op_count(base[:-1] if base.endswith("_") else base, args, out)
        if on_data:
            self.other_ops[category] += count
        else:
            self.weight_other_ops += count
