"""``convnas costs``: params, MACs and training memory of a model, measured on the meta device."""

from __future__ import annotations

import argparse
import ast
import json
import pathlib
import re
from typing import Any

from convnas.errors import ConfigError

NAME = "costs"
HELP = "params, MACs and training memory of a CIFAR ResNet spec or an architecture file"

_SPEC = re.compile(r"^resnet(?P<depth>\d+)(?::(?P<op>[^:=]+))?(?P<args>(?::[^:]+)*)$")
_DTYPES = ("float32", "float16", "bfloat16", "float64")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model",
        metavar="MODEL_OR_ARCH",
        help="an architecture file (.yaml/.yml/.json) or a CIFAR ResNet spec "
        "'resnetN[:op[:key=value...]]', e.g. resnet56:c2sp or resnet20:csg_conv_3x3:code_size=72",
    )
    parser.add_argument(
        "--input",
        default=None,
        help="one sample's shape, CxHxW, or HxW with the architecture file's channels "
        "(default: the architecture file's input_shape; 3x32x32 for a ResNet spec)",
    )
    parser.add_argument("--batch", type=int, default=128, help="batch size of the memory figures")
    parser.add_argument(
        "--optimizer",
        default="sgd",
        choices=("sgd", "sgd_momentum", "adam", "adamw"),
        help="optimizer whose state is counted",
    )
    parser.add_argument("--dtype", default="float32", choices=_DTYPES, help="parameter dtype")
    parser.add_argument("--shortcut", default="A", choices=("A", "B"), help="ResNet shortcut")
    parser.add_argument("--width", type=float, default=1.0, help="ResNet width multiplier")
    parser.add_argument("--num-classes", type=int, default=10, help="ResNet classifier size")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def parse_input_shape(text: str) -> tuple[int, ...]:
    """``"3x32x32"`` -> ``(3, 32, 32)``."""
    try:
        shape = tuple(int(p) for p in text.lower().split("x"))
    except ValueError:
        shape = ()
    if not shape or any(s < 1 for s in shape):
        raise ConfigError(f"--input must look like 3x32x32 (positive ints), but got {text!r}")
    return shape


def resolve_input_shape(text: str | None, default: tuple[int, ...]) -> tuple[int, ...]:
    """The shape ``--input`` names: ``default`` when None, CxHxW as given, and HxW with the
    channels of ``default`` (the architecture file's or CIFAR's)."""
    if text is None:
        return default
    shape = parse_input_shape(text)
    if len(shape) == 2:
        return (default[0], *shape)
    if len(shape) != 3:
        raise ConfigError(
            f"--input must be CxHxW (e.g. {'x'.join(map(str, default))}) or HxW, but got "
            f"{text!r} ({len(shape)} number(s))"
        )
    return shape


def _parse_value(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_spec(spec: str) -> tuple[int, str, dict[str, Any]]:
    """``"resnet56:csg_conv_3x3:code_size=72"`` -> ``(56, "csg_conv_3x3", {"code_size": 72})``."""
    match = _SPEC.match(spec.strip())
    if not match:
        raise ConfigError(
            f"a model spec must look like resnetN[:op[:key=value...]] (e.g. resnet56:c2sp) or "
            f"be an architecture file, but got {spec!r}"
        )
    op_args: dict[str, Any] = {}
    for item in filter(None, match.group("args").split(":")):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"operator arguments must be key=value, but got {item!r} in {spec!r}")
        op_args[key] = _parse_value(value)
    return int(match.group("depth")), match.group("op") or "conv_3x3", op_args


def build_from_argument(args: argparse.Namespace) -> Any:
    """The model named by ``args.model``: an architecture file or a CIFAR ResNet spec."""
    return build_with_input_shape(args)[0]


def _file_input_shape(arch: Any, path: pathlib.Path) -> tuple[int, ...]:
    shape = arch.settings.get("input_shape")
    try:
        shape = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        shape = ()
    if len(shape) != 3 or any(s < 1 for s in shape):
        raise ConfigError(
            f"architecture file {str(path)!r} has no settings.input_shape [C, H, W] (got "
            f"{arch.settings.get('input_shape')!r}); pass --input CxHxW"
        )
    return shape


def build_with_input_shape(args: argparse.Namespace) -> tuple[Any, tuple[int, ...]]:
    """The model named by ``args.model`` and the input shape to measure it with (see --input)."""
    path = pathlib.Path(args.model)
    if path.suffix.lower() in (".yaml", ".yml", ".json"):
        if not path.is_file():
            raise ConfigError(f"architecture file {str(path)!r} does not exist")
        try:
            from convnas.search_space import build_model, load_architecture
        except ImportError as exc:
            raise ConfigError(
                f"architecture files need convnas.search_space.architecture, which is not "
                f"available ({exc})"
            ) from exc
        arch = load_architecture(path)
        shape = resolve_input_shape(args.input, _file_input_shape(arch, path))
        return build_model(arch), shape
    from convnas.models import cifar_resnet

    depth, op, op_args = parse_spec(args.model)
    shape = resolve_input_shape(args.input, (3, 32, 32))
    model = cifar_resnet(
        depth,
        op,
        shortcut=args.shortcut,
        width_multiplier=args.width,
        num_classes=args.num_classes,
        op_args=op_args,
    )
    return model, shape


def _si(value: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3f}{unit}"
    return str(value)


def _mib(value: int) -> str:
    return f"{value / 2**20:.2f} MiB"


def format_costs(name: str, costs: Any) -> str:
    """The human-readable table ``convnas costs`` prints."""
    rows = [
        ("params (trainable)", f"{costs.params:,}"),
        ("params (frozen)", f"{costs.frozen_params:,}"),
        ("buffers", f"{costs.buffers:,}"),
        ("deploy params (folded)", f"{costs.deploy_params:,}"),
        ("shared params", f"{costs.shared_params:,}"),
        ("MACs / image (not 2xMACs)", f"{costs.macs:,} ({_si(costs.macs)})"),
        ("weight MACs / forward", f"{costs.weight_macs:,}"),
    ]
    rows += [(f"{k} ops / image", f"{v:,}") for k, v in costs.other_ops.items()]
    rows += [
        ("weights + buffers", _mib(costs.weight_bytes)),
        ("gradients", _mib(costs.gradient_bytes)),
        (f"optimizer state ({costs.optimizer})", _mib(costs.optimizer_bytes)),
        ("saved activations", _mib(costs.activation_bytes)),
        ("training memory", f"{_mib(costs.train_memory_bytes)} ({costs.train_memory_bytes:,} B)"),
        ("simulated peak", f"{_mib(costs.peak_memory_bytes)} ({costs.peak_memory_bytes:,} B)"),
    ]
    shape = "x".join(map(str, costs.input_shape))
    width = max(len(k) for k, _ in rows)
    head = f"{name}: input {shape}, batch {costs.batch_size}, {costs.dtype}"
    return "\n".join([head] + [f"  {k.ljust(width)}  {v}" for k, v in rows])


def run(args: argparse.Namespace) -> int:
    import torch

    from convnas.costs.measure import measure

    model, shape = build_with_input_shape(args)
    costs = measure(
        model,
        shape,
        batch_size=args.batch,
        optimizer=args.optimizer,
        dtype=getattr(torch, args.dtype),
    )
    if args.json:
        print(json.dumps({"model": args.model, **costs.to_dict()}, indent=2))
    else:
        print(format_costs(args.model, costs))
    return 0
