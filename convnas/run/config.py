"""A search config: YAML -> the typed schema (:mod:`convnas.run.schema`) -> one builder per
section. Unknown keys and bad values raise
:class:`~convnas.errors.ConfigError` naming the dotted key, the value and what is allowed.
YAML is read with ``yaml.safe_load`` only. ``--set a.b=c`` overrides are applied before
validation.
"""

from __future__ import annotations

import difflib
import pathlib
import re
import typing
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from convnas.errors import ConfigError, ConvNASError
from convnas.io import parse_yaml, read_yaml
from convnas.run.schema import Config

if TYPE_CHECKING:
    from convnas.search_space import SearchSpace
    from convnas.strategies import SearchStrategy

__all__ = [
    "Config",
    "apply_overrides",
    "build_space",
    "build_strategy",
    "load_config",
    "parse_config",
]


def _loc(loc: Sequence[Any], union_tags: set[str]) -> str:
    parts: list[str] = []
    for i, part in enumerate(loc):
        if isinstance(part, int):
            parts[-1:] = [f"{parts[-1]}[{part}]"] if parts else [f"[{part}]"]
            continue
        # pydantic puts the discriminator value (or the member type) inside union paths
        if i > 0 and (part in union_tags or part.startswith(("str", "CandidateConfig"))):
            continue
        parts.append(str(part))
    return ".".join(parts)


_TAGS = {"optuna", "darts", "random", "resnet", "train", "supernet"}


def _did_you_mean(name: str, known: Sequence[str]) -> str:
    if not known:
        return " (check the spelling; see the documented keys of this section)"
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
    return f"{hint} (allowed: {', '.join(sorted(known))})"


def _members(tp: Any) -> list[type[BaseModel]]:
    """The pydantic models in a field type (through unions, Optional, Annotated)."""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [tp]
    return [m for arg in typing.get_args(tp) for m in _members(arg)]


def _keys_at(loc: Sequence[Any]) -> list[str]:
    """The keys the section holding ``loc[-1]`` accepts ([] when it cannot be told)."""
    models: list[type[BaseModel]] = [Config]
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        tagged = [
            m
            for m in models
            if "kind" in m.model_fields
            and typing.get_args(m.model_fields["kind"].annotation) == (part,)
        ]
        if tagged:  # pydantic's loc names the union member by its tag
            models = tagged
            continue
        fields = [m.model_fields[part] for m in models if part in m.model_fields]
        models = [m for f in fields for m in _members(f.annotation)]
        if not models:
            return []
    return sorted({k for m in models for k in m.model_fields})


def _format_error(exc: ValidationError) -> ConfigError:
    errors = exc.errors(include_url=False)
    first = errors[0]
    key = _loc(first["loc"], _TAGS)
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        message = f"unknown key{_did_you_mean(str(first['loc'][-1]), _keys_at(first['loc']))}"
    elif first["type"] == "union_tag_invalid":
        tag = str(first["ctx"]["tag"])
        expected = re.findall(r"'([^']+)'", first["ctx"]["expected_tags"])
        message = f"unknown kind {tag!r}{_did_you_mean(tag, expected)}"
    elif "input" in first and first["type"] != "missing":
        message = f"{message}, but got {first['input']!r}"
    if len(errors) > 1:
        others = "; ".join(f"{_loc(e['loc'], _TAGS)}: {e['msg']}" for e in errors[1:4])
        message += f" (also: {others})"
    return ConfigError(message, key=key or None)


def parse_config(data: Any) -> Config:
    """Validate a config mapping, including the registry-dependent checks.

    Raises:
        ConfigError: naming the dotted key of the first problem.
    """
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"a config must be a mapping of sections, but got {type(data).__name__}")
    data = _default_kinds(data)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise _format_error(exc) from None
    _check_against_registries(config)
    return config


def _default_kinds(data: Mapping[str, Any]) -> dict[str, Any]:
    """``space.kind`` defaults to "resnet", ``strategy.evaluator.kind`` to "supernet", and an
    Optuna or random search's ``strategy.study_name`` to the run's name (so config.yaml
    records it)."""
    data = dict(_deep_copy(data))
    space = data.get("space")
    if isinstance(space, dict):
        space.setdefault("kind", "resnet")
    if data.get("strategy") is None:
        data["strategy"] = {"kind": "optuna"}
    strategy = data.get("strategy")
    if isinstance(strategy, dict) and isinstance(strategy.get("evaluator"), dict):
        strategy["evaluator"].setdefault("kind", "supernet")
    if isinstance(strategy, dict) and strategy.get("kind") in ("optuna", "random"):
        if strategy.get("study_name") is None:
            name = data.get("name")
            strategy["study_name"] = name if isinstance(name, str) and name else "run"
    return data


def _check_against_registries(config: Config) -> None:
    from convnas.data import list_datasets
    from convnas.search_space.space import parse_candidates
    from convnas.strategies.base import STRATEGIES

    if config.data.dataset not in list_datasets():
        from difflib import get_close_matches

        close = get_close_matches(config.data.dataset, list_datasets(), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            f"unknown dataset {config.data.dataset!r}{hint} (available: {list_datasets()})",
            key="data.dataset",
        )
    candidates = [c if isinstance(c, str) else c.model_dump() for c in config.space.candidates]
    parse_candidates(candidates, key="space.candidates")
    if config.strategy.kind not in STRATEGIES:
        raise ConfigError(
            f"strategy {config.strategy.kind!r} is not available (is optuna installed?)",
            key="strategy.kind",
        )
    try:
        build_strategy(config)
    except ConfigError as exc:
        raise _rekey(exc, "strategy") from None
    check_device(config.device)
    if config.data.val_fraction <= 0:
        raise ConfigError(
            "must be > 0: a search scores architectures on the validation split, but got "
            f"{config.data.val_fraction!r}; use e.g. 0.2",
            key="data.val_fraction",
        )
    storage = getattr(config.strategy, "storage", None)
    if storage is not None:
        check_storage_url(storage)


DEVICE_TYPES = ("cpu", "cuda", "mps")


def check_device(spec: str) -> None:
    """``spec`` names a device convnas can train on here (cpu, cuda[:N], mps, or auto)."""
    import torch

    if spec == "auto":
        return
    try:
        device = torch.device(spec)
    except (RuntimeError, TypeError):
        raise ConfigError(
            f"not a device: {spec!r}; use auto, cpu, cuda, cuda:N or mps", key="device"
        ) from None
    if device.type not in DEVICE_TYPES:
        raise ConfigError(
            f"convnas trains on {', '.join(DEVICE_TYPES)}, but got {spec!r}; use auto or cpu",
            key="device",
        )
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"{spec!r} requested but CUDA is not available", key="device")
        if device.index is not None and device.index >= count:
            raise ConfigError(
                f"{spec!r} requested but this machine has {count} CUDA device(s)", key="device"
            )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"{spec!r} requested but MPS is not available", key="device")


def check_storage_url(url: str) -> None:
    """An Optuna storage URL whose scheme and driver exist (nothing is opened or created)."""
    key = "strategy.storage"
    if url.startswith("journal:"):
        path = pathlib.Path(url[len("journal:") :]).expanduser()
        if not url[len("journal:") :] or path.is_dir():
            raise ConfigError(f"journal:PATH needs a file path, but got {url!r}", key=key)
        return
    if "://" not in url:
        raise ConfigError(
            f"expected an Optuna storage URL (sqlite:///PATH, postgresql://..., mysql://...) "
            f"or journal:PATH, but got {url!r}",
            key=key,
        )
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        parsed = make_url(url)
        parsed.get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError) as exc:
        raise ConfigError(
            f"not a usable storage URL {url!r} ({exc}); use sqlite:///PATH, "
            f"postgresql+psycopg2://..., mysql+pymysql://... or journal:PATH",
            key=key,
        ) from None
    except ImportError as exc:
        raise ConfigError(
            f"the database driver for {url.split('://', 1)[0]}:// is not installed ({exc})",
            key=key,
        ) from None
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        parent = pathlib.Path(parsed.database).expanduser().parent
        if not parent.is_dir():
            raise ConfigError(
                f"the directory {parent} of the SQLite file in {url!r} does not exist; create "
                f"it first or use another path",
                key=key,
            )


def _rekey(exc: ConfigError, section: str) -> ConfigError:
    if exc.key and not exc.key.startswith(f"{section}."):
        message = str(exc)[len(exc.key) + 2 :]
        return ConfigError(message, key=f"{section}.{exc.key}")
    if exc.key is None:
        return ConfigError(str(exc), key=section)
    return exc


def build_strategy(config: Config) -> SearchStrategy:
    from convnas.strategies.base import get_strategy

    return get_strategy(config.strategy.kind, **config.strategy_settings())


def build_space(config: Config, *, input_shape: Sequence[int], num_classes: int) -> SearchSpace:
    """The search space of ``config`` for data of ``input_shape`` and ``num_classes``."""
    from convnas.search_space import get_space

    candidates = [c if isinstance(c, str) else c.model_dump() for c in config.space.candidates]
    try:
        settings = config.space_settings() | {"candidates": candidates}
        space = get_space(
            config.space.kind, input_shape=list(input_shape), num_classes=num_classes, **settings
        )
        space.decisions()
    except ConfigError as exc:
        raise _rekey(exc, "space") from None
    except ConvNASError as exc:
        raise ConfigError(str(exc), key="space") from None
    return space


_SET = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)=(.*)$", re.S)


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``a.b=c`` overrides; values are parsed as YAML (numbers, lists, booleans)."""
    result = _deep_copy(data)
    for item in overrides:
        m = _SET.match(item)
        if not m:
            raise ConfigError(f"--set expects KEY.PATH=VALUE, but got {item!r}")
        path, raw = m.group(1).split("."), m.group(2)
        try:
            value = parse_yaml(raw, f"--set {m.group(1)}") if raw.strip() else None
        except ConfigError as exc:
            if "alias" in str(exc) or "nested too deeply" in str(exc):
                raise
            value = raw
        node = result
        for i, part in enumerate(path[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(
                    f"cannot set a key below a value (--set {item})", key=".".join(path[: i + 1])
                )
            node = child
        node[path[-1]] = value
    return result


def _deep_copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


def load_config(path: str | pathlib.Path, overrides: Sequence[str] = ()) -> Config:
    """Read a YAML config (``yaml.safe_load``), apply overrides, validate.

    The run name defaults to the file's stem.
    """
    path = pathlib.Path(path)
    data = read_yaml(path)
    if data is None:
        raise ConfigError(
            f"{path} is empty; a config needs at least its sections (see configs/quickstart.yaml)"
        )
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: a config must be a mapping of sections")
    data = apply_overrides(data, overrides)
    data.setdefault("name", re.sub(r"[^A-Za-z0-9_.-]", "_", path.stem) or "run")
    return parse_config(data)
