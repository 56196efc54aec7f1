"""Run a search from a validated :class:`~convnas.run.config.Config`.

Creates the run directory, records the resolved config and the versions, loads the data, builds
the space and the strategy, runs the search (with local worker processes when asked), and writes
the report.
"""

from __future__ import annotations

import datetime as _dt
import logging
import multiprocessing
import os
import pathlib
import platform
import subprocess
import sys
from typing import Any

from convnas.errors import ConfigError
from convnas.io import write_json, write_yaml
from convnas.run.config import Config, build_space, build_strategy, parse_config
from convnas.strategies import OptunaStrategy, SearchResult

__all__ = ["collect_run_info", "load_data", "run_search"]

logger = logging.getLogger(__name__)


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=pathlib.Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def collect_run_info(config: Config) -> dict[str, Any]:
    """Versions and machine facts recorded beside every run (reproducibility)."""
    import torch

    from convnas import __version__
    from convnas.strategies.training import resolve_device

    device = resolve_device(config.device)
    return {
        "convnas": __version__,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": _git_commit(),
        "command": sys.argv,
        "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


# Files whose presence means the run directory holds results (see the resume rule, README).
RESULT_FILES = ("darts_checkpoint.pt", "trials.csv")


def load_data(config: Config) -> Any:
    from convnas.data import load_dataset

    d = config.data
    try:
        return load_dataset(
            d.dataset,
            root=d.root,
            download=d.download,
            seed=config.seed,
            val_fraction=d.val_fraction,
            augment=d.augment,
            limit_train=d.limit_train,
            limit_test=d.limit_test,
            **d.options,
        )
    except ConfigError as exc:
        if exc.key is None:
            raise ConfigError(str(exc), key="data") from None
        raise


def _worker(config_dict: dict[str, Any], index: int, resume: bool) -> None:
    config = parse_config(config_dict)
    settings = config.strategy_settings() | {"worker_index": index, "progress": False}
    from convnas.strategies.base import get_strategy

    data = load_data(config)
    space = build_space(config, input_shape=data.input_shape, num_classes=data.num_classes)
    get_strategy(config.strategy.kind, **settings).search(
        space, data, config.run_dir(), resume=resume
    )


def run_search(config: Config, *, resume: bool = False, workers: int = 1) -> SearchResult:
    """Run the search ``config`` describes; returns its result (files are in the run dir)."""
    if workers < 1:
        raise ConfigError(f"must be >= 1, but got {workers}", key="workers")
    if workers > 1 and config.strategy.kind == "darts":
        raise ConfigError(
            "DARTS trains one supernet; scale it with torchrun, not --workers", key="workers"
        )
    run_dir = config.run_dir()
    finished = [f for f in RESULT_FILES if (run_dir / f).exists()]
    if finished and not resume:  # refuse before anything of the run's record is rewritten
        raise ConfigError(
            f"{run_dir} already holds a search's results ({', '.join(finished)}); pass --resume "
            f"(resume=True) to continue it, or choose another run name (--name)",
            key="output.run_dir",
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    # Under torchrun every process runs this function; only rank 0 writes run files.
    is_main = int(os.environ.get("RANK", "0")) == 0
    if is_main:
        write_yaml(run_dir / "config.yaml", config.to_dict())
    info = collect_run_info(config)
    data = load_data(config)
    space = build_space(config, input_shape=data.input_shape, num_classes=data.num_classes)
    strategy = build_strategy(config)
    info.update(
        dataset=data.name,
        train_size=len(data.train),
        val_size=len(data.val) if data.val is not None else 0,
        test_size=len(data.test),
        strategy=config.strategy.kind,
        space=config.space.kind,
    )
    write_json(run_dir / "run_info.json", info)
    helpers = []
    if workers > 1:
        ctx = multiprocessing.get_context("spawn")
        helpers = [
            ctx.Process(target=_worker, args=(config.to_dict(), i, True), daemon=False)
            for i in range(1, workers)
        ]
        for p in helpers:
            p.start()
        logger.info("started %d extra worker process(es)", len(helpers))
    started = _dt.datetime.now(_dt.timezone.utc)
    try:
        result = strategy.search(space, data, run_dir, resume=resume)
    finally:
        for p in helpers:
            p.join()
    bad = [p.exitcode for p in helpers if p.exitcode != 0]
    if bad:
        logger.error("%d worker process(es) exited with errors: %s", len(bad), bad)
    if isinstance(strategy, OptunaStrategy) and helpers:
        result = strategy.collect(strategy.open_study(space, run_dir), run_dir)
    info["finished"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    info["wall_time_s"] = (_dt.datetime.now(_dt.timezone.utc) - started).total_seconds()
    info["result"] = dict(result.info)
    if is_main:
        write_json(run_dir / "run_info.json", info)
        if config.output.report:
            _write_report(run_dir)
    return result


def _write_report(run_dir: pathlib.Path) -> pathlib.Path | None:
    from convnas.report import write_report

    try:
        return write_report(run_dir)
    except Exception as exc:  # the search result stands even when the report cannot be drawn
        logger.warning("could not write the report: %s", exc)
        return None
