"""Kill-and-resume harness: run ``convnas search`` as subprocesses, SIGKILL them, audit the study.

The searches are tiny (synthetic 8x8 data, a depth-8 ResNet space, trials of 0.1-1 s) so each
scenario takes seconds; heartbeats are short (interval 1 s, grace 2 s) so dead workers are noticed
quickly. ``audit`` checks what the reliability guarantees promise: exactly ``n_trials`` COMPLETE,
every trial COMPLETE/FAIL/PRUNED, every FAIL of a dead worker retried once, no retry chain
completed twice, and ``trials.csv`` agreeing with the study.
"""

from __future__ import annotations

import csv
import os
import pathlib
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
DRIVER = pathlib.Path(__file__).with_name("pause_driver.py")
HEARTBEAT = {"heartbeat_interval": 1, "grace_period": 2}
TRAIN = {"kind": "train", "epochs": 1, "batch_size": 16, "max_steps": 2}


def write_config(
    root: pathlib.Path,
    *,
    n_trials: int,
    evaluator: dict[str, Any] | None = None,
    storage: str | None = None,
    name: str = "run",
    population_size: int = 4,
) -> pathlib.Path:
    """A tiny search config under ``root``; the run directory is ``root/runs/NAME``."""
    strategy: dict[str, Any] = {
        "kind": "optuna",
        "n_trials": n_trials,
        "objectives": ["accuracy", "params"],
        "population_size": population_size,
        "evaluator": dict(evaluator or TRAIN),
        **HEARTBEAT,
    }
    if storage is not None:
        strategy["storage"] = storage
    config = {
        "name": name,
        "seed": 0,
        "device": "cpu",
        "data": {
            "dataset": "synthetic",
            "val_fraction": 0.25,
            "augment": False,
            "options": {"num_classes": 4, "input_shape": [3, 8, 8], "size": 128, "test_size": 16},
        },
        "space": {
            "kind": "resnet",
            "depth": 8,
            "widths": [4, 8, 8],
            "candidates": ["conv_3x3", "c2sp", "conv_1x1", "osep_3x3"],
        },
        "strategy": strategy,
        "output": {"root": str(root / "runs"), "progress": False, "report": False},
    }
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def run_dir(config: pathlib.Path) -> pathlib.Path:
    data = yaml.safe_load(config.read_text())
    return pathlib.Path(data["output"]["root"]) / data["name"]


def storage_url(config: pathlib.Path) -> str:
    data = yaml.safe_load(config.read_text())
    return data["strategy"].get("storage") or f"sqlite:///{run_dir(config).resolve()}/study.db"


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"})
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(extra or {})
    return env


def start(
    config: pathlib.Path,
    *,
    resume: bool = True,
    log: pathlib.Path | None = None,
    pause: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.Popen:
    """Start ``python -m convnas search CONFIG`` in its own session (``pause`` runs it through
    :mod:`pause_driver`, which stops once at the named moment and announces it)."""
    args = ["-m", "convnas"] if pause is None else [str(DRIVER)]
    args += ["search", str(config)] + (["--resume"] if resume else [])
    extra = dict(env or {})
    if pause is not None:
        extra.update(CONVNAS_TEST_PAUSE=pause, CONVNAS_TEST_MARKER=str(marker_path(config)))
    log = log or config.with_suffix(".log")
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, *args],
            cwd=REPO,
            env=_env(extra),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def marker_path(config: pathlib.Path) -> pathlib.Path:
    return config.with_suffix(".paused")


def kill(proc: subprocess.Popen) -> bool:
    """SIGKILL the process group; True when the process was still running."""
    alive = proc.poll() is None
    if alive:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    return alive


def wait_for(predicate, timeout: float, what: str, poll: float = 0.05) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(poll)


def finish(config: pathlib.Path, timeout: float = 120) -> None:
    """Resume until the search exits by itself; fail with its log if it does not succeed."""
    proc = start(config)
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill(proc)
        raise AssertionError(f"search did not finish in {timeout} s:\n{tail(config)}") from None
    assert rc == 0, f"search exited with {rc}:\n{tail(config)}"


def tail(config: pathlib.Path, n: int = 4000) -> str:
    log = config.with_suffix(".log")
    return log.read_text(errors="replace")[-n:] if log.exists() else "(no log)"


@dataclass
class Audit:
    states: Counter = field(default_factory=Counter)
    retries: dict[int, int] = field(default_factory=dict)  # failed trial -> its retry
    trials: list[Any] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.states.values())


def open_study(url: str, study_name: str | None = None) -> Any:
    """The study ``study_name`` in ``url``; by default the storage's only study (a run's study
    is named after the run)."""
    import optuna

    from convnas.strategies.optuna import OptunaSettings, make_storage

    storage = make_storage(url, OptunaSettings(**HEARTBEAT))
    return optuna.load_study(study_name=study_name, storage=storage)


def audit(config: pathlib.Path, n_trials: int, *, csv_complete: bool = True) -> Audit:
    """Assert the accounting invariants of a finished study; return its counts."""
    study = open_study(storage_url(config))
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    result = Audit(Counter(t.state.name for t in trials), trials=trials)
    by_number = {t.number: t for t in trials}
    assert [t.number for t in trials] == list(range(len(trials))), "trial numbers not unique"
    assert set(result.states) <= {"COMPLETE", "FAIL", "PRUNED"}, result.states
    # Repeats of an earlier trial's network are answered from it and not counted (never
    # scored twice); exactly n_trials distinct networks complete.
    counted = [
        t for t in trials if t.state.name == "COMPLETE" and "duplicate_of" not in t.user_attrs
    ]
    assert len(counted) == n_trials, result.states
    for t in trials:
        if "duplicate_of" in t.user_attrs:
            original = by_number[t.user_attrs["duplicate_of"]]
            assert original.state.name == "COMPLETE" and "duplicate_of" not in original.user_attrs
            assert original.user_attrs["network"] == t.user_attrs["network"]
    for t in trials:
        if "retry_of" not in t.user_attrs:
            continue
        failed = by_number[t.user_attrs["retry_of"]]
        assert failed.state.name == "FAIL" and failed.number < t.number
        assert failed.number not in result.retries, f"trial {failed.number} retried twice"
        assert t.user_attrs["retried_from"] == failed.user_attrs.get("retried_from", failed.number)
        known = {**failed.system_attrs.get("fixed_params", {}), **failed.params}
        assert t.system_attrs["fixed_params"] == known  # the same architecture runs again
        if t.state.name == "COMPLETE":
            assert t.params == known
        result.retries[failed.number] = t.number
    # A retry chain (a trial and its retries) is counted at most once.
    chains = Counter(t.user_attrs.get("retried_from", t.number) for t in counted)
    assert max(chains.values()) == 1, chains
    rows = list(csv.DictReader(open(run_dir(config) / "trials.csv")))
    for row in rows:
        assert row["state"] == by_number[int(row["number"])].state.name, row
    csv_done = sum(r["state"] == "COMPLETE" and not r["duplicate_of"] for r in rows)
    assert csv_done == n_trials if csv_complete else csv_done <= n_trials
    for number in result.retries:
        row = next(r for r in rows if int(r["number"]) == number)
        assert "no heartbeat" in row["fail_reason"], row
    return result
