"""The run report: ``runs/NAME/report.html``, one self-contained HTML file.

Sections: summary (run, strategy, dataset, trials complete/failed, wall time, versions), the
Pareto front (accuracy against each cost; a scatter matrix when there are more than two costs),
the hypervolume over trials, operator usage among the Pareto members, the alpha evolution of a
DARTS run, and a sortable table of trials linking to their architecture files.

The data is built first as plain objects (:mod:`convnas.report_data`, tested on its own) and then
drawn with matplotlib (:mod:`convnas.report_render`, imported lazily).

Hypervolume (:func:`hypervolume`): objectives are turned into minimisation (accuracy -> -accuracy),
scaled to [0, 1] by the smallest and largest value over all feasible complete trials, and measured
against the reference point 1.1 in every dimension; the series divides by 1.1^d, so it is the share
of the box [0, 1.1]^d dominated by the front (0..1). The computation is exact: a sweep over the
last objective that sums slabs of (d-1)-dimensional hypervolumes ("hypervolume by slicing
objectives"), with the 2-D case solved by sorting; non-dominated filtering at every level keeps
it fast for up to 4 objectives and a few hundred points.

Example:
    >>> path = write_report("runs/quickstart")  # doctest: +SKIP
"""

from __future__ import annotations

import pathlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

from convnas.io import atomic_write_text

if TYPE_CHECKING:
    from convnas.report_data import ReportData

__all__ = [
    "build_report_data",
    "hypervolume",
    "non_dominated",
    "render_report",
    "write_report",
]


def _dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """Minimisation: ``a`` is nowhere worse than ``b`` and better somewhere."""
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(
        x < y for x, y in zip(a, b, strict=True)
    )


def non_dominated(points: Sequence[Sequence[float]]) -> list[int]:
    """Indices of the points no other point dominates (minimisation; duplicates all kept)."""
    return [i for i, p in enumerate(points) if not any(_dominates(q, p) for q in points)]


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


def build_report_data(run_dir: str | pathlib.Path) -> ReportData:
    """Read a run directory into plain data objects (see :mod:`convnas.report_data`)."""
    from convnas.report_data import build_report_data as build

    return build(run_dir)


def render_report(data: ReportData, path: str | pathlib.Path) -> pathlib.Path:
    """Draw ``data`` and write the HTML page to ``path`` (atomically)."""
    from convnas.report_render import render_html

    path = pathlib.Path(path)
    atomic_write_text(path, render_html(data))
    return path


def write_report(
    run_dir: str | pathlib.Path, path: str | pathlib.Path | None = None
) -> pathlib.Path:
    """Build and write the report of ``run_dir`` (default ``run_dir/report.html``)."""
    run_dir = pathlib.Path(run_dir)
    return render_report(build_report_data(run_dir), path or run_dir / "report.html")
