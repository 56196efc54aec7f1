"""The application: a search from a YAML config (:mod:`~convnas.run.config`,
:mod:`~convnas.run.runner`) and deploy models and their exports (:mod:`~convnas.run.export`)."""

from __future__ import annotations

from convnas.run.config import Config, load_config, parse_config
from convnas.run.export import deploy_model, load_exported
from convnas.run.runner import run_search

__all__ = ["Config", "deploy_model", "load_config", "load_exported", "parse_config", "run_search"]
