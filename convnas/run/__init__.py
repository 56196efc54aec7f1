"""The application: a search from a YAML config (:mod:`~convnas.run.config`,
:mod:`~convnas.run.runner`) and deploy models and their exports (:mod:`~convnas.run.export`)."""

from __future__ import annotations

from convnas.run.config import Config, load_config, parse_config
from convnas.run.export import deploy_model, load_exported
from convnas.run.ranking import RankBudget, RankResult, rank_run, score_architectures
from convnas.run.runner import run_search

__all__ = [
    "Config",
    "RankBudget",
    "RankResult",
    "deploy_model",
    "load_config",
    "load_exported",
    "parse_config",
    "rank_run",
    "run_search",
    "score_architectures",
]
