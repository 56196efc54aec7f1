"""Which ``nn.Conv2d`` layers :func:`~convnas.integrations.convert.convert_model` replaces.

The rules 1-4 of :mod:`convnas.integrations.convert` as code: the default rule (plain 3x3 convs
but the stem), ``include`` / ``exclude`` patterns on qualified module names, and the checks that
the operator can stand in for a conv (stride, channel change, size-keeping padding). Nothing here
changes a model: :func:`select_convs` lists the convs with the reason each one is skipped.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from typing import Any, cast

from torch import nn

from convnas.errors import OperatorArgumentError
from convnas.integrations.darts import Patterns, as_patterns
from convnas.operators import operator_info

__all__ = ["check_op_args", "conv2d_pair", "select_convs"]


def conv2d_pair(value: int | tuple[int, ...]) -> tuple[int, int]:
    """An ``nn.Conv2d`` size attribute as ``(h, w)``; torch types them ``tuple[int, ...]``."""
    return (value, value) if isinstance(value, int) else cast(tuple[int, int], tuple(value))


def check_op_args(op: str, op_args: Mapping[str, Any]) -> None:
    """Raise unless ``op`` is a registered ``kind="conv"`` operator accepting ``op_args``."""
    info = operator_info(op)
    if info.kind != "conv":
        raise OperatorArgumentError(
            f"convert_model needs a kind='conv' operator (no norm or activation), but {op!r} "
            f"is a {info.kind!r}"
        )
    allowed = info.hparam_names()
    if allowed is None:  # the factory takes any keyword
        return
    unknown = sorted(set(op_args) - set(allowed))
    if unknown:
        raise OperatorArgumentError(
            f"operator {op!r} has no hyper-parameter {', '.join(map(repr, unknown))}; it "
            f"accepts {sorted(allowed) or 'none'}"
        )


def select_convs(
    model: nn.Module, op: str, include: Patterns, exclude: Patterns
) -> list[tuple[str, nn.Conv2d, str]]:
    """``(name, conv, reason)`` for every conv of ``model``; reason "" means replace."""
    inc, exc = as_patterns(include, "include"), as_patterns(exclude, "exclude")
    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    stem = convs[0][0] if convs else None
    plan = []
    for name, conv in convs:  # every conv is listed: a skipped one says why
        if inc is not None:
            reason = "" if _matches(name, inc) else "not included"
        else:
            reason = _is_default(conv)
            if not reason and name == stem:
                reason = "stem"
        if not reason and _matches(name, exc):
            reason = "excluded"
        if not reason and name == "":
            reason = "the model itself is the conv"
        plan.append((name, conv, reason or _unsupported(conv, op)))
    return plan


def _is_default(conv: nn.Conv2d) -> str:
    """ "" when the conv is a plain 3x3 of the default rule, else why not."""
    if conv2d_pair(conv.kernel_size) != (3, 3):
        return f"kernel {conv.kernel_size}"
    if conv.groups != 1:
        return f"groups={conv.groups} (select it with include)"
    if conv2d_pair(conv.dilation) != (1, 1):
        return f"dilation {conv.dilation} (select it with include)"
    if conv.padding != (1, 1) or conv.padding_mode != "zeros":
        return f"padding {conv.padding!r}/{conv.padding_mode} (select it with include)"
    return ""


def _unsupported(conv: nn.Conv2d, op: str) -> str:
    """ "" when ``op`` can stand in for ``conv``, else why not."""
    info = operator_info(op)
    stride = conv2d_pair(conv.stride)
    if stride[0] != stride[1]:
        return f"unequal strides {stride}"
    if stride[0] not in info.strides:
        return f"{op!r} supports stride in {info.strides}, not {stride[0]}"
    if conv.in_channels != conv.out_channels and not info.channel_change:
        return f"{op!r} needs in_channels == out_channels"
    if conv.padding == "valid" and conv2d_pair(conv.kernel_size) != (1, 1):
        return "padding 'valid' changes the size"
    if not isinstance(conv.padding, str):  # a str is "same" or "valid"
        for p, k, d in zip(
            conv.padding, conv2d_pair(conv.kernel_size), conv2d_pair(conv.dilation), strict=True
        ):
            if 2 * p != d * (k - 1):
                return f"padding {conv.padding} does not keep the size"
    return ""


def _matches(name: str, patterns: tuple[str, ...] | None) -> bool:
    return patterns is not None and any(fnmatch.fnmatchcase(name, p) for p in patterns)
