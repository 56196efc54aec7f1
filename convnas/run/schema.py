"""The typed schema of a search config: one pydantic section per builder.

Sections: ``data`` (load_dataset), ``space`` (a registered search space), ``strategy`` (a
registered strategy, with its evaluator), plus ``seed``, ``device`` and ``output``. The strategy
and evaluator sections are made from the settings dataclasses of the strategies themselves, so
the two can never disagree.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from convnas.operators.darts_edge import DARTS_PRIMITIVES
from convnas.strategies.darts import DartsSettings
from convnas.strategies.evaluators import SupernetEvaluator, TrainEvaluator
from convnas.strategies.optuna import OptunaSettings

__all__ = [
    "Config",
    "DataConfig",
    "DartsSpaceConfig",
    "OutputConfig",
    "ResNetSpaceConfig",
    "Section",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class Section(_Strict):
    """A section chosen by ``kind`` (strategies and evaluators); its other fields are those of
    the settings dataclass it is made from."""

    kind: str


class CandidateConfig(_Strict):
    op: str
    hparams: dict[str, Any] = Field(default_factory=dict)


Candidates = Annotated[list[str | CandidateConfig], Field(min_length=1)]


class DataConfig(_Strict):
    """``convnas.data.load_dataset`` arguments."""

    dataset: str = "digits"
    root: str | None = None
    download: bool = False
    val_fraction: float = Field(0.2, ge=0.0, lt=1.0)
    augment: bool = True
    limit_train: int | None = Field(None, ge=2)
    limit_test: int | None = Field(None, ge=1)
    options: dict[str, Any] = Field(default_factory=dict)


class ResNetSpaceConfig(_Strict):
    """The ``resnet`` macro space (input shape and classes come from the data)."""

    kind: Literal["resnet"] = "resnet"
    candidates: Candidates = ["conv_3x3", "c2sp", "do_conv_3x3", "osep_3x3", "csg_conv_3x3"]
    depth: int = Field(20, ge=8)
    widths: Annotated[list[Annotated[int, Field(ge=1)]], Field(min_length=3, max_length=3)] = [
        16,
        32,
        64,
    ]
    width_multiplier: float = Field(1.0, gt=0)
    shortcut: Literal["A", "B"] = "A"
    granularity: Literal["layer", "block", "network"] = "layer"
    memory: Literal["plain", "recompute"] = "plain"


class DartsSpaceConfig(_Strict):
    """The ``darts`` cell space."""

    kind: Literal["darts"]
    candidates: Candidates = list(DARTS_PRIMITIVES)
    channels: int = Field(16, ge=2)
    layers: int = Field(8, ge=1)
    steps: int = Field(4, ge=1)
    multiplier: int = Field(4, ge=1)
    stem_multiplier: int = Field(3, ge=1)
    affine: bool = False
    memory: Literal["plain", "recompute"] = "plain"
    partial_channels: int = Field(1, ge=1)


SpaceConfig = Annotated[ResNetSpaceConfig | DartsSpaceConfig, Field(discriminator="kind")]


def _model_from_dataclass(
    name: str,
    cls: Any,
    *,
    kind: str | None = None,
    skip: Sequence[str] = (),
    extra_fields: Mapping[str, Any] | None = None,
) -> type[Section]:
    """A strict pydantic model with the fields (types and defaults) of a settings dataclass."""
    fields: dict[str, Any] = {}
    if kind is not None:
        fields["kind"] = (Literal[kind], ...)
    for f in dataclasses.fields(cls):
        if f.name in skip or f.name.startswith("_"):
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = ...
        fields[f.name] = (f.type, default)
    fields.update(extra_fields or {})
    return create_model(name, __base__=Section, **fields)


TrainEvaluatorConfig = _model_from_dataclass("TrainEvaluatorConfig", TrainEvaluator, kind="train")
SupernetEvaluatorConfig = _model_from_dataclass(
    "SupernetEvaluatorConfig", SupernetEvaluator, kind="supernet"
)
if TYPE_CHECKING:  # the sections below are built at run time from the settings dataclasses
    EvaluatorConfig = Section
else:
    EvaluatorConfig = Annotated[
        SupernetEvaluatorConfig | TrainEvaluatorConfig, Field(discriminator="kind")
    ]
_GLOBAL = ("seed", "seeds", "device", "progress", "worker_index")
DartsStrategyConfig = _model_from_dataclass(
    "DartsStrategyConfig", DartsSettings, kind="darts", skip=_GLOBAL
)
_OPTUNA_SKIP = (*_GLOBAL, "evaluator", "evaluator_settings")
_OPTUNA_EXTRA = {"evaluator": (EvaluatorConfig, SupernetEvaluatorConfig(kind="supernet"))}
OptunaStrategyConfig = _model_from_dataclass(
    "OptunaStrategyConfig",
    OptunaSettings,
    kind="optuna",
    skip=_OPTUNA_SKIP,
    extra_fields=_OPTUNA_EXTRA,
)
RandomStrategyConfig = _model_from_dataclass(
    "RandomStrategyConfig",
    OptunaSettings,
    kind="random",
    skip=(*_OPTUNA_SKIP, "sampler"),
    extra_fields=_OPTUNA_EXTRA,
)
if TYPE_CHECKING:
    StrategyConfig = Section
else:
    StrategyConfig = Annotated[
        OptunaStrategyConfig | DartsStrategyConfig | RandomStrategyConfig,
        Field(discriminator="kind"),
    ]


_SEED = Field(None, ge=0, lt=2**63)


class SeedsConfig(_Strict):
    """Per-stream seeds; each unset one is the run's ``seed`` (see convnas.seeding.STREAMS)."""

    data: int | None = _SEED  # the train/validation split and augmentation
    init: int | None = _SEED  # the weights' initial values
    batches: int | None = _SEED  # the batch order and supernet path draws
    sampler: int | None = _SEED  # the search's proposals

    def overrides(self) -> dict[str, int]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


class OutputConfig(_Strict):
    root: str = "runs"
    progress: bool = True
    report: bool = True


class Config(_Strict):
    """A whole search: what to search, on what data, how, and where to write."""

    name: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)
    seed: int = 0
    seeds: SeedsConfig = SeedsConfig()
    device: str = "auto"
    data: DataConfig = DataConfig()
    space: SpaceConfig = ResNetSpaceConfig()
    strategy: StrategyConfig = OptunaStrategyConfig(kind="optuna")
    output: OutputConfig = OutputConfig()

    def run_dir(self, default_name: str = "run") -> pathlib.Path:
        return pathlib.Path(self.output.root) / (self.name or default_name)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def strategy_settings(self) -> dict[str, Any]:
        """Keyword arguments of the strategy constructor."""
        settings = self.strategy.model_dump(exclude={"kind"})
        settings.update(
            seed=self.seed,
            seeds=self.seeds.overrides(),
            device=self.device,
            progress=self.output.progress,
        )
        if self.strategy.kind in ("optuna", "random"):
            evaluator = settings.pop("evaluator")
            settings["evaluator"] = evaluator.pop("kind")
            settings["evaluator_settings"] = evaluator
        return settings

    def space_settings(self) -> dict[str, Any]:
        return self.space.model_dump(exclude={"kind"})
