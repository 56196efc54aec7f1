"""How a sampled architecture is scored: short training, or inherited supernet weights.

- :class:`TrainEvaluator` trains the candidate from scratch for a few epochs (or steps) and
  returns its validation accuracy; it reports every epoch so single-objective studies can prune.
- :class:`SupernetEvaluator` (one-shot) trains a single-path supernet once with uniform path
  sampling, saves it, and scores each architecture with the inherited weights after
  re-estimating BatchNorm statistics on a few training batches.
"""

from __future__ import annotations

import abc
import logging
import math
import pathlib
import time
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from convnas.errors import CheckpointError
from convnas.io import atomic_write_text, load_checkpoint, save_checkpoint
from convnas.registry import Registry
from convnas.search_space import Architecture, SearchSpace, build_model
from convnas.seeding import forked_rng
from convnas.strategies.base import config_hash
from convnas.strategies.rules import (
    NON_NEGATIVE,
    OPTIONAL_POSITIVE_INT,
    POSITIVE,
    POSITIVE_INT,
    check,
)
from convnas.strategies.training import (
    check_finite,
    evaluate,
    progress,
    require_one_batch,
    train_model,
)

__all__ = [
    "EVALUATORS",
    "Evaluator",
    "SupernetEvaluator",
    "TrainEvaluator",
    "get_evaluator",
    "list_evaluators",
    "recalibrate_batchnorm",
    "register_evaluator",
]

logger = logging.getLogger(__name__)


class Evaluator(abc.ABC):
    """Scores architectures for a search; settings are keyword arguments of the constructor.

    ``prepare`` runs once per search (and worker) before any score, ``score`` once per
    architecture. ``deterministic`` says whether two scores of one architecture always agree
    (then a search never scores it twice).
    """

    name: ClassVar[str]
    deterministic: ClassVar[bool] = False

    @abc.abstractmethod
    def prepare(
        self,
        space: SearchSpace,
        data: Any,
        run_dir: pathlib.Path,
        *,
        seed: int,
        device: torch.device,
        show_progress: bool,
        batch_seed: int | None = None,
    ) -> None:
        """Get ready to score architectures of ``space`` on ``data``.

        ``seed`` seeds the weights' initialisation, ``batch_seed`` (default: ``seed``) the
        batch order and any path draws: the two sources of noise can be varied apart.
        """

    @abc.abstractmethod
    def score(self, arch: Architecture, trial: Any = None, *, prune: bool = False) -> float:
        """The accuracy (0..1) of ``arch``. ``trial`` is the Optuna trial, if any; with
        ``prune`` the evaluator reports intermediate accuracies to it and stops when Optuna's
        pruner says so."""


EVALUATORS: Registry[type[Evaluator]] = Registry("evaluator")


def register_evaluator(cls: type[Evaluator], *, replace: bool = False) -> type[Evaluator]:
    """Register an :class:`Evaluator` subclass under its ``name`` (usable as a decorator)."""
    EVALUATORS.add(cls.name, cls, replace=replace)
    return cls


def list_evaluators(pattern: str = "*") -> list[str]:
    """The names of the registered evaluators matching ``pattern``."""
    return EVALUATORS.names(pattern)


def get_evaluator(name: str, **settings: Any) -> Evaluator:
    """Construct the registered evaluator ``name`` with ``settings``.

    Raises:
        UnknownNameError: no such evaluator (a KeyError listing close matches).
        ConfigError: a setting is unknown or invalid.
    """
    result: Evaluator = EVALUATORS.construct(name, **settings)
    return result


@register_evaluator
@dataclass
class TrainEvaluator(Evaluator):
    """Train each candidate briefly; score = validation accuracy (0..1)."""

    epochs: int = 1
    batch_size: int = 64
    lr: float = 0.05
    max_steps: int | None = None
    weight_decay: float = 5e-4

    name: ClassVar[str] = "train"
    deterministic: ClassVar[bool] = False

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
            prefix="evaluator.",
        )

    def prepare(
        self,
        space: SearchSpace,
        data: Any,
        run_dir: pathlib.Path,
        *,
        seed: int,
        device: torch.device,
        show_progress: bool,
        batch_seed: int | None = None,
    ) -> None:
        self._data, self._seed, self._device = data, seed, device
        self._batch_seed = seed if batch_seed is None else batch_seed

    def score(self, arch: Architecture, trial: Any = None, *, prune: bool = False) -> float:
        with forked_rng(self._seed, self._device):  # same init for every candidate
            model = build_model(arch)

        def on_epoch(epoch: int, accuracy: float) -> None:
            if trial is None:
                return
            trial.report(accuracy, epoch)
            if trial.should_prune():
                import optuna

                raise optuna.TrialPruned(f"pruned after epoch {epoch + 1}: accuracy {accuracy}")

        result = train_model(
            model,
            self._data,
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            max_steps=self.max_steps,
            weight_decay=self.weight_decay,
            seed=self._batch_seed,
            device=self._device,
            on_epoch=on_epoch if trial is not None and prune else None,
        )
        return float(result.val_accuracy)


def write_metrics(path: pathlib.Path, rows: list[dict[str, Any]]) -> None:
    """Write the supernet's per-epoch metrics as CSV (atomically)."""
    import csv
    import io

    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def recalibrate_batchnorm(model: nn.Module, batches: list[torch.Tensor]) -> None:
    """Re-estimate every BatchNorm's running statistics as the plain average over ``batches``."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m, m.momentum) for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
    was_training = model.training
    model.train()
    with torch.no_grad():
        for x in batches:
            model(x)
    for m, momentum in saved:
        m.momentum = momentum
    model.train(was_training)


SAMPLINGS = ("uniform", "fair")
# Settings added after supernets were saved with a fingerprint: left out of it at their
# default, so those supernets still load.
_UNSET = {"sampling": "uniform", "schedule": "constant", "warmup_epochs": 0}
SCHEDULES = ("constant", "cosine")
METRICS_FILE = "supernet_metrics.csv"


def fair_paths(num_candidates: dict[str, int], generator: torch.Generator) -> list[dict[str, int]]:
    """FairNAS' strictly fair draw: ``max(num_candidates)`` paths in which every decision's
    candidates appear equally often (exactly once each where a decision has the most)."""
    count = max(num_candidates.values())
    perms = {
        name: torch.randperm(k, generator=generator).tolist() for name, k in num_candidates.items()
    }
    return [{name: perm[i % len(perm)] for name, perm in perms.items()} for i in range(count)]


def lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    """Linear warm-up over ``warmup`` steps, then constant or cosine decay to 0 at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    span = max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(step - warmup, span) / span))


@register_evaluator
@dataclass
class SupernetEvaluator(Evaluator):
    """One-shot scoring with a single-path supernet trained once.

    Settings beyond the optimiser's: ``sampling`` ``"uniform"`` draws one path per step
    (SPOS); ``"fair"`` (FairNAS' strict fairness) draws, per step, as many paths as the largest
    decision has candidates, each decision cycling through a fresh permutation of its
    candidates, accumulates their gradients on the same batch and steps once, so every
    candidate of every decision is trained equally often (this costs that many forward and
    backward passes per step). ``schedule``: ``"constant"`` learning rate or ``"cosine"``
    decay to 0, after ``warmup_epochs`` of linear warm-up. Per-epoch loss, accuracy of the
    sampled paths, learning rate and time go to ``supernet_metrics.csv`` in the run directory.
    """

    epochs: int = 5
    batch_size: int = 64
    lr: float = 0.05
    steps_per_epoch: int | None = None
    bn_batches: int = 4
    eval_batches: int | None = None
    weight_decay: float = 5e-4
    sampling: str = "uniform"
    schedule: str = "constant"
    warmup_epochs: int = 0

    name: ClassVar[str] = "supernet"
    deterministic: ClassVar[bool] = True  # a path's score depends only on the trained supernet

    def __post_init__(self) -> None:
        check(
            self,
            {
                "epochs": (lambda v: isinstance(v, int) and v >= 0, "an integer >= 0"),
                "batch_size": POSITIVE_INT,
                "lr": POSITIVE,
                "steps_per_epoch": OPTIONAL_POSITIVE_INT,
                "bn_batches": POSITIVE_INT,
                "eval_batches": OPTIONAL_POSITIVE_INT,
                "weight_decay": NON_NEGATIVE,
                "sampling": (lambda v: v in SAMPLINGS, f"one of {list(SAMPLINGS)}"),
                "schedule": (lambda v: v in SCHEDULES, f"one of {list(SCHEDULES)}"),
                "warmup_epochs": (
                    lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
                    "an integer >= 0",
                ),
            },
            prefix="evaluator.",
        )

    def prepare(
        self,
        space: SearchSpace,
        data: Any,
        run_dir: pathlib.Path,
        *,
        seed: int,
        device: torch.device,
        show_progress: bool,
        batch_seed: int | None = None,
    ) -> None:
        from convnas.data import make_loader

        if self.epochs:
            require_one_batch(len(data.train), self.batch_size, key="strategy.evaluator.batch_size")
        self._data, self._device = data, device
        batch_seed = seed if batch_seed is None else batch_seed
        with forked_rng(seed, device):  # the weights' init; the caller's RNG is left alone
            supernet = space.build_supernet("single_path").to(device)
        path = run_dir / "supernet.pt"
        fingerprint = config_hash(
            space.name,
            space.settings(),
            [[c.to_dict() for c in d.candidates] for d in space.decisions()],
            {k: v for k, v in asdict(self).items() if _UNSET.get(k, ...) != v},
            seed,
            *([] if batch_seed == seed else [batch_seed]),  # old runs keep their fingerprint
        )
        opt = torch.optim.SGD(
            supernet.weight_parameters(),
            lr=self.lr,
            momentum=0.9,
            weight_decay=self.weight_decay,
            nesterov=True,
        )
        start = 0
        generator = torch.Generator().manual_seed(batch_seed)
        metrics: list[dict[str, Any]] = []
        if path.exists():
            state = load_checkpoint(path, map_location="cpu")  # the generator state stays on CPU
            if state.get("config_hash") != fingerprint:
                raise CheckpointError(
                    f"{path} holds a supernet trained with another configuration; remove it or "
                    f"use another run directory"
                )
            supernet.load_state_dict(state["supernet"])
            opt.load_state_dict(state["optimizer"])
            generator.set_state(state["generator"])
            start = int(state["epoch"])
            metrics = list(state.get("metrics", []))
            logger.info("loaded the supernet trained for %d of %d epochs", start, self.epochs)
        steps = 0
        if self.epochs:
            batches = len(data.train) // self.batch_size
            steps = batches if self.steps_per_epoch is None else min(batches, self.steps_per_epoch)
        for epoch in range(start, self.epochs):
            metrics.append(
                self._train_epoch(
                    supernet, opt, data, generator, epoch, steps, show_progress, batch_seed
                )
            )
            save_checkpoint(
                path,
                {
                    "supernet": supernet.state_dict(),
                    "optimizer": opt.state_dict(),
                    "generator": generator.get_state(),
                    "epoch": epoch + 1,
                    "config_hash": fingerprint,
                    "metrics": metrics,
                },
            )
            write_metrics(run_dir / METRICS_FILE, metrics)
        if metrics and start == self.epochs:  # loaded finished: the file is rewritten from it
            write_metrics(run_dir / METRICS_FILE, metrics)
        self._supernet = supernet
        self._calibration = [
            x.to(device)
            for i, (x, _) in enumerate(
                make_loader(data.train, self.batch_size, shuffle=True, seed=batch_seed + 1)
            )
            if i < self.bn_batches
        ]
        self._val_loader = make_loader(
            data.val, max(self.batch_size, 128), shuffle=False, seed=seed
        )

    def _train_epoch(
        self,
        supernet: Any,
        opt: torch.optim.Optimizer,
        data: Any,
        generator: torch.Generator,
        epoch: int,
        steps: int,
        show_progress: bool,
        batch_seed: int,
    ) -> dict[str, Any]:
        """One epoch of single-path training; returns its metrics row."""
        from convnas.data import make_loader

        loader = make_loader(
            data.train,
            self.batch_size,
            shuffle=True,
            seed=batch_seed * 7919 + epoch,
            drop_last=True,
        )
        total, warmup = steps * self.epochs, steps * self.warmup_epochs
        paths_per_step = 1
        if self.sampling == "fair":
            paths_per_step = max(supernet.arch.num_candidates.values())
        supernet.train()
        bar = progress(
            loader,
            enabled=show_progress,
            total=steps,
            desc=f"supernet epoch {epoch + 1}/{self.epochs}",
        )
        started, loss_sum, correct, seen = time.monotonic(), 0.0, 0, 0
        for step, (x, y) in enumerate(bar):
            if step >= steps:
                break
            factor = lr_factor(epoch * steps + step, total, warmup, self.schedule)
            for group in opt.param_groups:
                group["lr"] = self.lr * factor
            x, y = x.to(self._device), y.to(self._device)
            if self.sampling == "fair":
                paths = fair_paths(supernet.arch.num_candidates, generator)
            else:
                paths = [supernet.sample_path(generator)]
            opt.zero_grad(set_to_none=True)
            for path in paths:
                supernet.set_path(path)
                logits = supernet(x)
                loss = F.cross_entropy(logits, y)
                check_finite(loss, f"supernet training (epoch {epoch + 1}, step {step + 1})")
                (loss / len(paths)).backward()
                loss_sum += float(loss.detach()) * int(y.numel())
                correct += int((logits.detach().argmax(1) == y).sum())
                seen += int(y.numel())
            torch.nn.utils.clip_grad_norm_(supernet.weight_parameters(), 5.0)
            opt.step()
        return {
            "epoch": epoch + 1,
            "train_loss": loss_sum / max(seen, 1),
            "train_accuracy": correct / max(seen, 1),
            "lr": opt.param_groups[0]["lr"],
            "paths_per_step": paths_per_step,
            "seconds": round(time.monotonic() - started, 3),
        }

    @property
    def supernet(self):
        return self._supernet

    def score(self, arch: Architecture, trial: Any = None, *, prune: bool = False) -> float:
        supernet = self._supernet
        supernet.set_mode("fixed")
        supernet.set_path(arch)
        recalibrate_batchnorm(supernet, self._calibration)
        return float(
            evaluate(supernet, self._val_loader, self._device, max_batches=self.eval_batches)[1]
        )
