"""``convnas osep-plan``: the osep planner's layer chain as a table or JSON."""

from __future__ import annotations

import argparse
import json

from convnas.errors import ConfigError

NAME = "osep-plan"
HELP = "solve the optimized separable convolution (osep) plan for one conv"


def _kernel(text: str) -> int | tuple[int, int]:
    """``3`` or ``3x5`` (height x width)."""
    parts = text.lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"kernel must be K or KHxKW, got {text!r}") from None
    if len(values) == 1:
        return values[0]
    if len(values) == 2:
        return (values[0], values[1])
    raise argparse.ArgumentTypeError(f"kernel must be K or KHxKW, got {text!r}")


def _n_sep(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"n-sep must be an int or 'auto', got {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--in", dest="in_channels", type=int, required=True, help="C_in")
    parser.add_argument("--out", dest="out_channels", type=int, required=True, help="C_out")
    parser.add_argument("--kernel", type=_kernel, default=3, help="K or KHxKW (default 3)")
    parser.add_argument("--n-sep", type=_n_sep, default=2, help="N >= 1 or 'auto' (default 2)")
    parser.add_argument("--gamma", type=float, default=1.0, help="overlap coefficient (1)")
    parser.add_argument(
        "--policy",
        default="min",
        choices=("min", "linear", "bottleneck", "inverted"),
        help="internal channel policy (default min)",
    )
    parser.add_argument("--spatial", action="store_true", help="split K^H and K^W over 2 layers")
    parser.add_argument("--stride", type=int, default=1, help="stride of the operator (1)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _fmt_kernel(kernel: tuple[int, int]) -> str:
    return f"{kernel[0]}x{kernel[1]}"


def run(args: argparse.Namespace) -> int:
    from convnas.operators.osep_plan import osep_plan

    try:
        plan = osep_plan(
            args.in_channels,
            args.out_channels,
            args.kernel,
            n_sep=args.n_sep,
            gamma=args.gamma,
            policy=args.policy,
            spatial=args.spatial,
            stride=args.stride,
        )
    except ValueError as exc:  # OperatorArgumentError: report it as a bad option
        raise ConfigError(str(exc)) from None
    if args.json:
        print(json.dumps(plan.to_dict(), indent=2))
        return 0
    kh, kw = plan.kernel_size
    print(
        f"osep plan: {plan.in_channels} -> {plan.out_channels}, kernel {kh}x{kw}, "
        f"stride {plan.stride[0]}, N={plan.n_sep}, gamma={plan.gamma:g}, policy={plan.policy}"
        + (", spatial" if plan.spatial else "")
    )
    if plan.candidates:
        tried = ", ".join(f"N={n}: {p}" for n, p in plan.candidates)
        print(f"n_sep=auto evaluated {tried}")
    header = ("layer", "channels", "kernel", "stride", "groups", "ch/group", "pad/drop")
    rows = [(*header, "params", "MACs/px")]
    for layer, macs in zip(plan.layers, plan.layer_macs_per_pixel, strict=True):
        rows.append(
            (
                str(layer.index),
                f"{layer.in_channels}->{layer.out_channels}",
                _fmt_kernel(layer.kernel_size),
                _fmt_kernel(layer.stride),
                str(layer.groups),
                f"{layer.in_per_group}->{layer.out_per_group}",
                f"{layer.in_pad}/{layer.out_drop}",
                f"{layer.params:,}",
                f"{macs:,}",
            )
        )
    rows.append(("total", "", "", "", "", "", "", f"{plan.params:,}", f"{plan.macs_per_pixel:,}"))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    for r in rows:
        print("  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)))
    print("(MACs are multiply-accumulates per output pixel; pad/drop: zero input channels")
    print(" appended / surplus output channels dropped)")
    print(f"continuous optimum (Theorem 1): {plan.continuous_params:,.1f} params")
    dsep = plan.dsep_params
    print(f"dense {kh}x{kw} conv: {plan.dense_params:,} params -> saving {plan.saving:.2f}x")
    print(
        f"depthwise-separable ({kh}x{kw} dw + 1x1): {dsep:,} params -> "
        f"saving {dsep / plan.params:.2f}x"
    )
    return 0
