"""``convnas status [ROOT]``: the run directories under ROOT (default ``runs``) and their state.

For each run: strategy; progress (complete trials of ``strategy.n_trials``, or DARTS epochs of
``strategy.epochs``); state: ``running`` (a search holds the run lock, see
:mod:`convnas.rundir`), ``finished`` (``run_info.json`` records the end, or every trial/epoch is
done), ``interrupted`` (results, but neither), ``stopped (finished or interrupted)`` (no
config.yaml to give the planned total), ``not started``; the last time a file changed; the best
accuracy, labelled one-shot (supernet weights) or trained.

Strictly read-only: files are only opened for reading, the Optuna SQLite database in SQLite's
read-only mode, and the lock is inspected through ``/proc/locks`` (or the pid its holder wrote),
never taken.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import os
import pathlib
import socket
import sqlite3
from dataclasses import dataclass
from typing import Any

from convnas.errors import ConfigError

NAME = "status"
HELP = "list the run directories under ROOT (default runs) with their state (read-only)"

RESULT_FILES = ("trials.csv", "alphas.json", "study.db", "run_info.json", "config.yaml")


@dataclass(frozen=True)
class RunStatus:
    name: str
    strategy: str
    progress: str
    state: str
    modified: str
    best: str


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "root",
        nargs="?",
        default="runs",
        type=pathlib.Path,
        metavar="ROOT",
        help="a directory of run directories, or one run directory (default: runs)",
    )


def _json(path: pathlib.Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _yaml(path: pathlib.Path) -> Any:
    from convnas.io import read_yaml

    if not path.is_file():
        return None
    try:
        return read_yaml(path)
    except (OSError, ValueError):
        return None


def is_run(path: pathlib.Path) -> bool:
    from convnas.rundir import is_run_dir

    return path.is_dir() and (is_run_dir(path) or any((path / f).is_file() for f in RESULT_FILES))


def _lock_held(run_dir: pathlib.Path) -> bool | None:
    """Whether a search holds the run lock; None when that cannot be told."""
    from convnas.rundir import LOCK

    lock = run_dir / LOCK
    if not lock.is_file():
        return False
    try:
        inode = lock.stat().st_ino
        lines = pathlib.Path("/proc/locks").read_text().splitlines()
    except OSError:
        lines = None
    if lines is not None:
        for line in lines:
            fields = line.split()
            if len(fields) > 5 and fields[1] != "->" and fields[5].rsplit(":", 1)[-1] == str(inode):
                return True
        return False
    info = _json(lock)
    if not isinstance(info, dict) or info.get("host") != socket.gethostname():
        return None
    try:
        os.kill(int(info["pid"]), 0)
    except (KeyError, TypeError, ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def _study_counts(run_dir: pathlib.Path) -> dict[str, int] | None:
    """Trials per state in ``study.db``, opened read-only; None without one."""
    path = run_dir / "study.db"
    if not path.is_file():
        return None
    try:
        with contextlib.closing(
            sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        ) as db:
            rows = db.execute("SELECT state, COUNT(*) FROM trials GROUP BY state").fetchall()
    except sqlite3.Error:
        return None
    return {str(state): int(n) for state, n in rows}


def _modified(run_dir: pathlib.Path) -> str:
    latest = run_dir.stat().st_mtime
    for path in run_dir.rglob("*"):
        try:
            latest = max(latest, path.lstat().st_mtime)
        except OSError:
            continue
    stamp = _dt.datetime.fromtimestamp(latest, _dt.timezone.utc)
    return stamp.strftime("%Y-%m-%d %H:%M UTC")


def _recorded_kind(run_dir: pathlib.Path) -> str:
    """The evaluator an Optuna run's architecture files record (no config.yaml: a run
    started from Python)."""
    for path in sorted((run_dir / "architectures").glob("pareto_*.yaml"))[:1]:
        arch = _yaml(path)
        kind = ((arch or {}).get("metadata") or {}).get("accuracy_kind")
        if kind in ("trained", "one-shot"):
            return "train" if kind == "trained" else "supernet"
    return "accuracy kind unknown"


def _optuna_status(run_dir: pathlib.Path, config: dict[str, Any]) -> tuple[str, bool | None, str]:
    from convnas.report.data import best_accuracy
    from convnas.report.tables import read_trials_csv

    strategy = config.get("strategy") or {}
    total = strategy.get("n_trials")
    rows: list[dict[str, Any]] = []
    if (run_dir / "trials.csv").is_file():
        try:
            rows = read_trials_csv(run_dir / "trials.csv")[1]
        except (OSError, KeyError, ValueError):
            rows = []
    counts = _study_counts(run_dir)
    if counts is not None:
        complete = counts.get("COMPLETE", 0)
    else:
        complete = sum(r["state"] == "COMPLETE" for r in rows)
    progress = f"{complete}/{total if total else '?'} trials"
    best = best_accuracy(rows)
    kind = (strategy.get("evaluator") or {}).get("kind") or _recorded_kind(run_dir)
    label = {"supernet": "one-shot", "train": "trained"}.get(kind, kind)
    best_text = f"{best:.4f} ({label})" if best is not None else "-"
    return progress, complete >= int(total) if total else None, best_text


def _darts_status(run_dir: pathlib.Path, config: dict[str, Any]) -> tuple[str, bool | None, str]:
    history = _json(run_dir / "alphas.json")
    history = history if isinstance(history, list) else []
    total = (config.get("strategy") or {}).get("epochs")
    progress = f"epoch {len(history)}/{total if total else '?'}"
    accs = [h.get("val_accuracy") for h in history if isinstance(h, dict)]
    accs = [a for a in accs if isinstance(a, (int, float))]
    best = f"{accs[-1]:.4f} (one-shot, supernet val)" if accs else "-"
    return progress, len(history) >= int(total) if total else None, best


def run_status(run_dir: pathlib.Path) -> RunStatus:
    """The state of one run directory, read without writing anything."""
    config = _yaml(run_dir / "config.yaml")
    config = config if isinstance(config, dict) else {}
    info = _json(run_dir / "run_info.json")
    info = info if isinstance(info, dict) else {}
    strategy = (config.get("strategy") or {}).get("kind") or info.get("strategy")
    if not strategy:
        strategy = "darts" if (run_dir / "alphas.json").is_file() else "optuna"
    if strategy == "darts":
        progress, done, best = _darts_status(run_dir, config)
        started = (run_dir / "alphas.json").is_file()
    else:
        progress, done, best = _optuna_status(run_dir, config)
        started = (run_dir / "trials.csv").is_file() or (run_dir / "study.db").is_file()
    held = _lock_held(run_dir)
    if held:
        state = "running"
    elif info.get("finished") or done:
        state = "finished"
    elif started and done is None:  # no config.yaml: the planned total is unknown
        state = "stopped (finished or interrupted)"
    elif started:
        state = "interrupted" if held is False else "interrupted or running elsewhere"
    else:
        state = "not started"
    return RunStatus(run_dir.name, str(strategy), progress, state, _modified(run_dir), best)


def collect(root: pathlib.Path) -> list[RunStatus]:
    """The runs under ``root`` (or ``root`` itself when it is one), sorted by name.

    Raises:
        ConfigError: ``root`` is not a directory.
    """
    if not root.is_dir():
        raise ConfigError(
            f"ROOT {str(root)!r} is not a directory; give the directory holding the run "
            f"directories (default: runs)"
        )
    if is_run(root):
        return [run_status(root)]
    return [run_status(p) for p in sorted(root.iterdir()) if is_run(p)]


def format_table(statuses: list[RunStatus]) -> str:
    head = ("run", "strategy", "progress", "state", "last modified", "best accuracy")
    rows = [head] + [
        (s.name, s.strategy, s.progress, s.state, s.modified, s.best) for s in statuses
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def run(args: argparse.Namespace) -> int:
    statuses = collect(args.root)
    if not statuses:
        print(f"no run directories under {args.root}")
        return 0
    print(format_table(statuses))
    return 0
