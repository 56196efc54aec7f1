"""Settings of the Optuna strategy, its objectives and samplers."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

from convnas.costs import OBJECTIVE_DIRECTIONS
from convnas.errors import ConfigError, OptionalDependencyError
from convnas.seeding import check_seeds, derive_seed, stream_seed
from convnas.strategies.rules import (
    OPTIONAL_POSITIVE,
    OPTIONAL_POSITIVE_INT,
    POSITIVE_INT,
    SEED,
    check,
)

__all__ = [
    "CONSTRAINTS",
    "NODE_INDEX_ENV",
    "OBJECTIVES",
    "SAMPLERS",
    "OptunaSettings",
    "import_optuna",
    "make_sampler",
    "node_index",
]

OBJECTIVES = OBJECTIVE_DIRECTIONS
SAMPLERS = ("nsga2", "nsga3", "tpe", "gp", "random", "bruteforce")
NODE_INDEX_ENV = "CONVNAS_NODE_INDEX"
CONSTRAINTS = {"max_params": "params", "max_macs": "macs", "max_train_memory": "train_memory"}


def import_optuna() -> Any:
    """Optuna, imported on first use (an install hint if it is missing)."""
    try:
        import optuna
    except ImportError:
        raise OptionalDependencyError("optuna", "the Optuna search strategy") from None
    return optuna


@dataclass(frozen=True)
class OptunaSettings:
    """Settings of the Optuna strategy.

    ``n_trials`` counts COMPLETE trials of the whole study (all workers together).
    ``evaluator`` is "supernet" (one-shot) or "train"; ``evaluator_settings`` go to it.
    ``storage`` is an Optuna URL (``sqlite:///...``, ``postgresql://...``, ``mysql://...``) or
    ``journal:PATH`` for a Journal file; None means SQLite at ``RUN_DIR/study.db``.
    Workers of one study share every setting but ``worker_index``, which varies the sampler's
    random stream. A RUNNING trial beats every ``heartbeat_interval`` seconds; one silent for
    ``grace_period`` seconds is failed and queued again, at most ``max_retry`` times
    (:mod:`convnas.strategies.heartbeat`).
    """

    n_trials: int = 30
    objectives: tuple[str, ...] = ("accuracy", "params")
    max_params: float | None = None
    max_macs: float | None = None
    max_train_memory: float | None = None
    sampler: str = "nsga2"
    population_size: int = 16
    seed: int = 0
    seeds: dict[str, int] = field(default_factory=dict)
    worker_index: int = 0
    storage: str | None = None
    study_name: str = "convnas"
    evaluator: str = "supernet"
    evaluator_settings: dict[str, Any] = field(default_factory=dict)
    sample_hparams: bool | None = None
    memory_batch_size: int = 64
    pruner: str = "none"
    heartbeat_interval: int = 5
    grace_period: int = 20
    max_retry: int = 3
    max_failed: int | None = None
    timeout: float | None = None
    device: str = "auto"
    progress: bool = True

    def __post_init__(self) -> None:
        objectives = tuple(self.objectives)
        object.__setattr__(self, "objectives", objectives)
        if not objectives or len(set(objectives)) != len(objectives):
            raise ConfigError(
                f"must be a non-empty list without repeats, got {objectives}", key="objectives"
            )
        for name in objectives:
            if name not in OBJECTIVES:
                raise ConfigError(
                    f"unknown objective {name!r}; choose from {list(OBJECTIVES)}", key="objectives"
                )
        object.__setattr__(self, "seeds", check_seeds(self.seeds))
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"must be one of {SAMPLERS}, but got {self.sampler!r}", key="sampler")
        if self.pruner not in ("none", "median"):
            raise ConfigError(f"must be 'none' or 'median', but got {self.pruner!r}", key="pruner")
        if self.pruner == "median" and len(objectives) > 1:
            raise ConfigError(
                "Optuna cannot prune multi-objective studies (Trial.should_prune is not "
                "supported there); use a single objective or pruner: none",
                key="pruner",
            )
        if self.pruner == "median" and self.evaluator != "train":
            raise ConfigError("pruning needs the 'train' evaluator", key="pruner")
        if self.evaluator == "supernet" and self.sample_hparams:
            raise ConfigError(
                "the supernet evaluator holds one set of weights per candidate, so it cannot "
                "score sampled hyper-parameters; list them as separate candidates instead",
                key="sample_hparams",
            )
        check(
            self,
            {
                "n_trials": POSITIVE_INT,
                "population_size": (
                    lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 2,
                    "an integer >= 2 (NSGA-II mates pairs)",
                ),
                "memory_batch_size": POSITIVE_INT,
                "heartbeat_interval": POSITIVE_INT,
                "grace_period": POSITIVE_INT,
                "max_retry": (lambda v: isinstance(v, int) and v >= 0, "an integer >= 0"),
                "max_failed": OPTIONAL_POSITIVE_INT,
                "timeout": OPTIONAL_POSITIVE,
                "seed": SEED,
                "max_params": OPTIONAL_POSITIVE,
                "max_macs": OPTIONAL_POSITIVE,
                "max_train_memory": OPTIONAL_POSITIVE,
            },
        )
        if self.grace_period <= self.heartbeat_interval:
            raise ConfigError(
                f"grace_period > heartbeat_interval must hold (a live trial beats every "
                f"heartbeat_interval seconds), but got grace_period={self.grace_period}, "
                f"heartbeat_interval={self.heartbeat_interval}",
                key="grace_period",
            )

    @property
    def hparams_sampled(self) -> bool:
        if self.sample_hparams is None:
            return self.evaluator == "train"
        return self.sample_hparams

    def fingerprint(self) -> dict[str, Any]:
        keep = (
            "objectives",
            "max_params",
            "max_macs",
            "max_train_memory",
            "evaluator",
            "evaluator_settings",
            "sample_hparams",
            "memory_batch_size",
            "seed",
            "seeds",
        )
        return {k: v for k, v in asdict(self).items() if k in keep}


def node_index() -> int:
    """This machine's index among those sharing one study: ``CONVNAS_NODE_INDEX`` (default 0).

    It only varies the sampler's random stream, so that nodes running the same command draw
    different proposals; the study and its results are shared either way.
    """
    raw = os.environ.get(NODE_INDEX_ENV, "0")
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if not 0 <= value < 10_000:
        raise ConfigError(f"{NODE_INDEX_ENV} must be an integer in [0, 10000), but got {raw!r}")
    return value


def make_sampler(settings: OptunaSettings, *, restart: int = 0) -> Any:
    """The sampler named in the settings; Optuna 5 samplers read ``Trial.set_constraint``.

    ``restart``: how many trials the study held when this worker joined it. A worker joining
    a study that holds trials (a resume) draws a fresh stream, so that it does not replay the
    proposals of the first session (they would all be repeats).
    """
    optuna = import_optuna()
    name = settings.sampler
    # Workers of one study draw different proposals: the sampler seed includes the worker index
    # (local workers) and the node index (machines running the same command; docs/scaling.md).
    # A hash, not arithmetic: seed 0 on node 10 must not equal seed 1 on node 0, and the random
    # strategy must not replay NSGA-II's first population. Samplers take 32-bit seeds.
    base = stream_seed(settings.seed, settings.seeds, "sampler")
    seed = derive_seed(base, "sampler", name, node_index(), settings.worker_index)
    if restart:
        seed = derive_seed(seed, "restart", restart)
    seed %= 2**32
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(population_size=settings.population_size, seed=seed)
    if name == "nsga3":
        return optuna.samplers.NSGAIIISampler(population_size=settings.population_size, seed=seed)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if name == "bruteforce":
        return optuna.samplers.BruteForceSampler(seed=seed)
    return optuna.samplers.RandomSampler(seed=seed)
