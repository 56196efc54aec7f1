"""The search-space interface: candidates, decisions, the abstract :class:`SearchSpace`, the
registry of spaces, and building or loading the network an architecture describes."""

from __future__ import annotations

import abc
import pathlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from convnas.errors import ArchitectureError, ConfigError, ConvNASError
from convnas.io import read_yaml
from convnas.registry import Registry
from convnas.search_space.architecture import Architecture, Choice, freeze, thaw

if TYPE_CHECKING:
    from convnas.search_space.supernet import Supernet

__all__ = [
    "SEARCH_SPACES",
    "Candidate",
    "Decision",
    "SearchSpace",
    "Site",
    "build_model",
    "get_space",
    "list_spaces",
    "load_architecture",
    "parse_candidates",
    "register_space",
    "space_of",
]


@dataclass(frozen=True)
class Candidate:
    """An operator with fixed hyper-parameters, as offered at a decision.

    Hyper-parameters left out are either the operator's defaults (DARTS, supernets) or, for
    strategies that sample them (Optuna), drawn from the operator's registered search space.
    """

    op: str
    hparams: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "hparams", freeze(dict(self.hparams)))

    def __hash__(self) -> int:
        return hash((self.op, tuple(sorted(self.hparams.items()))))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Candidate):
            return NotImplemented
        return self.op == other.op and dict(self.hparams) == dict(other.hparams)

    @property
    def label(self) -> str:
        return Choice("", self.op, self.hparams).label

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.hparams)

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.op, "hparams": thaw(self.hparams)} if self.hparams else {"op": self.op}


def size_shared_generators(
    candidates: Sequence[Candidate], conv_weights: int
) -> tuple[Candidate, ...]:
    """Give every CSG candidate that leaves its generator unset one sized for the network.

    ``conv_weights``: the 3x3 weights of the space's plain network at its conv positions.
    The paper sizes its generator for ResNet-56; the operator's default (``[16,16,3,3]``-128,
    294,912 parameters) would make a small network's CSG variant heavier than the plain one.
    The size chosen is written into the candidate, so architecture files record it.
    """
    from convnas.operators.csg import generator_for

    out = []
    for cand in candidates:
        if cand.op == "csg_conv_3x3" and not {"slice_shape", "code_size"} & set(cand.hparams):
            shape, code_size = generator_for(conv_weights)
            cand = Candidate(
                cand.op, {**cand.hparams, "slice_shape": list(shape), "code_size": code_size}
            )
        out.append(cand)
    return tuple(out)


def parse_candidates(specs: Sequence[Any], *, key: str = "candidates") -> tuple[Candidate, ...]:
    """Parse a candidate list: names, ``{op: name, hparams: {...}}`` mappings or Candidates.

    Every name is checked against the operator registry.

    Raises:
        ConfigError: an entry is malformed or names an unknown operator.
    """
    from convnas.operators import operator_info

    if isinstance(specs, (str, bytes)) or not isinstance(specs, Sequence) or not specs:
        raise ConfigError("expected a non-empty list of operator names", key=key)
    out: list[Candidate] = []
    for i, spec in enumerate(specs):
        where = f"{key}[{i}]"
        if isinstance(spec, Candidate):
            cand = spec
        elif isinstance(spec, str):
            cand = Candidate(spec)
        elif isinstance(spec, Mapping):
            extra = sorted(set(spec) - {"op", "hparams"})
            if extra or "op" not in spec:
                raise ConfigError(
                    f"expected {{op: NAME, hparams: {{...}}}}, but got keys {sorted(spec)}",
                    key=where,
                )
            if not isinstance(spec.get("hparams") or {}, Mapping):
                raise ConfigError("hparams must be a mapping", key=f"{where}.hparams")
            cand = Candidate(str(spec["op"]), spec.get("hparams") or {})
        else:
            raise ConfigError(f"expected an operator name or mapping, got {spec!r}", key=where)
        try:
            info = operator_info(cand.op)
        except KeyError as exc:
            raise ConfigError(str(exc), key=where) from None
        allowed = info.hparam_names()
        if allowed is not None:
            bad = sorted(set(cand.hparams) - set(allowed))
            if bad:
                raise ConfigError(
                    f"operator {cand.op!r} has no hyper-parameter {bad}; it accepts "
                    f"{sorted(allowed) or 'none'}",
                    key=f"{where}.hparams",
                )
        if cand in out:
            raise ConfigError(f"candidate {cand.label!r} is listed twice", key=where)
        out.append(cand)
    return tuple(out)


@dataclass(frozen=True)
class Site:
    """One place where a decision's operator is instantiated (a decision may have several)."""

    in_channels: int
    out_channels: int
    stride: int
    input_hw: tuple[int, int]


@dataclass(frozen=True)
class Decision:
    """A choice of operator in a search space.

    Attributes:
        name: unique within the space; used as the key of the architecture logits.
        candidates: what may be chosen here (already filtered for stride and channels).
        sites: where the chosen operator is built (for cost tables).
    """

    name: str
    candidates: tuple[Candidate, ...]
    sites: tuple[Site, ...]

    def index(self, choice: Choice | Candidate) -> int:
        """Position of the candidate matching ``choice`` (operator and hyper-parameters)."""
        target = Candidate(choice.op, choice.hparams)
        for i, cand in enumerate(self.candidates):
            if cand == target:
                return i
        raise ArchitectureError(
            f"decision {self.name!r} offers no candidate {target.label!r}; "
            f"it offers {[c.label for c in self.candidates]}"
        )


class SearchSpace(abc.ABC):
    """A family of networks: decisions, a supernet over them and discrete models.

    Subclasses are registered in :data:`convnas.search_space.SEARCH_SPACES` and constructed with
    keyword settings (plus ``candidates`` when used for a search).
    """

    name: ClassVar[str]

    @abc.abstractmethod
    def settings(self) -> dict[str, Any]:
        """The fixed settings, enough to rebuild the space (stored in every Architecture)."""

    @property
    @abc.abstractmethod
    def input_shape(self) -> tuple[int, int, int]:
        """``(channels, height, width)`` of the network input."""

    @abc.abstractmethod
    def decisions(self) -> list[Decision]:
        """Every decision, in a fixed order."""

    @abc.abstractmethod
    def build_supernet(
        self,
        mode: str = "weighted",
        *,
        generator: torch.Generator | None = None,
        memory: str | None = None,
    ) -> Supernet:
        """A network holding every candidate at every decision; ``generator`` draws the
        initial architecture logits; ``memory`` ("plain" or "recompute", default: the space's
        ``memory`` setting) is the memory mode of its weighted and Gumbel MixedOps."""

    @abc.abstractmethod
    def build_model(self, arch: Architecture) -> nn.Module:
        """The standalone network of ``arch`` (already validated)."""

    def validate(self, arch: Architecture) -> None:
        """Check that ``arch`` makes exactly this space's decisions with offered operators."""
        if arch.space != self.name:
            raise ArchitectureError(f"space: expected {self.name!r}, but got {arch.space!r}")
        names = [d.name for d in self.decisions()]
        got = [c.decision for c in arch.choices]
        if got != names:
            missing = [n for n in names if n not in got]
            extra = [n for n in got if n not in names]
            raise ArchitectureError(
                f"choices: space {self.name!r} has {len(names)} decisions but the architecture "
                f"makes {len(got)}; missing {missing[:5]}, unexpected {extra[:5]}"
                + ("" if missing or extra else " (order differs)")
            )
        self._check_ops_at_sites(arch)

    def _check_ops_at_sites(self, arch: Architecture) -> None:
        from convnas.operators import operator_info

        by_name = {d.name: d for d in self.decisions()}
        for i, c in enumerate(arch.choices):
            info = operator_info(c.op)
            for site in by_name[c.decision].sites:
                if site.stride not in info.strides or (
                    site.in_channels != site.out_channels and not info.channel_change
                ):
                    raise ArchitectureError(
                        f"choices[{i}]: operator {c.op!r} cannot serve decision {c.decision!r} "
                        f"(stride {site.stride}, {site.in_channels}->{site.out_channels} "
                        f"channels; it supports strides {info.strides}, channel change "
                        f"{info.channel_change})"
                    )

    def derive(self, supernet: Supernet) -> Architecture:
        """The architecture with the highest-probability candidate at every decision."""
        indices = {n: int(p.detach().argmax()) for n, p in supernet.arch.alphas.items()}
        return self.architecture(indices, {"derived_from": "argmax(alpha)"})

    def complete_path(self, indices: Mapping[str, int]) -> dict[str, int]:
        """A supernet path (every decision) from an architecture's choices."""
        return dict(indices)

    def architecture(
        self, indices: Mapping[str, int] | Sequence[int], metadata: Mapping[str, Any] | None = None
    ) -> Architecture:
        """The Architecture picking candidate ``indices[d]`` at every decision ``d``."""
        decisions = self.decisions()
        if not isinstance(indices, Mapping):
            if len(indices) != len(decisions):
                raise ArchitectureError(
                    f"expected {len(decisions)} candidate indices, got {len(indices)}"
                )
            indices = {d.name: i for d, i in zip(decisions, indices, strict=True)}
        choices = []
        for d in decisions:
            cand = d.candidates[indices[d.name]]
            choices.append(Choice(d.name, cand.op, cand.hparams))
        return Architecture(self.name, self.settings(), tuple(choices), metadata or {})


def candidate_fits(op: str, site: Site) -> bool:
    """Whether operator ``op`` supports the stride and channel change of ``site``."""
    from convnas.operators import operator_info

    info = operator_info(op)
    return site.stride in info.strides and (
        site.in_channels == site.out_channels or info.channel_change
    )


SEARCH_SPACES: Registry[type[SearchSpace]] = Registry("search space")


def register_space(cls: type[SearchSpace], *, replace: bool = False) -> type[SearchSpace]:
    """Register a :class:`SearchSpace` subclass under its ``name`` (usable as a decorator)."""
    SEARCH_SPACES.add(cls.name, cls, replace=replace)
    return cls


def list_spaces(pattern: str = "*") -> list[str]:
    """The names of the registered search spaces matching ``pattern``."""
    return SEARCH_SPACES.names(pattern)


def get_space(name: str, **settings: Any) -> SearchSpace:
    """Construct the registered space ``name`` with ``settings``.

    Raises:
        UnknownNameError: no such space (a KeyError listing close matches).
        ConfigError: a setting is unknown or invalid.
    """
    result: SearchSpace = SEARCH_SPACES.construct(name, **settings)
    return result


def space_of(arch: Architecture) -> SearchSpace:
    """The space ``arch`` was drawn from, with the settings it records."""
    try:
        return get_space(arch.space, **thaw(arch.settings))
    except KeyError as exc:
        raise ArchitectureError(f"space: {exc}") from None
    except ConfigError as exc:
        raise ArchitectureError(f"settings: {exc}") from None


def load_architecture(path: str | pathlib.Path, *, validate: bool = True) -> Architecture:
    """Read an architecture file (YAML or JSON) and validate it against its space.

    Raises:
        ArchitectureError: the file is unreadable, truncated or does not describe a valid
            architecture; the message names the file and the field.
    """
    path = pathlib.Path(path)
    try:
        data = read_yaml(path)
    except ConfigError as exc:
        raise ArchitectureError(str(exc)) from None
    try:
        arch = Architecture.from_dict(data, validate=validate)
        if validate:
            arch.validate(space_of(arch))
    except ArchitectureError as exc:
        raise ArchitectureError(f"{path}: {exc}") from None
    return arch


def build_model(arch: Architecture) -> nn.Module:
    """Build the standalone network an architecture describes."""
    try:
        space = get_space(arch.space, **thaw(arch.settings))
    except ConvNASError as exc:
        raise ArchitectureError(f"cannot build {arch.space!r}: {exc}") from None
    space.validate(arch)
    return space.build_model(arch)
