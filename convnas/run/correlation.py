"""Rank correlation of a proxy with stand-alone accuracy, with bootstrap intervals.

Kendall's tau-b and Spearman's rho come from ``scipy.stats``; the confidence intervals are
percentiles of a seeded paired bootstrap drawn by ``numpy``'s Generator.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from convnas.errors import ConfigError

__all__ = ["LABELS", "Correlation", "correlation", "correlation_dict", "finite_or_none"]

LABELS = {
    "one_shot": "one-shot (supernet) accuracy",
    "params": "params (trainable)",
    "macs": "MACs / image",
    "noise_ceiling": "noise ceiling (seed A vs seed B retrain)",
}


@dataclass(frozen=True)
class Correlation:
    """Rank correlation of a proxy with stand-alone accuracy over ``n`` architectures.

    ``*_ci`` are percentile intervals of a seeded paired bootstrap (``resamples`` usable
    resamples: those where neither side is constant); NaN where undefined.
    """

    name: str
    n: int
    kendall_tau: float
    kendall_ci: tuple[float, float]
    kendall_p: float
    spearman_rho: float
    spearman_ci: tuple[float, float]
    spearman_p: float
    resamples: int
    confidence: float


def _statistics(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float]:
    from scipy.stats import kendalltau, spearmanr

    with warnings.catch_warnings():  # constant input: NaN, which the caller reports as such
        warnings.simplefilter("ignore")
        tau = kendalltau(x, y)
        rho = spearmanr(x, y)
    return float(tau.statistic), float(tau.pvalue), float(rho.statistic), float(rho.pvalue)


def correlation(
    name: str,
    x: Sequence[float],
    y: Sequence[float],
    *,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Correlation:
    """Kendall's tau-b and Spearman's rho of ``x`` against ``y`` (``scipy.stats``) with
    percentile confidence intervals from a paired bootstrap drawn by ``numpy``'s Generator."""
    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if xs.shape != ys.shape or xs.ndim != 1:
        raise ConfigError(
            f"{name}: x and y must be equally long vectors, got {xs.shape}, {ys.shape}"
        )
    tau, tau_p, rho, rho_p = _statistics(xs, ys)
    rng = np.random.default_rng(seed)
    taus, rhos = [], []
    for rows in rng.integers(0, len(xs), size=(resamples, len(xs))):
        bx, by = xs[rows], ys[rows]
        if np.ptp(bx) == 0 or np.ptp(by) == 0:
            continue  # rank correlation undefined on a constant resample
        t, _, r, _ = _statistics(bx, by)
        taus.append(t)
        rhos.append(r)
    tails = [(1 - confidence) / 2, (1 + confidence) / 2]

    def interval(values: list[float]) -> tuple[float, float]:
        if not values:
            return (math.nan, math.nan)
        lo, hi = np.quantile(values, tails)
        return (float(lo), float(hi))

    return Correlation(
        name, len(xs), tau, interval(taus), tau_p, rho, interval(rhos), rho_p, len(taus), confidence
    )


def finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def correlation_dict(c: Correlation) -> dict[str, Any]:
    """A :class:`Correlation` as JSON-safe values (NaN -> None)."""
    out: dict[str, Any] = {"label": LABELS.get(c.name, c.name)}
    for key, value in asdict(c).items():
        if isinstance(value, (tuple, list)):
            out[key] = [finite_or_none(float(v)) for v in value]
        elif isinstance(value, float):
            out[key] = finite_or_none(value)
        else:
            out[key] = value
    return out
