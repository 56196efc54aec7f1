"""The Architecture: a frozen, versioned, serialisable description of one discrete network.

An Architecture names its search space, the space's fixed settings, the operator and
hyper-parameters chosen at every decision, and metadata (costs, accuracy, strategy, ...). It is
data: YAML/JSON via ``yaml.safe_load``, never ``eval`` or pickle, and it is validated against the
operator registry and its search space on load. :func:`build_model` needs nothing from a search.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from convnas.errors import ArchitectureError
from convnas.io import write_json, write_yaml

if TYPE_CHECKING:
    from convnas.search_space.space import SearchSpace

__all__ = [
    "SCHEMA",
    "Architecture",
    "Choice",
    "freeze",
    "thaw",
]

SCHEMA = "convnas/architecture/v1"


class FrozenMapping(Mapping):
    """A read-only mapping that, unlike ``MappingProxyType``, copies and pickles."""

    __slots__ = ("_data",)
    _data: dict[str, Any]

    def __init__(self, data: Mapping[str, Any]) -> None:
        object.__setattr__(self, "_data", dict(data))

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        return hash(tuple(sorted(self._data.items())))

    def __repr__(self) -> str:
        return repr(self._data)

    def __reduce__(self):
        return (FrozenMapping, (self._data,))


def freeze(value: Any) -> Any:
    """Turn lists into tuples and dicts into read-only mappings, recursively."""
    if isinstance(value, Mapping):
        return FrozenMapping({str(k): freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """Inverse of :func:`freeze`: plain dicts and lists, ready for YAML or JSON."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [thaw(v) for v in value]
    return value


@dataclass(frozen=True)
class Choice:
    """The operator picked at one decision of a search space."""

    decision: str
    op: str
    hparams: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "hparams", freeze(dict(self.hparams)))

    def __hash__(self) -> int:
        return hash((self.decision, self.op, tuple(sorted(self.hparams.items()))))

    @property
    def kwargs(self) -> dict[str, Any]:
        """The hyper-parameters as keyword arguments for ``create_operator``."""
        return dict(self.hparams)

    @property
    def label(self) -> str:
        if not self.hparams:
            return self.op
        args = ",".join(f"{k}={thaw(v)}" for k, v in sorted(self.hparams.items()))
        return f"{self.op}({args})"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"decision": self.decision, "op": self.op}
        if self.hparams:
            out["hparams"] = thaw(self.hparams)
        return out


@dataclass(frozen=True)
class Architecture:
    """One discrete network of a search space.

    Attributes:
        space: the registered search-space name.
        settings: the space's fixed settings (depth, widths, channels, ...).
        choices: the operator at every decision, in the space's decision order.
        metadata: costs, accuracy, dataset, strategy, trial, versions, config hash.
    """

    space: str
    settings: Mapping[str, Any]
    choices: tuple[Choice, ...]
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "settings", freeze(dict(self.settings)))
        object.__setattr__(self, "choices", tuple(self.choices))
        object.__setattr__(self, "metadata", freeze(dict(self.metadata)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Architecture):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash((self.space, self.choices))

    def choice(self, decision: str) -> Choice:
        for c in self.choices:
            if c.decision == decision:
                return c
        raise ArchitectureError(f"architecture has no decision {decision!r}")

    def ops_used(self) -> dict[str, int]:
        """How often each operator is chosen."""
        counts: dict[str, int] = {}
        for c in self.choices:
            counts[c.op] = counts.get(c.op, 0) + 1
        return dict(sorted(counts.items()))

    def same_network(self, other: Architecture) -> bool:
        """Equal space, settings and choices (metadata ignored)."""
        return (
            self.space == other.space
            and thaw(self.settings) == thaw(other.settings)
            and self.choices == other.choices
        )

    def network_id(self) -> str:
        """A short hash of the network (space, settings, choices; metadata ignored): equal
        for two architectures exactly when :meth:`same_network` holds."""
        import hashlib
        import json

        text = json.dumps(
            [self.space, thaw(self.settings), [c.to_dict() for c in self.choices]],
            sort_keys=True,
            default=repr,
        )
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def with_metadata(self, **metadata: Any) -> Architecture:
        merged = {**thaw(self.metadata), **metadata}
        return replace(self, metadata=merged)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "space": self.space,
            "settings": thaw(self.settings),
            "choices": [c.to_dict() for c in self.choices],
            "metadata": thaw(self.metadata),
        }

    @classmethod
    def from_dict(cls, data: Any, *, validate: bool = True) -> Architecture:
        """Parse and (by default) validate a dict produced by :meth:`to_dict`.

        Raises:
            ArchitectureError: a field is missing or wrong; the message names it.
        """
        if not isinstance(data, Mapping):
            raise ArchitectureError(
                f"an architecture must be a mapping, but got {type(data).__name__}"
            )
        schema = data.get("schema")
        if schema != SCHEMA:
            raise ArchitectureError(f"schema: expected {SCHEMA!r}, but got {schema!r}")
        unknown = sorted(set(data) - {"schema", "space", "settings", "choices", "metadata"})
        if unknown:
            raise ArchitectureError(f"unknown top-level field(s) {unknown}")
        space = data.get("space")
        if not isinstance(space, str) or not space:
            raise ArchitectureError(f"space: expected a search-space name, but got {space!r}")
        settings = data.get("settings", {})
        if not isinstance(settings, Mapping):
            raise ArchitectureError(f"settings: expected a mapping, but got {settings!r}")
        metadata = data.get("metadata") or {}
        if not isinstance(metadata, Mapping):
            raise ArchitectureError(f"metadata: expected a mapping, but got {metadata!r}")
        raw_choices = data.get("choices")
        if not isinstance(raw_choices, list) or not raw_choices:
            raise ArchitectureError("choices: expected a non-empty list of {decision, op}")
        choices = [_parse_choice(i, c) for i, c in enumerate(raw_choices)]
        arch = cls(space=space, settings=settings, choices=tuple(choices), metadata=metadata)
        if validate:
            arch.validate()
        return arch

    def validate(self, space: SearchSpace | None = None) -> None:
        """Check operators and hyper-parameters against the operator registry and, when given,
        the decisions against ``space`` (the caller builds it, e.g. with ``space_of``)."""
        from convnas.operators import operator_info

        for i, c in enumerate(self.choices):
            try:
                info = operator_info(c.op)
            except KeyError as exc:
                raise ArchitectureError(f"choices[{i}].op: {exc}") from None
            allowed = info.hparam_names()
            if allowed is not None:
                bad = sorted(set(c.hparams) - set(allowed))
                if bad:
                    raise ArchitectureError(
                        f"choices[{i}].hparams: operator {c.op!r} has no hyper-parameter "
                        f"{', '.join(map(repr, bad))}; it accepts {sorted(allowed) or 'none'}"
                    )
        if space is not None:
            space.validate(self)

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)

    def save(self, path: str | pathlib.Path) -> pathlib.Path:
        """Write atomically as YAML (``.yaml``/``.yml``) or JSON (``.json``)."""
        path = pathlib.Path(path)
        if path.suffix == ".json":
            write_json(path, self.to_dict())
        else:
            write_yaml(path, self.to_dict())
        return path


def _parse_choice(index: int, raw: Any) -> Choice:
    where = f"choices[{index}]"
    if not isinstance(raw, Mapping):
        raise ArchitectureError(f"{where}: expected a mapping with 'decision' and 'op'")
    unknown = sorted(set(raw) - {"decision", "op", "hparams"})
    if unknown:
        raise ArchitectureError(f"{where}: unknown field(s) {unknown}")
    decision, op = raw.get("decision"), raw.get("op")
    if not isinstance(decision, str) or not decision:
        raise ArchitectureError(f"{where}.decision: expected a string, but got {decision!r}")
    if not isinstance(op, str) or not op:
        raise ArchitectureError(f"{where}.op: expected an operator name, but got {op!r}")
    hparams = raw.get("hparams") or {}
    if not isinstance(hparams, Mapping):
        raise ArchitectureError(f"{where}.hparams: expected a mapping, but got {hparams!r}")
    return Choice(decision=decision, op=op, hparams=hparams)
