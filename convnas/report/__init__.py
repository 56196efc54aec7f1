"""The run report: ``runs/NAME/report.html``, one self-contained HTML file.

Sections: summary (run, strategy, dataset, trials complete/failed, wall time, versions), the
Pareto front (accuracy against each cost; a scatter matrix when there are more than two costs),
the hypervolume over trials, operator usage among the Pareto members, the alpha evolution of a
DARTS run, and a sortable table of trials linking to their architecture files.

The data is built first as plain objects (:mod:`convnas.report.data`, tested on its own) and then
drawn with matplotlib (:mod:`convnas.report.render`, imported lazily).

Example:
    >>> path = write_report("runs/quickstart")  # doctest: +SKIP
"""

from __future__ import annotations

from convnas.report.data import ReportData, build_report_data
from convnas.report.pareto import dominates, hypervolume, non_dominated
from convnas.report.render import render_html, render_report, write_report

__all__ = [
    "ReportData",
    "build_report_data",
    "dominates",
    "hypervolume",
    "non_dominated",
    "render_html",
    "render_report",
    "write_report",
]
