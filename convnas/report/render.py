"""Render a :class:`~convnas.report.data.ReportData` as one self-contained HTML file.

Plots are drawn with matplotlib's object API (``matplotlib.figure.Figure``, Agg canvas; pyplot and
the global backend are never touched) and embedded as base64 PNG ``data:`` URIs; the trials table
sorts with a few lines of inline JavaScript. The page loads nothing from elsewhere.
"""

from __future__ import annotations

import base64
import html
import io
import math
import pathlib
from typing import Any, TypeVar

from convnas.io import atomic_write_text
from convnas.report.data import ReportData, build_report_data
from convnas.report.ranking import ranking_png
from convnas.report.tables import Table

__all__ = ["figures", "render_html", "render_report", "write_report"]

T = TypeVar("T")
PARETO, OTHER, FRONT, INFEASIBLE = "#d62728", "#9aa5b1", "#1f77b4", "#ff7f0e"
WARNING_ROW = ' class="warning"'

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;max-width:1200px;
color:#1d2733;padding:0 1em}
h1{margin-bottom:.2em}h2{border-bottom:2px solid #dde3ea;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;font-size:13px;margin:.5em 0}
td,th{border:1px solid #dde3ea;padding:3px 7px;text-align:right;white-space:nowrap}
th{background:#f1f4f8;cursor:pointer;user-select:none}
th.asc:after{content:" \\25B2"}th.desc:after{content:" \\25BC"}
td.text{text-align:left;white-space:normal;max-width:420px}
table.summary td{text-align:left}table.summary td:first-child{font-weight:600}
tr.pareto td{background:#fff4f4}
tr.warning td{background:#fff3cd;color:#6b4e00;font-weight:600}
.alert{background:#fff3cd;color:#6b4e00;padding:.4em .7em;border-left:4px solid #e0a800}
pre.genotype{background:#f6f8fa;padding:.6em;white-space:pre-wrap;word-break:break-word}
img{max-width:100%;border:1px solid #eef1f5;margin:.5em 0}
.note{color:#5b6b7c;font-style:italic}
"""

SORT_JS = """
document.querySelectorAll("table.sortable").forEach(function(t){
  t.querySelectorAll("th").forEach(function(th,i){
    th.addEventListener("click",function(){
      var asc=!th.classList.contains("asc");
      t.querySelectorAll("th").forEach(function(h){h.classList.remove("asc","desc");});
      th.classList.add(asc?"asc":"desc");
      var body=t.tBodies[0],rows=Array.prototype.slice.call(body.rows);
      rows.sort(function(a,b){
        var x=a.cells[i].dataset.v,y=b.cells[i].dataset.v;
        var nx=parseFloat(x),ny=parseFloat(y),r;
        if(!isNaN(nx)&&!isNaN(ny)){r=nx-ny;}else if(!isNaN(nx)){r=-1;}else if(!isNaN(ny)){r=1;}
        else{r=String(x).localeCompare(String(y));}
        return asc?r:-r;});
      rows.forEach(function(r){body.appendChild(r);});
    });
  });
});
"""


def _present(value: T | None, what: str) -> T:
    """``value``, which the caller only asks for when the data has it."""
    if value is None:
        raise ValueError(f"the report data has no {what}")
    return value


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _si(value: float, _pos: Any = None) -> str:
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.3g}"


def _pareto_png(data: ReportData) -> bytes:
    from matplotlib.ticker import FuncFormatter

    plots = data.pareto_plots
    fig = _figure(4.6 * min(len(plots), 3), 3.8 * math.ceil(len(plots) / 3))
    axes = fig.subplots(math.ceil(len(plots) / 3), min(len(plots), 3), squeeze=False).ravel()
    for ax, plot in zip(axes, plots, strict=False):
        rest = [p for p in plot.points if not p.pareto and p.feasible]
        best = [p for p in plot.points if p.pareto]
        ax.scatter([p.x for p in rest], [p.y for p in rest], c=OTHER, s=18, label="other trials")
        ax.scatter(
            [p.x for p in best],
            [p.y for p in best],
            c=PARETO,
            s=30,
            label="Pareto (all objectives)",
        )
        ax.step(
            [f[0] for f in plot.front],
            [f[1] for f in plot.front],
            where="post",
            c=FRONT,
            lw=1.2,
            label=f"2-D front ({plot.x_metric})",
        )
        for p in plot.points:
            if p.label and p.feasible:
                ax.annotate(
                    p.label, (p.x, p.y), fontsize=7, xytext=(3, 3), textcoords="offset points"
                )
        _infeasible(ax, [p for p in plot.points if not p.feasible])
        ax.set_xlabel(plot.x_label)
        ax.set_ylabel(plot.y_label)
        ax.xaxis.set_major_formatter(FuncFormatter(_si))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    for ax in axes[len(plots) :]:
        ax.set_visible(False)
    return _png(fig)


def _infeasible(ax: Any, points: list[Any]) -> None:
    """Infeasible trials: crosses at their cost, on the bottom edge when never trained."""
    if not points:
        return
    from matplotlib.transforms import blended_transform_factory

    edge = blended_transform_factory(ax.transData, ax.transAxes)
    measured = [p for p in points if math.isfinite(p.y)]
    unmeasured = [p for p in points if not math.isfinite(p.y)]
    style = {"c": INFEASIBLE, "marker": "x", "s": 28}
    if measured:
        ax.scatter([p.x for p in measured], [p.y for p in measured], **style)
    if unmeasured:
        ax.scatter([p.x for p in unmeasured], [0.03] * len(unmeasured), transform=edge, **style)
    ax.scatter([], [], label="infeasible (constraint violated, not trained)", **style)
    for p in points:
        y, transform = (p.y, ax.transData) if math.isfinite(p.y) else (0.03, edge)
        if p.label:
            ax.annotate(
                p.label,
                (p.x, y),
                xycoords=transform,
                fontsize=7,
                color=INFEASIBLE,
                xytext=(3, 3),
                textcoords="offset points",
            )


def _matrix_png(data: ReportData) -> bytes:
    from matplotlib.ticker import FuncFormatter

    m = _present(data.scatter_matrix, "scatter matrix")
    n = len(m.metrics)
    fig = _figure(2.4 * n, 2.4 * n)
    axes = fig.subplots(n, n, squeeze=False)
    colors = [PARETO if p else OTHER for p in m.pareto]
    for i, yi in enumerate(m.metrics):
        for j, xj in enumerate(m.metrics):
            ax = axes[i][j]
            if i == j:
                ax.hist(m.values[xj], bins=12, color=OTHER)
            else:
                ax.scatter(m.values[xj], m.values[yi], c=colors, s=10)
            ax.xaxis.set_major_formatter(FuncFormatter(_si))
            ax.yaxis.set_major_formatter(FuncFormatter(_si))
            ax.tick_params(labelsize=7)
            if i == n - 1:
                ax.set_xlabel(m.labels[j], fontsize=8)
            if j == 0:
                ax.set_ylabel(m.labels[i], fontsize=8)
    return _png(fig)


def _hypervolume_png(data: ReportData) -> bytes:
    hv = _present(data.hypervolume, "hypervolume")
    fig = _figure(7, 3.2)
    ax = fig.subplots()
    ax.step(hv.trials, hv.values, where="post", c=FRONT)
    ax.scatter(hv.trials, hv.values, c=FRONT, s=10)
    ax.set_xlabel("trial number")
    ax.set_ylabel("normalised hypervolume")
    ax.set_ylim(0, max(1e-3, max(hv.values) * 1.1))
    ax.grid(alpha=0.3)
    return _png(fig)


def _usage_png(data: ReportData) -> bytes:
    usage = _present(data.operator_usage, "operator usage")
    ops = list(usage.counts)[::-1]
    fig = _figure(7, 0.8 + 0.35 * len(ops))
    ax = fig.subplots()
    bars = ax.barh(ops, [usage.counts[o] for o in ops], color=FRONT)
    for bar, op in zip(bars, ops, strict=True):
        ax.annotate(
            f" in {usage.member_counts[op]}/{usage.members}",
            (bar.get_width(), bar.get_y() + bar.get_height() / 2),
            va="center",
            fontsize=8,
        )
    ax.set_xlabel(f"decisions choosing the operator, over {usage.members} result architecture(s)")
    ax.margins(x=0.15)
    return _png(fig)


def candidate_colors(data: ReportData) -> dict[str, Any]:
    """One colour per candidate name, the same in every subplot (tab10, tab20 beyond 10)."""
    from matplotlib import colormaps

    names = list(dict.fromkeys(c for s in data.alphas for c in s.candidates))
    cmap = colormaps["tab10" if len(names) <= 10 else "tab20"]
    return {name: cmap(i % cmap.N) for i, name in enumerate(names)}


def _alphas_png(data: ReportData) -> bytes:
    from matplotlib.ticker import MaxNLocator

    series = data.alphas
    colors = candidate_colors(data)
    cols = min(4, len(series))
    rows = math.ceil(len(series) / cols)
    fig = _figure(3.2 * cols, 2.3 * rows + 0.6)
    axes = fig.subplots(rows, cols, squeeze=False, sharey=True).ravel()
    for ax, s in zip(axes, series, strict=False):
        for name, probs in zip(s.candidates, s.probabilities, strict=True):
            ax.plot(s.epochs, probs, marker="o", ms=2, label=name, color=colors[name])
        ax.axhline(1 / len(s.candidates), color="#555555", ls="--", lw=0.8, label="1/K (uniform)")
        ax.set_title(s.decision, fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in axes[len(series) :]:
        ax.set_visible(False)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper center", ncols=min(len(labels), 6), fontsize=8)
    fig.supxlabel("epoch", fontsize=9)
    fig.supylabel("softmax(alpha)", fontsize=9)
    return _png(fig)


def _cell_positions(steps: int) -> dict[int | str, tuple[float, float]]:
    pos: dict[int | str, tuple[float, float]] = {0: (0.0, 1.0), 1: (0.0, -1.0)}
    for i in range(steps):
        pos[i + 2] = (1.3 + 1.3 * i, 0.6 if i % 2 == 0 else -0.6)
    pos["out"] = (1.3 + 1.3 * steps, 0.0)
    return pos


def _node_name(node: int | str) -> str:
    """DARTS' names: inputs c_{k-2}, c_{k-1}; intermediate nodes 0.. (input index - 2)."""
    if not isinstance(node, int):
        return "c_{k}"
    return {0: "c_{k-2}", 1: "c_{k-1}"}.get(node, str(node - 2))


def _cells_png(data: ReportData) -> bytes:
    cells = data.cells
    fig = _figure(8, 3.2 * len(cells))
    axes = fig.subplots(len(cells), 1, squeeze=False).ravel()
    for ax, cell in zip(axes, cells, strict=True):
        pos = _cell_positions(cell.steps)
        arrow = {"arrowstyle": "-|>", "shrinkA": 14, "shrinkB": 14, "lw": 1.0}
        for k, (src, node, op) in enumerate(cell.edges):
            (x1, y1), (x2, y2) = pos[src], pos[node]
            rad = 0.25 if k % 2 == 0 else -0.25
            ax.annotate(
                "",
                (x2, y2),
                xytext=(x1, y1),
                arrowprops={**arrow, "color": FRONT, "connectionstyle": f"arc3,rad={rad}"},
            )
            mx, my = (x1 + x2) / 2 + rad / 2 * (y2 - y1), (y1 + y2) / 2 - rad / 2 * (x2 - x1)
            ax.text(
                mx,
                my,
                op,
                fontsize=7,
                ha="center",
                va="center",
                color="#1d2733",
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8},
            )
        for node in cell.concat:
            (x1, y1), (x2, y2) = pos[node], pos["out"]
            ax.annotate(
                "", (x2, y2), xytext=(x1, y1), arrowprops={**arrow, "color": OTHER, "ls": "--"}
            )
        for name, (x, y) in pos.items():
            inner = isinstance(name, int) and name >= 2
            ax.text(
                x,
                y,
                _node_name(name),
                ha="center",
                va="center",
                fontsize=9,
                bbox={
                    "boxstyle": "round,pad=0.35",
                    "ec": "#1d2733",
                    "fc": "#dbe9f6" if inner else "#f3e1c8",
                },
            )
        ax.set_title(f"{cell.kind} cell", fontsize=10)
        ax.set_xlim(-0.6, pos["out"][0] + 0.6)
        ax.set_ylim(-1.5, 1.5)
        ax.set_axis_off()
    return _png(fig)


def _curve_png(data: ReportData) -> bytes:
    from matplotlib.ticker import MaxNLocator

    curve = data.supernet_curve
    fig = _figure(7, 3)
    ax = fig.subplots()
    for key in ("train_accuracy", "val_accuracy"):
        if key in curve:
            ax.plot(curve["epoch"], curve[key], marker="o", label=key.replace("_", " "))
    ax.set_xlabel("epoch")
    ax.set_ylabel("supernet accuracy")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def figures(data: ReportData) -> dict[str, bytes]:
    """PNG bytes of every plot the data supports, keyed by section."""
    out: dict[str, bytes] = {}
    if data.pareto_plots:
        out["pareto"] = _pareto_png(data)
    if data.scatter_matrix is not None:
        out["matrix"] = _matrix_png(data)
    if data.hypervolume is not None:
        out["hypervolume"] = _hypervolume_png(data)
    if data.operator_usage is not None and data.operator_usage.counts:
        out["usage"] = _usage_png(data)
    if data.alphas:
        out["alphas"] = _alphas_png(data)
    if data.cells:
        out["cells"] = _cells_png(data)
    if len(data.supernet_curve.get("epoch", ())) > 0:
        out["curve"] = _curve_png(data)
    if data.ranking is not None:
        out["ranking"] = ranking_png(data.ranking)
    return out


def _img(png: bytes, alt: str) -> str:
    encoded = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{encoded}">'


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return '<td data-v="">-</td>'
        text = f"{value:.4f}" if abs(value) < 10 and value != int(value) else f"{value:,.0f}"
        return f'<td data-v="{value!r}">{text}</td>'
    if isinstance(value, int):
        return f'<td data-v="{value}">{value}</td>'
    text = html.escape(str(value))
    return f'<td class="text" data-v="{text}">{text}</td>'


def _table(table: Table, table_id: str) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.columns)
    body = []
    for row, link in zip(table.rows, table.links, strict=True):
        cells = [_cell(v) for v in row]
        if link:
            href = html.escape(link, quote=True)
            cells[0] = cells[0].replace(">", f'><a href="{href}">', 1).replace("</td>", "</a></td>")
        css = ' class="pareto"' if "yes" in row[2:3] else ""
        body.append(f"<tr{css}>{''.join(cells)}</tr>")
    return (
        f'<table class="sortable" id="{table_id}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def _section(section_id: str, title: str, body: str) -> str:
    return f'<section id="{section_id}"><h2>{html.escape(title)}</h2>{body}</section>'


def _note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def render_html(data: ReportData) -> str:
    """The complete HTML page of the report."""
    figs = figures(data)
    summary = "".join(
        f"<tr{WARNING_ROW if k == 'warning' else ''}><td>{html.escape(k)}</td>"
        f"<td>{html.escape(v)}</td></tr>"
        for k, v in data.summary
    )
    sections = [_section("summary", "Summary", f'<table class="summary">{summary}</table>')]
    if "pareto" in figs:
        labels = "operators" if data.operator_comparison is not None else "numbers are trials"
        body = _note(
            f"Accuracy against each cost. Red: Pareto-optimal over all objectives "
            f"({labels}); blue: the 2-D front of that pair; orange crosses: infeasible trials "
            f"(a constraint violated, not trained; on the bottom edge, they have no accuracy). "
            f"MACs are multiply-accumulates per image, not 2xMACs."
        ) + _img(figs["pareto"], "Pareto front")
        if "matrix" in figs:
            body += _note(
                "Scatter matrix of all objectives over the feasible trials (red: Pareto)."
            ) + _img(figs["matrix"], "scatter matrix")
    else:
        body = _note(
            f"not applicable: the {data.strategy} strategy returns one architecture, not a front"
            if data.strategy == "darts"
            else "no complete trials yet"
        )
    sections.append(_section("pareto", "Pareto front", body))
    if "hypervolume" in figs:
        hv = _present(data.hypervolume, "hypervolume")
        body = _note(
            f"Objectives {', '.join(hv.objectives)} as minimisation (accuracy negated), scaled to "
            f"[0, 1] by their range over feasible trials; reference point {hv.reference} in each; "
            f"shown as a share of the box [0, {hv.reference}]^{len(hv.objectives)}."
        ) + _img(figs["hypervolume"], "hypervolume over trials")
    else:
        body = _note("not applicable: hypervolume needs a multi-objective trial history")
    sections.append(_section("hypervolume", "Hypervolume over trials", body))
    if "usage" in figs:
        body = _img(figs["usage"], "operator usage")
    else:
        body = _note("no result architectures yet")
    sections.append(_section("operators", "Operator usage among Pareto members", body))
    if "alphas" in figs:
        body = f'<p class="alert">{html.escape(data.alphas_note)}</p>' if data.alphas_note else ""
        body += _note(
            "softmax(alpha) of every decision after each epoch; dashed: 1/K, the uniform "
            "distribution over the K candidates."
        ) + _img(figs["alphas"], "alpha evolution")
        if "curve" in figs:
            body += _img(figs["curve"], "supernet accuracy")
        if data.genotype:
            caveat = " (from near-uniform alphas: not a finding)" if data.alphas_note else ""
            body += f"<h3>Derived architecture{caveat}</h3>" + _note(
                "In the notation of the DARTS code base (inputs: 0 = c_{k-2}, 1 = c_{k-1}, "
                "j >= 2 = intermediate node j-2)."
            )
            body += f'<pre class="genotype">{html.escape(data.genotype)}</pre>'
        if "cells" in figs:
            body += _img(figs["cells"], "normal and reduction cells")
    else:
        body = _note("not applicable: alphas exist only in DARTS runs")
    sections.append(_section("alphas", "Alpha evolution (DARTS)", body))
    if data.strategy != "darts" and "curve" in figs:
        body = _note(
            "Loss and accuracy of the paths sampled in each epoch of one-shot training "
            "(supernet_metrics.csv)."
        ) + _img(figs["curve"], "supernet training")
        sections.append(_section("supernet", "Supernet training", body))
    if data.ranking is not None:
        body = _note(data.ranking.note) + _table(data.ranking.table, "ranking")
        body += _img(figs["ranking"], "one-shot against stand-alone accuracy")
        sections.append(_section("ranking", "Ranking fidelity", body))
    if data.operator_comparison is not None:
        body = _note(
            "Each trial uses one operator everywhere: the operators side by side, best accuracy "
            "first; params trainable, MACs per image (not 2xMACs), training memory at the "
            "configured memory batch size."
        ) + _table(data.operator_comparison, "comparison")
        sections.append(_section("comparison", "Operator comparison", body))
    tables = "".join(
        f"<h3>{html.escape(title)}</h3>" + _table(t, f"table{i}")
        for i, (title, t) in enumerate(data.tables)
    )
    body = _note(
        "Click a header to sort. Linked names open the architecture file; MACs are "
        "multiply-accumulates, not 2xMACs."
    ) + (tables or _note("no trials yet"))
    sections.append(_section("trials", "Trials", body))
    title = f"convnas report: {data.run_name}"
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>{''.join(sections)}<script>{SORT_JS}</script></body></html>\n"
    )


def render_report(data: ReportData, path: str | pathlib.Path) -> pathlib.Path:
    """Draw ``data`` and write the HTML page to ``path`` (atomically)."""
    path = pathlib.Path(path)
    atomic_write_text(path, render_html(data))
    return path


def write_report(
    run_dir: str | pathlib.Path, path: str | pathlib.Path | None = None
) -> pathlib.Path:
    """Build and write the report of ``run_dir`` (default ``run_dir/report.html``)."""
    run_dir = pathlib.Path(run_dir)
    return render_report(build_report_data(run_dir), path or run_dir / "report.html")
