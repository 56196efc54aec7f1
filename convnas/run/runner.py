"""Run a search from a validated :class:`~convnas.run.config.Config`.

Creates the run directory, records the resolved config and the versions, loads the data, builds
the space and the strategy, runs the search (with local worker processes when asked), and writes
the report.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import multiprocessing
import os
import pathlib
import platform
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from convnas.errors import ConfigError, ConvNASError
from convnas.io import write_json, write_yaml
from convnas.run.config import Config, build_space, build_strategy, parse_config
from convnas.rundir import check_writable_run_dir, create_run_dir, run_lock
from convnas.seeding import stream_seed
from convnas.strategies import DartsStrategy, OptunaStrategy, SearchResult

__all__ = [
    "check_batches",
    "check_model_bytes",
    "check_model_size",
    "collect_run_info",
    "load_data",
    "run_search",
]

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
            seed=stream_seed(config.seed, config.seeds.overrides(), "data"),
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


def _die_with_parent(parent: int) -> None:
    """Make this worker process end when the process that started it ends, even by SIGKILL:
    Linux's PR_SET_PDEATHSIG, plus a watchdog thread for other systems and for a parent that
    died before the call."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)

    def watch() -> None:
        while True:
            if os.getppid() != parent:
                os.kill(os.getpid(), signal.SIGTERM)
                return
            time.sleep(1.0)

    threading.Thread(target=watch, name="convnas-parent-watch", daemon=True).start()


_PR_SET_PDEATHSIG = 1


def _worker(config_dict: dict[str, Any], index: int, resume: bool, parent: int) -> None:
    _die_with_parent(parent)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        config = parse_config(config_dict)
        settings = config.strategy_settings() | {"worker_index": index, "progress": False}
        from convnas.strategies.base import get_strategy

        data = load_data(config)
        space = build_space(config, input_shape=data.input_shape, num_classes=data.num_classes)
        get_strategy(config.strategy.kind, **settings).search(
            space, data, config.run_dir(), resume=resume
        )
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except Exception as exc:  # one line in the log, no traceback of a helper process
        logger.error("worker %d stopped: %s: %s", index, type(exc).__name__, exc)
        raise SystemExit(2) from None


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


# Above this many bytes of supernet parameters and buffers a search is refused before anything
# is allocated (the supernet holds every candidate, so it bounds every sampled network too).
DEFAULT_MAX_MODEL_GB = 8.0


def check_model_bytes(build: Callable[[], Any], what: str, *, key: str | None) -> None:
    """Build a module on the meta device (no memory) and refuse one whose weights and buffers
    exceed ``CONVNAS_MAX_MODEL_GB`` (default :data:`DEFAULT_MAX_MODEL_GB`)."""
    import torch

    raw = os.environ.get("CONVNAS_MAX_MODEL_GB", str(DEFAULT_MAX_MODEL_GB))
    try:
        limit = float(raw)
    except ValueError:
        raise ConfigError(f"CONVNAS_MAX_MODEL_GB must be a number of GB, but got {raw!r}") from None
    try:
        with torch.device("meta"):
            module = build()
    except ConvNASError:
        raise
    except (NotImplementedError, RuntimeError, TypeError, ValueError) as exc:
        # An operator whose construction reads tensor values (e.g. nonzero) cannot be built
        # without memory; its size is then not estimated, and it builds as usual.
        logger.debug("%s: size not estimated on the meta device (%s)", what, exc)
        return
    size = sum(t.numel() * t.element_size() for t in (*module.parameters(), *module.buffers()))
    if size > limit * 1e9:
        raise ConfigError(
            f"{what} holds {size / 1e9:.1f} GB of weights, over the limit of {limit:g} GB "
            f"(CONVNAS_MAX_MODEL_GB); make the network smaller (depth, widths, channels, "
            f"layers) or raise CONVNAS_MAX_MODEL_GB",
            key=key,
        )


def check_model_size(space: Any) -> None:
    """:func:`check_model_bytes` for the supernet of ``space`` (which holds every candidate, so
    it bounds every sampled network too)."""
    try:
        check_model_bytes(
            lambda: space.build_supernet("weighted"), "the supernet of these settings", key="space"
        )
    except ConfigError:
        raise
    except ConvNASError as exc:  # a candidate's hyper-parameters, caught before any trial
        raise ConfigError(str(exc), key="space.candidates") from None


def check_batches(config: Config, data: Any) -> None:
    """Every batch size fits its split at least once (zero training steps is an error)."""
    settings = config.strategy_settings()
    checks: dict[str, tuple[Any, tuple[str, ...]]]
    if config.strategy.kind == "darts":
        checks = {"strategy.batch_size": (settings["batch_size"], ("train", "val"))}
    else:
        size = (settings.get("evaluator_settings") or {}).get("batch_size")
        checks = {"strategy.evaluator.batch_size": (size, ("train",))}
    for key, (batch, splits) in checks.items():
        for split in splits:
            n = len(getattr(data, split) or ())
            if isinstance(batch, int) and batch > n:
                raise ConfigError(
                    f"the {split} split has {n} samples, fewer than one batch of {batch}, so "
                    f"not one step would run; lower the batch size or use more data "
                    f"(data.limit_train, data.val_fraction, the dataset's size)",
                    key=key,
                )


def _check_before_writing(
    config: Config, strategy: Any, space: Any, run_dir: pathlib.Path, resume: bool
) -> None:
    """Everything that can refuse this search, checked before a file is written."""
    check_writable_run_dir(run_dir)
    finished = [f for f in RESULT_FILES if (run_dir / f).exists()]
    if finished and not resume:  # refuse before anything of the run's record is rewritten
        raise ConfigError(
            f"{run_dir} already holds a search's results ({', '.join(finished)}); pass --resume "
            f"(resume=True) to continue it, or choose another run name (--name)",
            key="output.run_dir",
        )
    check = getattr(strategy, "check_resume", None)
    if check is not None:
        check(space, run_dir, resume=resume)


def run_search(config: Config, *, resume: bool = False, workers: int = 1) -> SearchResult:
    """Run the search ``config`` describes; returns its result (files are in the run dir).

    Everything that can refuse the search (the run directory, the resume rule, the study or
    checkpoint found there, the data, the space and its size) is checked before anything is
    written; the run directory's lock is then held until the search ends (see
    :mod:`convnas.rundir`).
    """
    if workers < 1:
        raise ConfigError(f"must be >= 1, but got {workers}", key="workers")
    if workers > 1 and config.strategy.kind == "darts":
        raise ConfigError(
            "DARTS trains one supernet; scale it with torchrun, not --workers", key="workers"
        )
    run_dir = config.run_dir()
    check_writable_run_dir(run_dir)
    config = _legacy_study(config, run_dir)
    # Under torchrun every process runs this function; only rank 0 writes run files.
    is_main = int(os.environ.get("RANK", "0")) == 0
    info = collect_run_info(config)
    data = load_data(config)
    space = build_space(config, input_shape=data.input_shape, num_classes=data.num_classes)
    check_model_size(space)
    check_batches(config, data)
    strategy = build_strategy(config)
    if not is_main:
        return strategy.search(space, data, run_dir, resume=resume)
    _check_before_writing(config, strategy, space, run_dir, resume)
    create_run_dir(run_dir)
    with run_lock(run_dir, shared=not isinstance(strategy, DartsStrategy)):
        # Checked again under the lock: a search that finished meanwhile wrote results.
        _check_before_writing(config, strategy, space, run_dir, resume)
        write_yaml(run_dir / "config.yaml", config.to_dict())
        info.update(
            dataset=data.name,
            train_size=len(data.train),
            val_size=len(data.val) if data.val is not None else 0,
            test_size=len(data.test),
            strategy=config.strategy.kind,
            space=config.space.kind,
        )
        write_json(run_dir / "run_info.json", info)
        return _run_locked(config, strategy, space, data, run_dir, resume, workers, info)


def _legacy_study(config: Config, run_dir: pathlib.Path) -> Config:
    """``config`` naming the study a run made before per-run study names holds (``convnas``)."""
    strategy = config.strategy
    if strategy.kind not in ("optuna", "random"):
        return config
    from convnas.strategies.optuna.resume import run_study_name

    settings = strategy.model_dump()
    name = run_study_name(run_dir, settings["storage"], settings["study_name"])
    if name == settings["study_name"]:
        return config
    logger.info("continuing the run's study %r (named before studies took the run's name)", name)
    return config.model_copy(update={"strategy": strategy.model_copy(update={"study_name": name})})


def _run_locked(config, strategy, space, data, run_dir, resume, workers, info) -> SearchResult:
    helpers = []
    if workers > 1:
        ctx = multiprocessing.get_context("spawn")
        helpers = [
            ctx.Process(target=_worker, args=(config.to_dict(), i, True, os.getpid()), daemon=False)
            for i in range(1, workers)
        ]
        for p in helpers:
            p.start()
        logger.info("started %d extra worker process(es)", len(helpers))
    started = _dt.datetime.now(_dt.timezone.utc)
    try:
        result = strategy.search(space, data, run_dir, resume=resume)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: stop the helpers, keep what is done
        _stop(helpers)
        _save_partial(strategy, run_dir)
        raise
    except BaseException:
        _stop(helpers)
        raise
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
    write_json(run_dir / "run_info.json", info)
    if config.output.report:
        _write_report(run_dir)
    return result


def _stop(helpers: list[Any], timeout: float = 30.0) -> None:
    """End the helper processes (SIGTERM: each fails its trial as interrupted), then wait."""
    for p in helpers:
        if p.is_alive():
            p.terminate()
    deadline = time.monotonic() + timeout
    for p in helpers:
        p.join(max(0.0, deadline - time.monotonic()))
        if p.is_alive():
            p.kill()
            p.join()


def _save_partial(strategy: Any, run_dir: pathlib.Path) -> None:
    """After an interrupt, write trials.csv from the study (state for a resume)."""
    if not isinstance(strategy, OptunaStrategy):
        return  # DARTS: the checkpoint of the last finished epoch is the state
    try:
        from convnas.strategies.optuna.resume import open_study_readonly

        s = strategy.settings
        url = s.storage or f"sqlite:///{(run_dir / 'study.db').resolve()}"
        strategy.collect(open_study_readonly(url, s.study_name), run_dir)
    except Exception as exc:  # the study itself is the state; trials.csv is a convenience
        logger.debug("trials.csv not rewritten after the stop: %s", exc)


def _write_report(run_dir: pathlib.Path) -> pathlib.Path | None:
    from convnas.report import write_report

    try:
        return write_report(run_dir)
    except Exception as exc:  # the search result stands even when the report cannot be drawn
        logger.warning("could not write the report: %s", exc)
        return None
