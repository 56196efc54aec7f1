"""Dominance and exact hypervolume, for the report and the benchmarks.

Hypervolume (:func:`hypervolume`): objectives are turned into minimisation (accuracy -> -accuracy),
scaled to [0, 1] by the smallest and largest value over all feasible complete trials, and measured
against the reference point 1.1 in every dimension; the series divides by 1.1^d, so it is the share
of the box [0, 1.1]^d dominated by the front (0..1). The computation is exact: a sweep over the
last objective that sums slabs of (d-1)-dimensional hypervolumes ("hypervolume by slicing
objectives"), with the 2-D case solved by sorting; non-dominated filtering at every level keeps
it fast for up to 4 objectives and a few hundred points.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["dominates", "hypervolume", "non_dominated"]


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """Minimisation: ``a`` is nowhere worse than ``b`` and better somewhere."""
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(
        x < y for x, y in zip(a, b, strict=True)
    )


def non_dominated(points: Sequence[Sequence[float]]) -> list[int]:
    """Indices of the points no other point dominates (minimisation; duplicates all kept)."""
    return [i for i, p in enumerate(points) if not any(dominates(q, p) for q in points)]


def hypervolume(points: Sequence[Sequence[float]], reference: Sequence[float]) -> float:
    """Exact hypervolume dominated by ``points`` (minimisation) and bounded by ``reference``.

    Points not strictly better than the reference in every objective add nothing.
    """
    ref = tuple(float(r) for r in reference)
    pts = [tuple(float(v) for v in p) for p in points]
    pts = [p for p in pts if len(p) == len(ref) and all(v < r for v, r in zip(p, ref, strict=True))]
    return _hv(pts, ref)


def _hv(points: list[tuple[float, ...]], ref: tuple[float, ...]) -> float:
    if not points:
        return 0.0
    unique = sorted(set(points))
    points = [unique[i] for i in non_dominated(unique)]
    if len(ref) == 1:
        return ref[0] - min(p[0] for p in points)
    if len(ref) == 2:
        total, best_y = 0.0, ref[1]
        for x, y in sorted(points):  # ascending x; on the front y then descends
            if y < best_y:
                total += (ref[0] - x) * (best_y - y)
                best_y = y
        return total
    points.sort(key=lambda p: p[-1])
    total = 0.0
    for i, p in enumerate(points):
        upper = points[i + 1][-1] if i + 1 < len(points) else ref[-1]
        if upper > p[-1]:
            total += (upper - p[-1]) * _hv([q[:-1] for q in points[: i + 1]], ref[:-1])
    return total
