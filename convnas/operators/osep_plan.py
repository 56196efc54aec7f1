"""The analytic planner of the optimized separable convolution (osep), pure Python.

"Optimized Separable Convolution: Yet Another Efficient Convolution Operator", ICLR 2022
submission (papers/002_*.txt), Algorithm 1 as reconstructed in OPERATORS.md section 3.2.
A dense ``K^H x K^W`` conv is replaced by N grouped convs ``C_1 -> C_2 -> ... -> C_{N+1}``
whose group counts minimise the parameter count under the "volumetric receptive field"
condition ``prod_l n_l >= gamma * C_1`` (``n_l = C_l / g_l``) and ``1 <= g_l <= min(C_l,
C_{l+1})``. The continuous solve (Theorem 1) and its masked re-optimisation are done in exact
rational arithmetic, so the integer group counts never depend on float rounding. Integers
follow rule 6b (round ``n_l`` up, then ``g_l = ceil(C_l / n_l)``); parameters are counted with
the zero-padded layout of non-divisible groups (step 7), built by
:func:`convnas.operators.osep_layout.build_layers`; the plan it returns is an
:class:`~convnas.operators.osep_layout.OSepPlan`. No torch import here: the planner serves the
operator, the CLI and the cost model alike.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

from convnas.errors import OperatorArgumentError
from convnas.layers.checks import positive_int, positive_pair
from convnas.operators.osep_layout import OSepLayer, OSepPlan, build_layers

__all__ = ["POLICIES", "OSepLayer", "OSepPlan", "osep_plan"]

POLICIES = ("min", "linear", "bottleneck", "inverted")


def osep_plan(
    in_channels: int,
    out_channels: int,
    kernel_size: int | tuple[int, int],
    *,
    n_sep: int | str = 2,
    gamma: float = 1.0,
    policy: str = "min",
    spatial: bool = False,
    kernels: Sequence[int | tuple[int, int]] | None = None,
    groups: Sequence[int | None] | None = None,
    stride: int | tuple[int, int] = 1,
) -> OSepPlan:
    """Solve Algorithm 1 of the osep paper (OPERATORS.md section 3.2, rule 6b).

    Args:
        in_channels: ``C_in``.
        out_channels: ``C_out``.
        kernel_size: the replaced kernel, ``K`` or ``(K^H, K^W)``.
        n_sep: N >= 1, or "auto": evaluate the integer plans for N around
            ``N* = ln(gamma C_in C_out K^H K^W / C_mid)`` (``ln(gamma C K^2)`` for equal
            channels), every N from 1 (2 if spatial) to ``2 ceil(N*)``, and keep the one with
            the fewest parameters (ties: fewer MACs, then smaller N).
        gamma: the overlap coefficient of the channel condition, > 0.
        policy: internal width ``C_mid``: "min" (``min(C_in, C_out)``), "linear"
            (``(C_in + C_out) // 2``), "bottleneck" (``max(C_in, C_out) // 4``, at least 1) or
            "inverted" (``4 min(C_in, C_out)``).
        spatial: put ``K^H`` and ``K^W`` on two consecutive layers (the "so-" variant).
        kernels: preset per-layer kernels; they must keep the receptive field,
            ``sum_l K_l^H = K^H + N - 1`` (and the same for W).
        groups: preset ("masked") group counts, one entry per layer, None where free.
        stride: of the whole operator; it goes on the layer carrying ``K^H`` (``K^W``).

    Raises:
        OperatorArgumentError: any argument out of range; the message names the rule.
    """
    cin = positive_int("in_channels", in_channels)
    cout = positive_int("out_channels", out_channels)
    kernel = positive_pair("kernel_size", kernel_size)
    strides = positive_pair("stride", stride)
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not gamma > 0:
        raise OperatorArgumentError(f"gamma must be a number > 0, but got gamma={gamma!r}")
    if not math.isfinite(gamma):
        raise OperatorArgumentError(f"gamma must be finite, but got gamma={gamma!r}")
    if policy not in POLICIES:
        raise OperatorArgumentError(f"policy must be one of {POLICIES}, but got {policy!r}")
    if not isinstance(spatial, bool):
        raise OperatorArgumentError(f"spatial must be a bool, but got spatial={spatial!r}")
    request = (cin, cout, kernel, float(gamma), policy, spatial, strides)
    if n_sep == "auto":
        if kernels is not None or groups is not None:
            raise OperatorArgumentError(
                "n_sep='auto' chooses N itself, so it takes no preset kernels or groups; "
                "give an int n_sep with them"
            )
        c_mid = internal_channels(cin, cout, policy)
        plans = [
            _plan(*request, n, None, None)
            for n in auto_candidates(cin, cout, c_mid, kernel, float(gamma), spatial)
        ]
        best = min(plans, key=lambda p: (p.params, p.macs_per_pixel, p.n_sep))
        return dataclasses.replace(best, candidates=tuple((p.n_sep, p.params) for p in plans))
    if isinstance(n_sep, bool) or not isinstance(n_sep, int) or n_sep < 1:
        raise OperatorArgumentError(f"n_sep must be an int >= 1 or 'auto', but got {n_sep!r}")
    return _plan(*request, n_sep, kernels, groups)


def _plan(
    cin: int,
    cout: int,
    kernel: tuple[int, int],
    gamma: float,
    policy: str,
    spatial: bool,
    stride: tuple[int, int],
    n: int,
    kernels: Sequence[Any] | None,
    groups: Sequence[int | None] | None,
) -> OSepPlan:
    c_mid = internal_channels(cin, cout, policy)
    channels = (cin, *([c_mid] * (n - 1)), cout)
    ks = resolve_kernels(kernel, n, spatial, kernels)
    fixed = validate_groups(channels, groups)
    k = [kh * kw for kh, kw in ks]
    free, ratio = _masked_solve(channels, k, Fraction(gamma), fixed)
    n_cont, g = [], []
    for i in range(n):
        if i in fixed:
            n_cont.append(channels[i] / fixed[i])
            g.append(fixed[i])
            continue
        unit = channels[i + 1] * k[i]
        estimate = math.exp(_log(ratio) / len(free)) / unit
        n_up = _exact_ceil_root(ratio, len(free), unit, estimate)  # rule 6b: n up, then g
        n_cont.append(estimate)
        g.append(min(-(-channels[i] // n_up), channels[i], channels[i + 1]))
    layers = build_layers(channels, ks, g, stride)
    theorem1 = _log(Fraction(gamma) * cin) + sum(math.log(channels[i + 1] * k[i]) for i in range(n))
    return OSepPlan(
        in_channels=cin,
        out_channels=cout,
        kernel_size=kernel,
        stride=stride,
        n_sep=n,
        gamma=gamma,
        policy=policy,
        spatial=spatial,
        channels=channels,
        kernels=ks,
        groups=tuple(g),
        channels_per_group=tuple(layer.in_per_group for layer in layers),
        n_continuous=tuple(n_cont),
        layer_params=tuple(layer.params for layer in layers),
        params=sum(layer.params for layer in layers),
        layer_macs_per_pixel=tuple(layer.params * layer.pixels_per_output for layer in layers),
        macs_per_pixel=sum(layer.params * layer.pixels_per_output for layer in layers),
        continuous_params=n * math.exp(theorem1 / n),
        dense_params=cin * cout * kernel[0] * kernel[1],
        layers=layers,
    )


def _log(value: Fraction) -> float:
    return math.log(value.numerator) - math.log(value.denominator)


def _masked_solve(
    channels: tuple[int, ...], k: list[int], gamma: Fraction, fixed: dict[int, int]
) -> tuple[list[int], Fraction]:
    """Steps 3-5, iterated to a fixed point; pins layers in ``fixed`` (mutated).

    Returns the free layers and ``R = Q prod_{j in F} C_{j+1} k_j``, so that every free layer
    has ``n_l = R^(1/|F|) / (C_{l+1} k_l)``. All comparisons are exact: ``n_l > C_l`` is
    ``R > (C_l C_{l+1} k_l)^|F|``, and ``C_l / n_l > m`` is ``R m^|F| < (C_l C_{l+1} k_l)^|F|``.
    """
    while True:
        free = [i for i in range(len(k)) if i not in fixed]
        if not free:
            return free, Fraction(0)
        ratio = gamma * channels[0]
        for j, g in fixed.items():
            ratio /= Fraction(channels[j], g)
        for i in free:
            ratio *= channels[i + 1] * k[i]
        f = len(free)
        pins = {}
        for i in free:
            bound = (channels[i] * channels[i + 1] * k[i]) ** f
            widest = min(channels[i], channels[i + 1])
            if ratio > bound:  # C_l / n_l < 1
                pins[i] = 1
            elif ratio * widest**f < bound:  # C_l / n_l > min(C_l, C_{l+1})
                pins[i] = widest
        if not pins:
            return free, ratio
        fixed.update(pins)


def _exact_ceil_root(ratio: Fraction, f: int, unit: int, estimate: float) -> int:
    """The smallest int m >= 1 with ``(m * unit)^f >= ratio``, i.e. ``ceil(ratio^(1/f)/unit)``."""
    m = max(1, math.floor(estimate) - 1)
    while m > 1 and ((m - 1) * unit) ** f >= ratio:
        m -= 1
    while (m * unit) ** f < ratio:
        m += 1
    return m


def internal_channels(in_channels: int, out_channels: int, policy: str) -> int:
    """``C_mid`` of a channel policy (step 1); fractional widths round down, at least 1."""
    if policy == "min":
        return min(in_channels, out_channels)
    if policy == "linear":
        return (in_channels + out_channels) // 2
    if policy == "bottleneck":
        return max(1, max(in_channels, out_channels) // 4)
    return 4 * min(in_channels, out_channels)


def auto_candidates(
    cin: int, cout: int, c_mid: int, kernel: tuple[int, int], gamma: float, spatial: bool
) -> range:
    """The N that ``n_sep="auto"`` evaluates: from 1 (2 if spatial) to ``max(2, 2 ceil(N*))``.

    With ``C_2 = ... = C_N = C_mid`` Theorem 1 gives ``f(N) = N C_mid A^(1/N)`` with
    ``A = gamma C_in C_out K^H K^W / C_mid``, minimal at ``N* = ln A`` (``ln(gamma C K^2)``
    for equal channels). The integer plans do not follow that curve closely: the K x K layer
    gets pinned to depthwise and the cost is flat, so the cheapest N often lies several steps
    below or above ``N*``; the window is wide because a plan costs microseconds.
    """
    area = gamma * cin * cout * kernel[0] * kernel[1] / c_mid
    n_star = math.log(area) if area > 1 else 0.0
    return range(2 if spatial else 1, max(2, 2 * math.ceil(n_star)) + 1)


def resolve_kernels(
    kernel: tuple[int, int], n: int, spatial: bool, preset: Sequence[Any] | None
) -> tuple[tuple[int, int], ...]:
    """Step 2: the per-layer kernels, placed at the 1-based layer ``floor(N/2)`` or preset."""
    if preset is not None:
        if isinstance(preset, (str, bytes)) or len(preset) != n:
            raise OperatorArgumentError(
                f"kernels must hold one kernel per layer (n_sep={n}), but got {preset!r}"
            )
        ks = tuple(positive_pair(f"kernels[{i}]", v) for i, v in enumerate(preset))
        for axis, name in enumerate(("height", "width")):
            total = sum(kk[axis] for kk in ks)
            if total != kernel[axis] + n - 1:
                raise OperatorArgumentError(
                    f"preset kernels must keep the receptive field, sum of kernel {name}s == "
                    f"K + N - 1 = {kernel[axis] + n - 1}, but got {total} for kernels={ks}"
                )
        return ks
    if n == 1:
        if spatial:
            raise OperatorArgumentError(
                "spatial=True splits K^H and K^W over two layers, so it needs n_sep >= 2, "
                "but got n_sep=1"
            )
        return (kernel,)
    layer_ks = [[1, 1] for _ in range(n)]
    a = n // 2 - 1  # 0-based index of the 1-based layer floor(N/2)
    if spatial:
        layer_ks[a][0], layer_ks[a + 1][1] = kernel
    else:
        layer_ks[a] = list(kernel)
    return tuple((kh, kw) for kh, kw in layer_ks)


def validate_groups(
    channels: tuple[int, ...], preset: Sequence[int | None] | None
) -> dict[int, int]:
    """Step 3: the preset ("masked") group counts as ``{layer: g}``, checked."""
    n = len(channels) - 1
    if preset is None:
        return {}
    if isinstance(preset, (str, bytes)) or len(preset) != n:
        raise OperatorArgumentError(
            f"groups must hold one entry (an int or None) per layer (n_sep={n}), got {preset!r}"
        )
    fixed = {}
    for i, g in enumerate(preset):
        if g is None:
            continue
        widest = min(channels[i], channels[i + 1])
        if not isinstance(g, int) or isinstance(g, bool) or not 1 <= g <= widest:
            raise OperatorArgumentError(
                f"1 <= groups[{i}] <= min(C_l, C_l+1) = {widest} must hold, but got {g!r}"
            )
        fixed[i] = g
    return fixed
