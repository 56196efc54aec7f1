"""The operator registry: register, create, list and describe candidate operators.

Every operator is stored as a factory plus metadata (:class:`OperatorInfo`). A factory is
called as ``factory(in_channels, out_channels, stride, *, context, device, dtype, **hparams)``
and returns an ``nn.Module`` that maps ``(B, in_channels, H, W)`` to
``(B, out_channels, ceil(H/stride), ceil(W/stride))``.
"""

from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch
from torch import nn

from convnas.errors import OperatorArgumentError, UnknownOperatorError
from convnas.layers.checks import positive_int
from convnas.operators.context import BuildContext
from convnas.registry import Registry

__all__ = [
    "KINDS",
    "OPERATORS",
    "OperatorInfo",
    "create_operator",
    "list_operators",
    "operator_info",
    "register_operator",
]

KINDS = ("conv", "block")

OPERATORS: Registry[OperatorInfo] = Registry(
    "operator", entry_point_group="convnas.operators", error_type=UnknownOperatorError
)


@dataclass(frozen=True)
class OperatorInfo:
    """What the registry knows about one operator.

    Attributes:
        name: the registered name.
        factory: builds the module (see the module docstring for its signature).
        family: the operator family ("darts", "even", "do_conv", "osep", "shiftwise", "csg", ...).
        kind: "conv" for a linear conv-like map with a stride and no norm or activation;
            "block" for a complete edge operation (pooling, skip, zero, ReLU-conv-BN stacks).
        paper: the source paper, short form.
        strides: the strides the operator supports.
        channel_change: whether ``in_channels != out_channels`` is allowed.
        foldable: whether the module has ``fold()`` returning an equivalent deploy module.
        search_space: hyper-parameter name -> the choices a search may pick from.
        gpu_kernel: whether a custom GPU kernel backs the operator on CUDA.
        description: one line for listings.
        scriptable: whether ``torch.jit.script`` compiles the module built by ``factory``
            (the scripted module matches eager on the pure-PyTorch path).
        script_note: why the operator is not scriptable (empty when it is).
    """

    name: str
    factory: Callable[..., nn.Module]
    family: str
    kind: str
    paper: str = ""
    strides: tuple[int, ...] = (1, 2)
    channel_change: bool = True
    foldable: bool = False
    search_space: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    gpu_kernel: bool = False
    description: str = ""
    scriptable: bool = True
    script_note: str = ""

    def hparam_names(self) -> tuple[str, ...] | None:
        """Keyword hyper-parameters the factory accepts, or None if it takes any."""
        params = inspect.signature(self.factory).parameters.values()
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            return None
        fixed = {"in_channels", "out_channels", "stride", "context", "device", "dtype"}
        return tuple(
            p.name
            for p in params
            if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
            and p.name not in fixed
        )

    def hparam_defaults(self) -> dict[str, Any]:
        """Default value of every hyper-parameter that has one."""
        return {
            p.name: p.default
            for p in inspect.signature(self.factory).parameters.values()
            if p.default is not inspect.Parameter.empty
            and p.name not in ("context", "device", "dtype", "stride")
        }

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly summary (no factory)."""
        return {
            "name": self.name,
            "family": self.family,
            "kind": self.kind,
            "paper": self.paper,
            "strides": list(self.strides),
            "channel_change": self.channel_change,
            "foldable": self.foldable,
            "search_space": {k: list(v) for k, v in self.search_space.items()},
            "gpu_kernel": self.gpu_kernel,
            "description": self.description,
            "scriptable": self.scriptable,
            "script_note": self.script_note,
        }


def register_operator(
    name: str,
    *,
    family: str,
    kind: str,
    paper: str = "",
    strides: Sequence[int] = (1, 2),
    channel_change: bool = True,
    foldable: bool = False,
    search_space: Mapping[str, Sequence[Any]] | None = None,
    gpu_kernel: bool = False,
    description: str = "",
    scriptable: bool = True,
    script_note: str = "",
    replace: bool = False,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator that registers an operator factory (a function or an ``nn.Module`` class).

    Example:
        >>> @register_operator("my_conv", family="mine", kind="conv")
        ... def my_conv(in_channels, out_channels, stride, *, context=None, device=None,
        ...             dtype=None):
        ...     return nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False,
        ...                      device=device, dtype=dtype)
    """
    if kind not in KINDS:
        raise OperatorArgumentError(f"kind must be one of {KINDS}, but got {kind!r}")
    if not strides or any(s < 1 for s in strides):
        raise OperatorArgumentError(f"strides must be positive ints, but got {tuple(strides)!r}")
    if not scriptable and not script_note.strip():
        raise OperatorArgumentError(
            f"operator {name!r} is registered as not scriptable; give a script_note saying why"
        )
    space = MappingProxyType({k: tuple(v) for k, v in (search_space or {}).items()})
    for key, choices in space.items():
        if not choices:
            raise OperatorArgumentError(f"search_space[{key!r}] of {name!r} has no choices")

    def decorator(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        info = OperatorInfo(
            name=name,
            factory=factory,
            family=family,
            kind=kind,
            paper=paper,
            strides=tuple(int(s) for s in strides),
            channel_change=channel_change,
            foldable=foldable,
            search_space=space,
            gpu_kernel=gpu_kernel,
            description=description or (inspect.getdoc(factory) or "").split("\n")[0],
            scriptable=bool(scriptable),
            script_note="" if scriptable else script_note,
        )
        names = info.hparam_names()
        if names is not None:
            missing = sorted(set(space) - set(names))
            if missing:
                raise OperatorArgumentError(
                    f"search_space of {name!r} names {missing}, which its factory does not accept"
                )
        OPERATORS.add(name, info, replace=replace)
        return factory

    return decorator


def operator_info(name: str) -> OperatorInfo:
    """Metadata of the operator ``name``; unknown names raise with close matches."""
    return OPERATORS.get(name)


def list_operators(
    pattern: str = "*", *, kind: str | None = None, family: str | None = None
) -> list[str]:
    """Sorted operator names matching ``pattern`` (shell wildcards) and the filters."""
    if kind is not None and kind not in KINDS:
        raise OperatorArgumentError(f"kind must be one of {KINDS} or None, but got {kind!r}")
    out = []
    for name, info in OPERATORS.items():
        if not fnmatch.fnmatchcase(name, pattern):
            continue
        if kind is not None and info.kind != kind:
            continue
        if family is not None and info.family != family:
            continue
        out.append(name)
    return out


def create_operator(
    name: str,
    in_channels: int,
    out_channels: int,
    stride: int = 1,
    *,
    context: BuildContext | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    **hparams: Any,
) -> nn.Module:
    """Build the operator ``name`` mapping ``in_channels`` to ``out_channels`` at ``stride``.

    Raises:
        UnknownOperatorError: ``name`` is not registered.
        OperatorArgumentError: the stride, the channel change or a hyper-parameter is not
            supported by this operator; the message names the value and what is allowed.
    """
    info = operator_info(name)
    positive_int("in_channels", in_channels)
    positive_int("out_channels", out_channels)
    if stride not in info.strides:
        raise OperatorArgumentError(
            f"operator {name!r} supports stride in {info.strides}, but got stride={stride!r}"
        )
    if in_channels != out_channels and not info.channel_change:
        raise OperatorArgumentError(
            f"operator {name!r} needs in_channels == out_channels, but got "
            f"in_channels={in_channels}, out_channels={out_channels}"
        )
    allowed = info.hparam_names()
    if allowed is not None:
        unknown = sorted(set(hparams) - set(allowed))
        if unknown:
            raise OperatorArgumentError(
                f"operator {name!r} has no hyper-parameter {', '.join(map(repr, unknown))}; "
                f"it accepts {sorted(allowed) or 'none'}"
            )
    return info.factory(
        in_channels, out_channels, stride, context=context, device=device, dtype=dtype, **hparams
    )
