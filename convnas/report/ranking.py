"""The report's "Ranking fidelity" section, from the ``rank.json`` that ``convnas rank`` writes.

:func:`ranking_data` reads the file into a :class:`RankingData` (a table of Kendall's tau and
Spearman's rho with their confidence intervals for the one-shot accuracy, params, MACs and the
noise ceiling, and the one-shot against stand-alone accuracy pairs); :func:`ranking_png` draws
the scatter plot. Nothing here imports matplotlib at module level.
"""

from __future__ import annotations

import json
import logging
import math
import pathlib
from dataclasses import dataclass
from typing import Any

from convnas.report.tables import Table

__all__ = ["RankingData", "ranking_data", "ranking_png"]

logger = logging.getLogger(__name__)

ORDER = ("one_shot", "params", "macs", "noise_ceiling")
COLUMNS = (
    "proxy",
    "n",
    "Kendall tau",
    "tau CI low",
    "tau CI high",
    "Spearman rho",
    "rho CI low",
    "rho CI high",
)


@dataclass(frozen=True)
class RankingData:
    """What the section shows: ``note`` describes the protocol; ``points`` are
    ``(name, one-shot accuracy, stand-alone accuracy)``."""

    note: str
    table: Table
    points: tuple[tuple[str, float, float], ...]
    kendall_tau: float


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) else math.nan


def ranking_data(run_dir: str | pathlib.Path) -> RankingData | None:
    """The section's data, or None when the run has no (readable) ``rank.json``."""
    path = pathlib.Path(run_dir) / "rank.json"
    if not path.is_file():
        return None
    try:
        rank = json.loads(path.read_text(encoding="utf-8"))
        correlations = rank["correlations"]
        settings = rank["settings"]
        first_seed = str(settings["train_seeds"][0])
        rows = []
        for name in [n for n in ORDER if n in correlations]:
            c = correlations[name]
            tau_ci, rho_ci = c.get("kendall_ci") or [None] * 2, c.get("spearman_ci") or [None] * 2
            rows.append(
                (
                    c.get("label", name),
                    int(c["n"]),
                    _number(c.get("kendall_tau")),
                    _number(tau_ci[0]),
                    _number(tau_ci[1]),
                    _number(c.get("spearman_rho")),
                    _number(rho_ci[0]),
                    _number(rho_ci[1]),
                )
            )
        points = tuple(
            (
                str(a["name"]),
                _number(a.get("one_shot_accuracy")),
                _number(a["stand_alone_accuracy"].get(first_seed)),
            )
            for a in rank["architectures"]
        )
        budget = settings["budget"]
        confidence = (rank.get("bootstrap") or {}).get("confidence", 0.95)
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        logger.warning("cannot read %s: %s", path, exc)
        return None
    note = (
        f"{settings['k']} architectures ({settings['source']}, seed {settings['seed']}) scored "
        f"on the supernet and retrained stand-alone ({budget['epochs']} epoch(s), batch "
        f"{budget['batch_size']}, lr {budget['lr']}); accuracies on the validation split. "
        f"Intervals: {confidence:.0%} paired bootstrap. Params and MACs are correlated with "
        "stand-alone accuracy as they are; the noise ceiling correlates two retrains of the "
        "same networks with different seeds."
    )
    table = Table(COLUMNS, tuple(rows), (None,) * len(rows))
    tau = rows[0][2] if rows and "one_shot" in correlations else math.nan
    return RankingData(note, table, points, tau)


def ranking_png(data: RankingData) -> bytes:
    """Scatter plot: one-shot accuracy (x) against stand-alone accuracy (y)."""
    import io

    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.2, 4.2), dpi=100, layout="constrained")
    ax = fig.subplots()
    xs = [p[1] for p in data.points]
    ys = [p[2] for p in data.points]
    ax.scatter(xs, ys, c="#1f77b4", s=24)
    for name, x, y in data.points:
        ax.annotate(
            name.split("_")[-1], (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points"
        )
    ax.set_xlabel("one-shot accuracy (supernet weights)")
    ax.set_ylabel("stand-alone accuracy (retrained)")
    ax.set_title(f"Kendall tau = {data.kendall_tau:+.2f}", fontsize=9)
    ax.grid(alpha=0.3)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()
