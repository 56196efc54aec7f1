"""The cost model: params, MACs and training memory of a network, measured on the meta device.

:func:`measure` copies the network onto ``meta`` tensors (no data is copied, no compute is done),
runs one forward and backward pass under :class:`~convnas.costs.mac_counter.CostMode`
and returns :class:`Costs`.

What the training-memory model includes (``train_memory_bytes``, exact by construction):

- weights: every parameter and buffer (trainable, frozen, shared), each storage once;
- gradients: one per trainable parameter;
- optimizer state: ``sgd`` none, ``sgd_momentum`` one buffer per trainable parameter, ``adam`` /
  ``adamw`` two (the scalar ``step`` counters are left out);
- activations: the most bytes of tensors that autograd holds for backward at once, each storage
  once (views share storage), leaving out parameters and buffers. This includes the input batch
  when a layer saves it, and kernels composed from parameters on every forward (DO-Conv, CSG):
  they are saved by the conv that uses them, so they count once per layer, independent of the
  batch size. For a plain network this is what the forward pass saved; for a supernet in
  recompute mode it is the decisions' inputs plus the largest candidate graph rebuilt during
  backward (graphs built in backward are counted as they are held).

``peak_memory_bytes`` replays the allocator at tensor granularity instead: the bytes of every live
storage at every op of the forward and backward pass (gradients appear as they are computed,
saved tensors disappear as their backward node runs), plus the optimizer state, and the optimizer
step (``adam``/``adamw`` need one parameter-sized temporary in PyTorch's foreach implementation).
It is what ``torch.cuda.max_memory_allocated`` measures over one training step whose gradients
start as ``None`` (``zero_grad(set_to_none=True)``), without the loss. Known gaps of both: the
allocator's rounding of blocks to 512 bytes (and 2 MiB segments), library workspaces (cuDNN
convolution, cuBLAS), memory that kernels allocate internally, the loss, and state that lives on
the host.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_flatten

from convnas.costs.mac_counter import CostMode, MemoryTracker
from convnas.costs.saved_tensors import SavedTensorMeter
from convnas.errors import ConfigError, ConvNASError
from convnas.folding import fold, is_foldable
from convnas.operators.context import SharedModules

__all__ = ["METRICS", "OPTIMIZERS", "Costs", "measure"]

logger = logging.getLogger(__name__)

# name -> (state tensors per trainable parameter, parameter-sized temporaries in the step)
OPTIMIZERS: Mapping[str, tuple[int, int]] = {
    "sgd": (0, 0),
    "sgd_momentum": (1, 0),
    "adam": (2, 1),
    "adamw": (2, 1),
}
_ALIASES = {"momentum": "sgd_momentum", "sgdm": "sgd_momentum"}


@dataclass(frozen=True)
class Costs:
    """The costs of one network (see the module docstring for the memory model).

    Attributes:
        params: trainable parameters.
        frozen_params: parameters with ``requires_grad=False``.
        buffers: buffer elements (BN running statistics, fixed tables).
        deploy_params: parameters after :func:`convnas.fold`.
        shared_params: the part of ``params + frozen_params`` held by modules shared by the
            layers of a network (a :class:`~convnas.operators.BuildContext`, e.g. the CSG
            generator).
        macs: multiply-accumulates per image in one forward pass (conv, linear, matmul).
        weight_macs: MACs per forward that only read parameters (kernel composition of
            DO-Conv and CSG); independent of batch and resolution, not in ``macs``.
        other_ops: element operations per image by category (norm, activation, pooling,
            elementwise); not in ``macs``.
        weight_bytes: parameters and buffers.
        gradient_bytes: gradients of the trainable parameters.
        optimizer_bytes: optimizer state.
        activation_bytes: tensors saved for backward at ``batch_size``.
        train_memory_bytes: the sum of the four above.
        peak_memory_bytes: simulated peak of live tensors over one training step.
        input_shape: shape of one input sample.
        batch_size: the batch size of the memory figures.
        optimizer: the optimizer of the memory figures.
        dtype: the floating dtype of parameters and activations.
    """

    params: int
    frozen_params: int
    buffers: int
    deploy_params: int
    shared_params: int
    macs: int
    weight_macs: int
    other_ops: Mapping[str, int]
    weight_bytes: int
    gradient_bytes: int
    optimizer_bytes: int
    activation_bytes: int
    train_memory_bytes: int
    peak_memory_bytes: int
    input_shape: tuple[int, ...] = field(default=())
    batch_size: int = 1
    optimizer: str = "sgd"
    dtype: str = "float32"

    def __getitem__(self, metric: str) -> int:
        """The numeric field ``metric`` (one of :data:`METRICS`)."""
        if metric not in METRICS:
            raise ConfigError(f"unknown cost metric {metric!r}; choose one of {list(METRICS)}")
        return getattr(self, metric)

    def __add__(self, other: Costs) -> Costs:
        """Field-wise sum (for several layers); the peak of a sum is an upper bound."""
        if not isinstance(other, Costs):
            return NotImplemented
        sums = {m: self[m] + other[m] for m in METRICS}
        ops = dict(self.other_ops)
        for k, v in other.other_ops.items():
            ops[k] = ops.get(k, 0) + v
        return Costs(
            **sums,
            other_ops=ops,
            input_shape=self.input_shape,
            batch_size=self.batch_size,
            optimizer=self.optimizer,
            dtype=self.dtype,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (MACs, not 2xMACs)."""
        out = asdict(self)
        out["other_ops"] = dict(self.other_ops)
        out["input_shape"] = list(self.input_shape)
        return out


METRICS = tuple(
    f.name
    for f in fields(Costs)
    if f.name not in ("other_ops", "input_shape", "batch_size", "optimizer", "dtype")
)


def _canonical_optimizer(optimizer: str) -> str:
    name = _ALIASES.get(str(optimizer).lower(), str(optimizer).lower())
    if name not in OPTIMIZERS:
        raise ConfigError(
            f"optimizer must be one of {sorted(OPTIMIZERS)}, but got optimizer={optimizer!r}"
        )
    return name


def _module_state(model: nn.Module) -> tuple[dict[int, torch.Tensor], dict[int, torch.Tensor], set]:
    """Parameters and buffers reachable from ``model`` (also through unregistered module
    references, as layers hold the shared modules of a BuildContext), and the ids of the
    shared ones."""
    params: dict[int, torch.Tensor] = {}
    buffers: dict[int, torch.Tensor] = {}
    visited: set[int] = set()

    def visit(module: nn.Module) -> None:
        if id(module) in visited:
            return
        visited.add(id(module))
        for p in module._parameters.values():
            if p is not None:
                params.setdefault(id(p), p)
        for b in module._buffers.values():
            if b is not None:
                buffers.setdefault(id(b), b)
        for child in module._modules.values():
            if child is not None:
                visit(child)
        for value in vars(module).values():
            if isinstance(value, nn.Module):
                visit(value)

    visit(model)
    registered = {id(p) for p in model.parameters()}
    shared = {pid for pid in params if pid not in registered}
    for module in model.modules():
        if isinstance(module, SharedModules):
            shared.update(id(p) for p in module.parameters())
    return params, buffers, shared


def _meta_copy(
    model: nn.Module, params: dict, buffers: dict, dtype: torch.dtype
) -> tuple[nn.Module, dict[int, torch.Tensor]]:
    """Deep copy of ``model`` whose parameters and buffers are uninitialised meta tensors."""
    memo: dict[int, Any] = {}
    for pid, p in params.items():
        dt = dtype if p.is_floating_point() else p.dtype
        memo[pid] = nn.Parameter(
            torch.empty(p.shape, device="meta", dtype=dt), requires_grad=p.requires_grad
        )
    for bid, b in buffers.items():
        dt = dtype if b.is_floating_point() else b.dtype
        memo[bid] = torch.empty(b.shape, device="meta", dtype=dt)
    mapping = dict(memo)
    return copy.deepcopy(model, memo), mapping


def _nbytes(tensors: Sequence[torch.Tensor]) -> int:
    seen: dict[int, int] = {}
    for t in tensors:
        seen.setdefault(MemoryTracker.key(t), t.untyped_storage().nbytes())
    return sum(seen.values())


def _deploy_params(model: nn.Module, meta_model: nn.Module) -> int | None:
    if not any(is_foldable(m) for m in model.modules()):
        return None
    try:
        folded = fold(meta_model)
    except (RuntimeError, NotImplementedError, TypeError, ValueError) as exc:
        logger.debug("fold on meta failed (%s); folding the real model", exc)
        folded = fold(model)
    return sum(p.numel() for p in folded.parameters())


def _validate(input_shape: Sequence[int], batch_size: int) -> tuple[int, ...]:
    shape = tuple(input_shape) if isinstance(input_shape, Sequence) else ()
    if not shape or any(not isinstance(s, int) or isinstance(s, bool) or s < 1 for s in shape):
        raise ConfigError(
            f"input_shape must be the shape of one sample as positive ints, e.g. (3, 32, 32), "
            f"but got input_shape={input_shape!r}"
        )
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive int, but got batch_size={batch_size!r}")
    return shape


def measure(
    model: nn.Module,
    input_shape: Sequence[int],
    *,
    batch_size: int = 1,
    optimizer: str = "sgd",
    dtype: torch.dtype = torch.float32,
    input_requires_grad: bool = False,
) -> Costs:
    """Measure params, MACs and training memory of ``model`` on the meta device.

    ``model`` is not modified and may live on any device; nothing is computed. A copy on meta
    tensors runs one forward and backward pass in training mode (BN uses batch statistics);
    the backward pass starts from an output-shaped gradient of ones (no loss is modelled).

    Args:
        model: the network, in its training form (unfolded).
        input_shape: shape of one sample, without the batch dimension, e.g. ``(3, 32, 32)``.
        batch_size: batch size of the memory figures (MACs are per image).
        optimizer: "sgd", "sgd_momentum", "adam" or "adamw".
        dtype: floating dtype of parameters, buffers and input.
        input_requires_grad: let the input require a gradient, as an inner layer's input does
            (used for the costs of isolated candidate operators).

    Raises:
        ConfigError: a bad shape, batch size or optimizer.
        ConvNASError: the model cannot run on meta tensors (it reads tensor values).

    Example:
        >>> from convnas.models import cifar_resnet
        >>> measure(cifar_resnet(20), (3, 32, 32)).macs
        40551040
    """
    shape = _validate(input_shape, batch_size)
    opt = _canonical_optimizer(optimizer)
    params, buffers, shared = _module_state(model)
    meta_model, mapping = _meta_copy(model, params, buffers, dtype)
    meta_model.train()
    meta_params = [mapping[pid] for pid in params]
    trainable = [mapping[pid] for pid, p in params.items() if p.requires_grad]
    state = [mapping[i] for i in (*params, *buffers)]

    tracker = MemoryTracker()
    tracker.add(state)
    x = torch.empty((batch_size, *shape), device="meta", dtype=dtype)
    x.requires_grad_(input_requires_grad)
    tracker.add([x])
    meter = SavedTensorMeter(state)

    mode = CostMode([x], tracker)
    try:
        # The meter stays on during backward: graphs rebuilt there (recompute mode) count.
        with torch.enable_grad(), mode, meter:
            out = meta_model(x)
            mode.phase = "backward"
            outs = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
            outs = [t for t in outs if t.requires_grad]
            if outs:
                torch.autograd.backward(outs, [torch.ones_like(t) for t in outs])
    except NotImplementedError as exc:
        raise ConvNASError(
            f"cannot measure {type(model).__name__} on the meta device: {exc}. A custom op needs "
            f"a fake implementation (torch.library.register_fake)"
        ) from exc
    except RuntimeError as exc:
        if "meta" not in str(exc).lower():
            raise
        raise ConvNASError(
            f"cannot measure {type(model).__name__} on the meta device, its forward reads tensor "
            f"values: {exc}"
        ) from exc

    n_state, n_temp = OPTIMIZERS[opt]
    trainable_bytes = _nbytes(trainable)
    optimizer_bytes = n_state * trainable_bytes
    step_peak = tracker.current + optimizer_bytes + n_temp * trainable_bytes
    peak = max(tracker.peak + optimizer_bytes, step_peak)

    weight_bytes = _nbytes(state)
    activation_bytes = meter.peak
    n_params = sum(p.numel() for p in trainable)
    n_frozen = sum(p.numel() for p in meta_params) - n_params
    deploy = _deploy_params(model, meta_model)
    return Costs(
        params=n_params,
        frozen_params=n_frozen,
        buffers=sum(mapping[b].numel() for b in buffers),
        deploy_params=n_params + n_frozen if deploy is None else deploy,
        shared_params=sum(params[pid].numel() for pid in shared),
        macs=mode.data_macs // batch_size,
        weight_macs=mode.weight_macs,
        other_ops={k: v // batch_size for k, v in sorted(mode.other_ops.items())},
        weight_bytes=weight_bytes,
        gradient_bytes=trainable_bytes,
        optimizer_bytes=optimizer_bytes,
        activation_bytes=activation_bytes,
        train_memory_bytes=weight_bytes + trainable_bytes + optimizer_bytes + activation_bytes,
        peak_memory_bytes=peak,
        input_shape=shape,
        batch_size=batch_size,
        optimizer=opt,
        dtype=str(dtype).removeprefix("torch."),
    )
