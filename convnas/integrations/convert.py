"""Swap the 3x3 convolutions of any network for a registered operator.

:func:`convert_model` works on any ``nn.Module`` (torchvision, timm, hand-written): it finds the
``nn.Conv2d`` layers to replace, builds the operator with the same in/out channels and stride in
their place, and gives the network ownership of the modules the operators share (the CSG slice
generator). ``dry_run=True`` changes nothing and returns a :class:`ConversionReport`: what would
change, and params/MACs before and after measured with :func:`convnas.measure`.

Which convs are replaced:

1. by default (``include=None``) every ``nn.Conv2d`` (subclasses too) with kernel 3x3, groups 1,
   dilation 1, padding 1 and zero padding mode, except the *stem*: the first ``nn.Conv2d`` in
   ``model.named_modules()`` order (whatever its kernel);
2. ``include`` (shell patterns on qualified module names, e.g. ``"layer4.*.conv2"``) replaces
   that rule: exactly the ``nn.Conv2d`` layers whose name matches a pattern are selected, whatever
   their kernel or groups, the stem included;
3. ``exclude`` patterns then remove names;
4. a selected conv is skipped (and reported) when the operator cannot stand in for it: a stride
   the operator does not support (or unequal strides), ``in != out`` channels for an operator that
   keeps the channels, or padding that does not keep the size at stride 1 (``2p != d(k-1)``).

These rules are coded in :mod:`convnas.integrations.conv_selection`.

Bias: a conv with a bias keeps it. The operator is wrapped in :class:`BiasedOperator` (operator
output plus a per-channel bias initialised from the conv's bias); it folds to an ``nn.Conv2d``
with that bias when the operator folds to a bias-free conv. Weights are never carried over: the
operators are new layers, initialised by their own ``reset_parameters``.
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from convnas.errors import ConvNASError, OperatorArgumentError
from convnas.folding import Foldable
from convnas.integrations.conv_selection import check_op_args, conv2d_pair, select_convs
from convnas.integrations.darts import Patterns
from convnas.operators import BuildContext, SharedModules, create_operator

__all__ = [
    "SHARED_ATTRIBUTE",
    "BiasedOperator",
    "ConversionReport",
    "ConversionRow",
    "convert_model",
]

logger = logging.getLogger(__name__)

SHARED_ATTRIBUTE = "convnas_shared"
"""Attribute of the converted root module that owns the operators' shared modules."""


class BiasedOperator(nn.Module):
    """``op(x) + bias`` per output channel: an operator standing in for a conv with a bias."""

    def __init__(self, op: nn.Module, bias: torch.Tensor) -> None:
        super().__init__()
        self.op = op
        self.bias = nn.Parameter(bias.detach().clone(), requires_grad=bias.requires_grad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x) + self.bias.view(1, -1, 1, 1)

    def fold(self) -> nn.Module:
        """The folded operator with the bias merged into it when it folds to a plain conv."""
        inner = self.op.fold() if isinstance(self.op, Foldable) else self.op
        if type(inner) is not nn.Conv2d or inner.bias is not None:
            return BiasedOperator(inner, self.bias)
        conv = nn.Conv2d(
            inner.in_channels,
            inner.out_channels,
            conv2d_pair(inner.kernel_size),
            conv2d_pair(inner.stride),
            inner.padding if isinstance(inner.padding, str) else conv2d_pair(inner.padding),
            conv2d_pair(inner.dilation),
            inner.groups,
            bias=True,
            padding_mode=inner.padding_mode,
            device=inner.weight.device,
            dtype=inner.weight.dtype,
        )
        with torch.no_grad():
            conv.weight.copy_(inner.weight)
            if conv.bias is not None:  # bias=True above
                conv.bias.copy_(self.bias)
        return conv


@dataclass(frozen=True)
class ConversionRow:
    """One conv of the network: what :func:`convert_model` does with it and why."""

    name: str
    in_channels: int
    out_channels: int
    kernel_size: tuple[int, int]
    stride: tuple[int, int]
    groups: int
    action: str  # "replace" or "skip"
    reason: str  # why it is skipped; "" when replaced
    params_before: int
    params_after: int  # the layer's own parameters (shared modules are counted apart)


@dataclass(frozen=True)
class ConversionReport:
    """What :func:`convert_model` changes; totals measured at ``input_shape``, MACs per image."""

    op: str
    op_args: dict[str, Any]
    input_shape: tuple[int, ...]
    rows: tuple[ConversionRow, ...]
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int
    shared_params: int = 0
    shared_modules: tuple[str, ...] = field(default_factory=tuple)
    weight_macs_before: int = 0  # kernel composition per forward (DO-Conv, CSG), not in MACs
    weight_macs_after: int = 0

    @property
    def replaced(self) -> list[str]:
        """Names of the convs replaced."""
        return [r.name for r in self.rows if r.action == "replace"]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def table(self) -> str:
        """The report as a text table (MACs, not 2xMACs)."""
        args = "".join(f", {k}={v!r}" for k, v in self.op_args.items())
        lines = [
            f"convert_model(op={self.op!r}{args}), input {self.input_shape}, "
            "MACs = multiply-accumulates per image",
            f"{'layer':<24} {'in':>5} {'out':>5} {'k':>3} {'s':>2} {'g':>3} {'action':<8}"
            f" {'params before':>14} {'params after':>13}  note",
        ]
        for r in self.rows:
            k = "x".join(map(str, r.kernel_size)) if r.kernel_size[0] != r.kernel_size[1] else ""
            k = k or str(r.kernel_size[0])
            s = str(r.stride[0]) if r.stride[0] == r.stride[1] else "x".join(map(str, r.stride))
            lines.append(
                f"{r.name:<24} {r.in_channels:>5} {r.out_channels:>5} {k:>3} {s:>2} {r.groups:>3}"
                f" {r.action:<8} {r.params_before:>14,} {r.params_after:>13,}  {r.reason}"
            )
        n = len(self.replaced)
        lines.append(f"{n} of {len(self.rows)} listed convs replaced")
        if self.shared_modules:
            lines.append(
                f"shared modules owned by the network ({SHARED_ATTRIBUTE}): "
                f"{', '.join(self.shared_modules)}, {self.shared_params:,} params"
            )
        for label, before, after in (
            ("params", self.params_before, self.params_after),
            ("MACs", self.macs_before, self.macs_after),
        ):
            ratio = after / before if before else float("nan")
            lines.append(f"{label + ':':<8}{before:>16,} -> {after:>16,}  (x{ratio:.3f})")
        if self.weight_macs_before or self.weight_macs_after:
            lines.append(
                f"kernel-composition MACs per forward (independent of batch, not in MACs): "
                f"{self.weight_macs_before:,} -> {self.weight_macs_after:,}"
            )
        return "\n".join(line.rstrip() for line in lines)

    def __str__(self) -> str:
        return self.table()


def _context(model: nn.Module) -> BuildContext:
    ctx = BuildContext()
    existing = getattr(model, SHARED_ATTRIBUTE, None)
    if isinstance(existing, SharedModules):
        ctx.modules = existing
    elif existing is not None:
        raise ConvNASError(
            f"the model's attribute {SHARED_ATTRIBUTE!r} must hold the shared modules of a "
            f"previous conversion, but it holds a {type(existing).__name__}"
        )
    return ctx


def _build(
    conv: nn.Conv2d,
    op: str,
    op_args: Mapping[str, Any],
    ctx: BuildContext,
    device: str | None,
) -> nn.Module:
    module = create_operator(
        op,
        conv.in_channels,
        conv.out_channels,
        conv.stride[0],
        context=ctx,
        device=device or conv.weight.device,
        dtype=conv.weight.dtype,
        **op_args,
    )
    if conv.bias is not None:
        bias = conv.bias if device is None else conv.bias.to(device)
        module = BiasedOperator(module, bias)
    return module.train(conv.training)


def _swap(model: nn.Module, new: Mapping[int, nn.Module]) -> None:
    for parent in list(model.modules()):
        for child_name, child in list(parent._modules.items()):
            if child is not None and id(child) in new:
                parent._modules[child_name] = new[id(child)]


def convert_model(
    model: nn.Module,
    op: str,
    *,
    include: Patterns = None,
    exclude: Patterns = None,
    inplace: bool = False,
    dry_run: bool = False,
    input_shape: Sequence[int] = (3, 224, 224),
    **op_args: Any,
) -> nn.Module | ConversionReport:
    """Replace the 3x3 convs of ``model`` by the operator ``op`` (see the module docstring).

    Args:
        model: any network.
        op: a registered ``kind="conv"`` operator, e.g. "c2sp", "osep_3x3", "csg_conv_3x3".
        include: shell patterns on qualified module names selecting the convs to replace
            instead of the default rule.
        exclude: shell patterns of names to leave alone.
        inplace: modify ``model`` instead of a deep copy.
        dry_run: change nothing; return a :class:`ConversionReport`.
        input_shape: one sample's shape for the report's MACs.
        **op_args: hyper-parameters of the operator.

    Returns:
        The converted network, owning any shared modules as ``convnas_shared``; with
        ``dry_run`` the report.

    Example:
        >>> from convnas.models.imagenet_resnet import resnet50
        >>> print(convert_model(resnet50(), "c2sp", dry_run=True).table())  # doctest: +SKIP
    """
    check_op_args(op, op_args)
    target = model if inplace and not dry_run else copy.deepcopy(model)
    plan = select_convs(target, op, include, exclude)
    ctx = _context(target)
    shared_before = set(ctx.modules.keys())
    device = "meta" if dry_run else None
    new: dict[int, nn.Module] = {}
    rows = []
    for name, conv, reason in plan:
        before = sum(p.numel() for p in conv.parameters())
        after = before
        if not reason:
            try:
                new[id(conv)] = _build(conv, op, op_args, ctx, device)
            except OperatorArgumentError as err:
                raise OperatorArgumentError(f"{name}: {err}") from err
            after = sum(p.numel() for p in new[id(conv)].parameters())
        rows.append(
            ConversionRow(
                name,
                conv.in_channels,
                conv.out_channels,
                conv2d_pair(conv.kernel_size),
                conv2d_pair(conv.stride),
                conv.groups,
                "skip" if reason else "replace",
                reason,
                before,
                after,
            )
        )
    _warn_if_grown(rows, op)
    _swap(target, new)
    if len(ctx.modules) and getattr(target, SHARED_ATTRIBUTE, None) is not ctx.modules:
        setattr(target, SHARED_ATTRIBUTE, ctx.modules)
    logger.info("convert_model: %d convs replaced by %r", len(new), op)
    if not dry_run:
        return target
    from convnas.costs.measure import measure

    added = [k for k in ctx.modules.keys() if k not in shared_before]
    costs_before, costs_after = measure(model, input_shape), measure(target, input_shape)
    return ConversionReport(
        op=op,
        op_args=dict(op_args),
        input_shape=tuple(int(v) for v in input_shape),
        rows=tuple(rows),
        params_before=costs_before.params,
        params_after=costs_after.params,
        macs_before=costs_before.macs,
        macs_after=costs_after.macs,
        shared_params=sum(p.numel() for k in added for p in ctx.modules[k].parameters()),
        shared_modules=tuple(added),
        weight_macs_before=costs_before.weight_macs,
        weight_macs_after=costs_after.weight_macs,
    )


def _warn_if_grown(rows: Sequence[ConversionRow], op: str) -> None:
    """Warn when replacing convs makes them heavier, e.g. a depthwise or 5x5 conv selected
    with ``include`` and swapped for a dense 3x3 operator."""
    # A dense 3x3 conv replaced by an over-parameterised operator (DO-Conv) grows by design
    # and folds back; the warning is for convs of another kind made dense.
    grown = [
        r
        for r in rows
        if r.action == "replace"
        and r.params_after > r.params_before
        and (r.groups != 1 or r.kernel_size != (3, 3))
    ]
    if not grown:
        return
    before = sum(r.params_before for r in grown)
    after = sum(r.params_after for r in grown)
    names = ", ".join(r.name for r in grown[:5]) + (", ..." if len(grown) > 5 else "")
    warnings.warn(
        f"convert_model: replacing {len(grown)} conv(s) by {op!r} grows them from {before:,} "
        f"to {after:,} params ({names}); depthwise or larger-kernel convs selected with "
        f"include= become dense {op!r} layers",
        UserWarning,
        stacklevel=3,
    )
