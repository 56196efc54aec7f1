"""Ranking fidelity: does the one-shot supernet rank architectures as stand-alone training does?

:func:`rank_run` takes K architectures (drawn uniformly from a run's space, the run's trials, or
given files), scores each on the run's trained supernet (``supernet.pt``, reloaded through
:class:`~convnas.strategies.evaluators.SupernetEvaluator`, never retrained), retrains each from
scratch with a small budget, and measures Kendall's tau and Spearman's rho between the one-shot
and the stand-alone validation accuracies, with paired-bootstrap confidence intervals. The same
statistics are computed for the trivial proxies (params, MACs against stand-alone accuracy) and,
on a subset retrained with a second seed, for seed 0 against seed 1: the noise ceiling, the best
correlation any proxy can be expected to reach under that training budget.

Every finished retrain is appended to ``rank_progress.jsonl`` at once, so a run killed midway
resumes without retraining; a changed configuration is refused (or, with ``fresh=True``,
discarded). The results go to ``rank.json`` and ``rank.csv`` in the run directory (atomically).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import pathlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from convnas.errors import ConfigError
from convnas.io import atomic_write_text, load_checkpoint, read_yaml, write_json
from convnas.run.correlation import Correlation, correlation, correlation_dict, finite_or_none
from convnas.search_space import Architecture, load_architecture
from convnas.search_space.architecture import thaw
from convnas.strategies.rules import (
    NON_NEGATIVE,
    OPTIONAL_POSITIVE_INT,
    POSITIVE,
    POSITIVE_INT,
    SEED,
    check,
    is_finite_number,
    optional,
)
from convnas.strategies.training import progress, resolve_device, train_model

__all__ = [
    "Correlation",
    "RankBudget",
    "RankResult",
    "RankedArchitecture",
    "RunSupernet",
    "correlation",
    "load_run_supernet",
    "rank_run",
    "score_architectures",
]

logger = logging.getLogger(__name__)

RANK_KIND = "convnas/rank/v1"
PROGRESS_KIND = "convnas/rank_progress/v1"
SOURCES = ("uniform", "trials", "files")
PROXIES = ("one_shot", "params", "macs")


@dataclass(frozen=True)
class RankBudget:
    """How each architecture is retrained stand-alone (:func:`train_model` arguments)."""

    epochs: int = 3
    batch_size: int = 64
    lr: float = 0.05
    max_steps: int | None = None
    weight_decay: float = 5e-4

    def __post_init__(self) -> None:
        check(
            self,
            {
                "epochs": POSITIVE_INT,
                "batch_size": POSITIVE_INT,
                "lr": POSITIVE,
                "max_steps": OPTIONAL_POSITIVE_INT,
                "weight_decay": NON_NEGATIVE,
            },
            prefix="budget.",
        )


@dataclass(frozen=True)
class _Settings:
    k: int | None
    seed: int
    noise_subset: int
    resamples: int
    confidence: float

    def __post_init__(self) -> None:
        check(
            self,
            {
                "k": optional((lambda v: isinstance(v, int) and v >= 3, "an integer >= 3")),
                "seed": SEED,
                "noise_subset": (lambda v: isinstance(v, int) and v >= 0, "an integer >= 0"),
                "resamples": POSITIVE_INT,
                "confidence": (lambda v: is_finite_number(v) and 0 < v < 1, "a number in (0, 1)"),
            },
        )


@dataclass(frozen=True)
class RankedArchitecture:
    """One ranked architecture: its proxies and stand-alone accuracies (one per train seed)."""

    name: str
    architecture: Architecture
    params: float
    macs: float
    one_shot_accuracy: float
    stand_alone_accuracy: tuple[float, ...]


@dataclass(frozen=True)
class RankResult:
    """What :func:`rank_run` measured; ``correlations`` is keyed by proxy name."""

    run_dir: pathlib.Path
    settings: dict[str, Any]
    architectures: tuple[RankedArchitecture, ...]
    correlations: dict[str, Correlation]
    retrained: int = 0
    reused: int = 0
    files: tuple[pathlib.Path, ...] = field(default_factory=tuple)


@dataclass
class RunSupernet:
    """A run directory loaded for one-shot scoring: its config, data, space and evaluator.

    The evaluator reloads ``supernet.pt`` on the first :meth:`score`, so settings are checked
    (and refused) before the supernet is built.
    """

    run_dir: pathlib.Path
    config: Any
    data: Any
    space: Any
    evaluator: Any
    device: Any
    prepared: bool = False

    def check(self, arch: Architecture, what: str) -> Architecture:
        """``arch`` if it belongs to this run's space, else a ConfigError naming ``what``."""
        if arch.space != self.space.name or thaw(arch.settings) != self.space.settings():
            raise ConfigError(
                f"{what} is not from this run's search space ({self.space.name} with "
                f"{self.space.settings()}); it has space {arch.space!r} with settings "
                f"{thaw(arch.settings)}; pass architectures exported from this run"
            )
        self.space.validate(arch)
        return arch

    def score(self, arch: Architecture) -> float:
        """One-shot validation accuracy of ``arch`` with the supernet's inherited weights."""
        if not self.prepared:  # the checkpoint is finished (checked on load): no training runs
            self.evaluator.prepare(
                self.space,
                self.data,
                self.run_dir,
                seed=self.config.seed,
                device=self.device,
                show_progress=False,
            )
            self.prepared = True
        return float(self.evaluator.score(arch))


def load_run_supernet(run_dir: str | pathlib.Path, *, device: str | None = None) -> RunSupernet:
    """Load a finished supernet search's config, data, space and trained ``supernet.pt``.

    Raises:
        ConfigError: not a run directory, not a supernet run, or no finished supernet.
        CheckpointError: ``supernet.pt`` was trained with another configuration.
    """
    from convnas.run.config import build_space, parse_config
    from convnas.run.runner import load_data
    from convnas.strategies.evaluators import get_evaluator

    run_dir = pathlib.Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise ConfigError(
            f"{str(run_dir)!r} is not a run directory (no config.yaml); pass the directory "
            "`convnas search` wrote, e.g. runs/quickstart"
        )
    config = parse_config(read_yaml(run_dir / "config.yaml"))
    settings = config.strategy_settings()
    evaluator_kind = settings.get("evaluator")
    if config.strategy.kind not in ("optuna", "random") or evaluator_kind != "supernet":
        raise ConfigError(
            f"ranking needs a run scored by a one-shot supernet, but this run has strategy "
            f"{config.strategy.kind!r} with evaluator {evaluator_kind!r}; use a run of strategy "
            "optuna or random with strategy.evaluator.kind: supernet",
            key="strategy.evaluator.kind",
        )
    evaluator: Any = get_evaluator("supernet", **settings["evaluator_settings"])
    checkpoint = run_dir / "supernet.pt"
    if not checkpoint.is_file():
        raise ConfigError(
            f"{run_dir} holds no trained supernet (supernet.pt); run the search first "
            "(convnas search CONFIG)"
        )
    trained = load_checkpoint(checkpoint).get("epoch")
    if isinstance(trained, int) and trained < evaluator.epochs:
        raise ConfigError(
            f"{checkpoint} is trained for {trained} of {evaluator.epochs} epochs; finish the "
            "search first (convnas search CONFIG --resume)"
        )
    dev = resolve_device(device or config.device)
    data = load_data(config)
    space = build_space(config, input_shape=data.input_shape, num_classes=data.num_classes)
    return RunSupernet(run_dir, config, data, space, evaluator, dev)


def score_architectures(
    run_dir: str | pathlib.Path,
    architectures: Sequence[str | pathlib.Path | Architecture],
    *,
    device: str | None = None,
) -> list[tuple[str, float]]:
    """``(name, one-shot validation accuracy)`` of each architecture on the run's supernet."""
    run = load_run_supernet(run_dir, device=device)
    return [(name, run.score(arch)) for name, arch in _given(run, architectures)]


def _given(
    run: RunSupernet, items: Sequence[str | pathlib.Path | Architecture]
) -> list[tuple[str, Architecture]]:
    out = []
    for i, item in enumerate(items):
        if isinstance(item, Architecture):
            out.append((f"arch_{i:03d}", run.check(item, f"architecture {i}")))
        else:
            path = pathlib.Path(item)
            out.append((str(path), run.check(load_architecture(path), str(path))))
    return out


class _UniformTrial:
    """The part of an Optuna trial :func:`sample_architecture` asks: uniform categoricals."""

    def __init__(self, rng: np.random.Generator) -> None:
        self._rng = rng

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        return choices[int(self._rng.integers(len(choices)))]


def _uniform(run: RunSupernet, k: int, seed: int) -> list[tuple[str, Architecture]]:
    from convnas.strategies.optuna.sampling import sample_architecture

    sampled = bool(run.config.strategy_settings().get("hparams_sampled", False))
    trial = _UniformTrial(np.random.default_rng(seed))
    out: list[tuple[str, Architecture]] = []
    for _ in range(100 * k):
        arch = sample_architecture(trial, run.space, sample_hparams=sampled)
        if not any(arch.same_network(a) for _, a in out):
            out.append((f"uniform_{len(out):03d}", arch))
        if len(out) == k:
            return out
    raise ConfigError(
        f"the space holds fewer than k={k} distinct architectures ({len(out)} found); lower k",
        key="k",
    )


def _trials(run: RunSupernet, k: int | None, seed: int) -> list[tuple[str, Architecture]]:
    from convnas.report.tables import read_trials_csv
    from convnas.run.export import run_architectures

    if not (run.run_dir / "trials.csv").is_file():
        raise ConfigError(f"{run.run_dir} has no trials.csv yet: no trials to rank", key="source")
    rows = read_trials_csv(run.run_dir / "trials.csv")[1]
    out: list[tuple[str, Architecture]] = []
    for number in sorted(r["number"] for r in rows if r["state"] == "COMPLETE"):
        for name, arch in run_architectures(run.run_dir, trial=number):
            if not any(arch.same_network(a) for _, a in out):
                out.append((name, arch))
    if k is not None and len(out) > k:
        keep = sorted(np.random.default_rng(seed).choice(len(out), size=k, replace=False))
        out = [out[i] for i in keep]
    return out


def _select(
    run: RunSupernet,
    source: str,
    k: int | None,
    seed: int,
    architectures: Sequence[str | pathlib.Path | Architecture] | None,
) -> list[tuple[str, Architecture]]:
    if source not in SOURCES:
        raise ConfigError(f"must be one of {SOURCES}, but got {source!r}", key="source")
    if (source == "files") != bool(architectures):
        raise ConfigError(
            "give architecture files exactly when source is 'files' (and then at least 3)",
            key="source",
        )
    if source == "uniform":
        chosen = _uniform(run, 20 if k is None else k, seed)
    elif source == "trials":
        chosen = _trials(run, k, seed)
    else:
        chosen = _given(run, architectures or [])
        for i, (name, arch) in enumerate(chosen):
            twin = next((n for n, a in chosen[:i] if a.same_network(arch)), None)
            if twin is not None:
                raise ConfigError(
                    f"{name} and {twin} describe the same network; rank each network once",
                    key="architectures",
                )
    if len(chosen) < 3:
        raise ConfigError(
            f"rank correlations need at least 3 distinct architectures, but got {len(chosen)}",
            key="k",
        )
    return chosen


def _costs(arch: Architecture, input_shape: Sequence[int]) -> tuple[float, float]:
    from convnas.costs import measure
    from convnas.run.export import build_seeded

    costs = measure(build_seeded(arch, 0), input_shape)
    return float(costs.params), float(costs.macs)


def _progress_file(run_dir: pathlib.Path, fingerprint: str, settings: dict, fresh: bool) -> dict:
    """Done retrains ``{(index, seed): record}`` from ``rank_progress.jsonl`` (created if new)."""
    path = run_dir / "rank_progress.jsonl"
    if path.is_file() and not fresh:
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        records = []
        for line in lines:
            try:
                records.append(json.loads(line))
            except ValueError:  # the last line of a write cut short by a crash
                continue
        header = records[0] if records else {}
        if header.get("kind") == PROGRESS_KIND and header.get("fingerprint") == fingerprint:
            if len(records) < len(lines) or not text.endswith("\n"):
                # drop a line cut short by a crash, so the next append starts on its own line
                atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in records))
            return {(r["index"], r["seed"]): r for r in records[1:] if "index" in r}
        old = header.get("settings") or {}
        changed = [
            f"{key}: {old.get(key)!r} -> {value!r}"
            for key, value in settings.items()
            if old.get(key) != value
        ] or ["the selected architectures"]
        raise ConfigError(
            f"{path} holds retrains of another rank configuration ({'; '.join(changed)}); rerun "
            "with the same settings to resume, or pass --fresh (fresh=True) to discard them",
            key="rank",
        )
    header = {"kind": PROGRESS_KIND, "fingerprint": fingerprint, "settings": settings}
    atomic_write_text(path, json.dumps(header) + "\n")
    return {}


def _append(path: pathlib.Path, record: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def rank_run(
    run_dir: str | pathlib.Path,
    *,
    k: int | None = None,
    source: str = "uniform",
    architectures: Sequence[str | pathlib.Path | Architecture] | None = None,
    seed: int = 0,
    budget: RankBudget | None = None,
    noise_subset: int = 0,
    data: Mapping[str, Any] | None = None,
    resamples: int = 1000,
    confidence: float = 0.95,
    device: str | None = None,
    fresh: bool = False,
    show_progress: bool = False,
) -> RankResult:
    """Measure how faithfully the run's supernet ranks architectures (module docstring).

    Args:
        k: how many architectures: drawn uniformly (default 20), or at most this many of the
            run's distinct complete trials (default all); ignored for files.
        source: ``"uniform"`` (seeded by ``seed``), ``"trials"`` or ``"files"``.
        architectures: architecture files (or objects) when ``source="files"``.
        seed: seeds the sampling and the first retrain; the second retrain uses ``seed + 1``.
        budget: the stand-alone training of each architecture.
        noise_subset: retrain this many of them (the first ones) with the second seed too.
        data: overrides of the run's ``data`` section for retraining (e.g. ``limit_train``).
        resamples, confidence: the bootstrap of the confidence intervals.
        fresh: discard the retrains of an earlier, different rank configuration.

    Raises:
        ConfigError: a bad setting, or ``rank_progress.jsonl`` of another configuration.
    """
    budget = budget or RankBudget()
    _Settings(k, seed, noise_subset, resamples, confidence)
    run = load_run_supernet(run_dir, device=device)
    chosen = _select(run, source, k, seed, architectures)
    if noise_subset and not 3 <= noise_subset <= len(chosen):
        raise ConfigError(
            f"must be 0 or between 3 and the {len(chosen)} ranked architectures, but got "
            f"{noise_subset}",
            key="noise_subset",
        )
    train_data = run.data
    data_settings = run.config.data.model_dump(mode="json")
    if data:
        train_data, data_settings = _override_data(run, data)
    seeds = (seed, seed + 1)
    settings = {
        "source": source,
        "k": len(chosen),
        "seed": seed,
        "train_seeds": list(seeds[: 2 if noise_subset else 1]),
        "noise_subset": noise_subset,
        "budget": asdict(budget),
        "data": data_settings,
    }
    from convnas.strategies.base import config_hash

    fingerprint = config_hash(settings, [a.to_dict()["choices"] for _, a in chosen])
    done = _progress_file(run.run_dir, fingerprint, settings, fresh)
    # proxies first: a supernet that does not load fails before any retraining
    proxies_of = [(run.score(a), *_costs(a, run.space.input_shape)) for _, a in chosen]
    tasks = [(i, seeds[0]) for i in range(len(chosen))]
    tasks += [(i, seeds[1]) for i in range(noise_subset)]
    todo = [t for t in tasks if t not in done]
    logger.info("rank: %d retrain(s) to run, %d done earlier", len(todo), len(tasks) - len(todo))
    bar = progress(todo, enabled=show_progress, total=len(todo), desc="stand-alone retrains")
    for n, (i, train_seed) in enumerate(bar, start=1):
        done[(i, train_seed)] = record = _retrain(chosen[i][1], train_data, budget, train_seed, run)
        record.update(index=i, seed=train_seed, name=chosen[i][0])
        _append(run.run_dir / "rank_progress.jsonl", record)
        logger.info(
            "rank: retrain %d/%d (%s, seed %d): val accuracy %.4f in %.1f s",
            n,
            len(todo),
            chosen[i][0],
            train_seed,
            record["val_accuracy"],
            record["seconds"],
        )
    ranked = []
    for i, (name, arch) in enumerate(chosen):
        one_shot, params, macs = proxies_of[i]
        accuracies = tuple(done[(i, s)]["val_accuracy"] for s in seeds if (i, s) in done)
        ranked.append(RankedArchitecture(name, arch, params, macs, one_shot, accuracies))
    stand_alone = [r.stand_alone_accuracy[0] for r in ranked]
    proxies = {
        "one_shot": [r.one_shot_accuracy for r in ranked],
        "params": [r.params for r in ranked],
        "macs": [r.macs for r in ranked],
    }
    boot: dict[str, Any] = {"resamples": resamples, "confidence": confidence, "seed": seed}
    correlations = {n: correlation(n, v, stand_alone, **boot) for n, v in proxies.items()}
    if noise_subset:
        pairs = [r.stand_alone_accuracy for r in ranked[:noise_subset]]
        correlations["noise_ceiling"] = correlation(
            "noise_ceiling", [p[0] for p in pairs], [p[1] for p in pairs], **boot
        )
    result = RankResult(
        run.run_dir, settings, tuple(ranked), correlations, len(todo), len(tasks) - len(todo)
    )
    files = _write(result, boot)
    return replace(result, files=files)


def _override_data(run: RunSupernet, overrides: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
    from convnas.run.config import parse_config
    from convnas.run.runner import load_data

    config = run.config.to_dict()
    config["data"] = {**config["data"], **dict(overrides)}
    parsed = parse_config(config)
    data = load_data(parsed)
    if list(data.input_shape) != list(run.data.input_shape) or (
        data.num_classes != run.data.num_classes
    ):
        raise ConfigError(
            f"the retraining data gives input {list(data.input_shape)} and {data.num_classes} "
            f"classes, but the run's space expects {list(run.data.input_shape)} and "
            f"{run.data.num_classes}; override only data settings that keep the dataset",
            key="data",
        )
    return data, parsed.data.model_dump(mode="json")


def _retrain(
    arch: Architecture, data: Any, budget: RankBudget, seed: int, run: RunSupernet
) -> dict[str, Any]:
    from convnas.run.export import build_seeded

    started = time.perf_counter()
    result = train_model(
        build_seeded(arch, seed),
        data,
        epochs=budget.epochs,
        batch_size=budget.batch_size,
        lr=budget.lr,
        max_steps=budget.max_steps,
        weight_decay=budget.weight_decay,
        seed=seed,
        device=run.device,
    )
    return {
        "val_accuracy": float(result.val_accuracy),
        "steps": int(result.steps),
        "seconds": time.perf_counter() - started,
    }


def _write(result: RankResult, boot: dict[str, Any]) -> tuple[pathlib.Path, ...]:
    seeds = result.settings["train_seeds"]
    rows: list[dict[str, Any]] = []
    for r in result.architectures:
        accuracies = list(r.stand_alone_accuracy) + [None] * (
            len(seeds) - len(r.stand_alone_accuracy)
        )
        rows.append(
            {
                "name": r.name,
                "params": r.params,
                "macs": r.macs,
                "one_shot_accuracy": finite_or_none(r.one_shot_accuracy),
                "stand_alone_accuracy": dict(zip(map(str, seeds), accuracies, strict=True)),
                "operators": " ".join(c.op for c in r.architecture.choices),
                "architecture": r.architecture.to_dict(),
            }
        )
    json_path, csv_path = result.run_dir / "rank.json", result.run_dir / "rank.csv"
    write_json(
        json_path,
        {
            "kind": RANK_KIND,
            "settings": result.settings,
            "bootstrap": boot,
            "accuracy": "top-1 on the run's validation split (one-shot and stand-alone)",
            "correlations": {n: correlation_dict(c) for n, c in result.correlations.items()},
            "architectures": rows,
        },
    )
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(
        ["name", "params", "macs", "one_shot_accuracy"]
        + [f"stand_alone_accuracy_seed{s}" for s in seeds]
        + ["operators"]
    )
    for row in rows:
        writer.writerow(
            [row["name"], row["params"], row["macs"], row["one_shot_accuracy"]]
            + ["" if v is None else v for v in row["stand_alone_accuracy"].values()]
            + [row["operators"]]
        )
    atomic_write_text(csv_path, buffer.getvalue())
    return (json_path, csv_path)
