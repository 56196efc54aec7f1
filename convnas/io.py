"""Safe, atomic file I/O for run state: YAML/JSON, checkpoints, text.

Every write goes to a temporary file in the destination's directory, is flushed and fsynced,
then renamed over the destination, so a crash leaves either the old file or the new one, never
a half-written one. Checkpoints load with ``torch.load(weights_only=True)`` only.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import pathlib
import tempfile
from collections.abc import Iterator
from typing import Any

import yaml

from convnas.errors import CheckpointError, ConfigError

__all__ = [
    "atomic_open",
    "atomic_write_bytes",
    "atomic_write_text",
    "load_checkpoint",
    "parse_yaml",
    "read_yaml",
    "save_checkpoint",
    "write_json",
    "write_yaml",
]

PathLike = str | os.PathLike
_CHECKPOINT_FORMAT = "convnas/checkpoint/v1"


def _default_mode(path: pathlib.Path) -> int:
    try:
        return path.stat().st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


@contextlib.contextmanager
def atomic_open(path: PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[Any]:
    """Open a temporary file beside ``path``; on success fsync it and rename it to ``path``."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open supports modes 'w' and 'wb', but got {mode!r}")
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, _default_mode(path))  # mkstemp creates 0600; keep the usual permissions
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable where supported
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def atomic_write_text(path: PathLike, text: str) -> None:
    with atomic_open(path, "w") as handle:
        handle.write(text)


def write_yaml(path: PathLike, data: Any) -> None:
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False, default_flow_style=None))


def write_json(path: PathLike, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


# A YAML document may share nodes through aliases; expanded, a 1 KB file can stand for 9**10
# values. No config or architecture file comes near this many.
MAX_YAML_NODES = 1_000_000


class _StrictSafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` (same tags, nothing executed) that refuses duplicate keys."""

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, Any] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node)
                except TypeError:
                    continue  # an unhashable key: SafeConstructor reports it
                if first is not key_node:
                    raise yaml.constructor.ConstructorError(
                        None,
                        None,
                        f"duplicate key {key!r} (first on line {first.start_mark.line + 1}, "
                        f"again on line {key_node.start_mark.line + 1}); keep one of them",
                        key_node.start_mark,
                    )
        return super().construct_mapping(node, deep=deep)


def _expanded_size(value: Any, path: pathlib.Path, limit: int = MAX_YAML_NODES) -> int:
    """The number of values ``value`` stands for with every alias expanded; refuses cycles
    (a recursive alias) and more than ``limit`` values without expanding anything."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(v: Any) -> int:
        if not isinstance(v, (dict, list)):
            return 1
        key = id(v)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise ConfigError(f"{path}: a YAML alias refers to itself (a recursive alias)")
        active.add(key)
        children = v.values() if isinstance(v, dict) else v
        total = 1
        for child in children:
            total += size(child)
            if total > limit:
                raise ConfigError(
                    f"{path}: the YAML aliases expand to more than {limit} values (an alias "
                    f"bomb?); write the document without nested aliases"
                )
        active.discard(key)
        sizes[key] = total
        return total

    return size(value)


def read_yaml(path: PathLike) -> Any:
    """Parse a YAML (or JSON) file with safe-load semantics; errors name the file and line.

    Duplicate keys are an error, and so is a document whose aliases expand to more than
    :data:`MAX_YAML_NODES` values or refer to themselves.
    """
    path = pathlib.Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"file not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"{path} is a directory, not a YAML file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    return parse_yaml(text, path)


def parse_yaml(text: str, source: PathLike = "<text>") -> Any:
    """Parse YAML ``text`` as :func:`read_yaml` does; errors name ``source`` and the line."""
    path = pathlib.Path(source)
    try:
        data = yaml.load(text, Loader=_StrictSafeLoader)  # noqa: S506 (a SafeLoader)
        _expanded_size(data, path)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        context = f"{exc.context}; " if exc.context else ""
        raise ConfigError(f"{path}{where} is not valid YAML: {context}{exc.problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {' '.join(str(exc).split())}") from None
    except RecursionError:
        raise ConfigError(f"{path}: the YAML document is nested too deeply") from None
    return data


def save_checkpoint(path: PathLike, state: dict[str, Any]) -> None:
    """Serialise ``state`` with ``torch.save``, seal it with a SHA-256 digest, write atomically.

    The file holds ``{"format": ..., "sha256": digest, "payload": bytes of torch.save(state)}``
    so that truncation or corruption anywhere is detected on load. The digest is stored beside
    the payload, so it detects corruption, not tampering: anyone can write a sealed file. What
    is loaded is still restricted to tensors and plain containers (``weights_only=True``), and
    callers check its contents.
    """
    import torch

    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    sealed = io.BytesIO()
    torch.save(
        {
            "format": _CHECKPOINT_FORMAT,
            "sha256": hashlib.sha256(payload).hexdigest(),
            "payload": torch.frombuffer(bytearray(payload), dtype=torch.uint8),
        },
        sealed,
    )
    atomic_write_bytes(path, sealed.getvalue())


def load_checkpoint(path: PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (``weights_only=True``).

    Raises:
        CheckpointError: the file is missing, truncated, corrupt or not a checkpoint.
    """
    import torch

    path = pathlib.Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        sealed = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or unsafe files
        raise CheckpointError(
            f"cannot load checkpoint {path}: it is truncated, corrupt or holds objects that "
            f"are not plain tensors and containers ({_reason(exc)}); it is not loaded"
        ) from None
    if not isinstance(sealed, dict) or sealed.get("format") != _CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} does not hold a convnas checkpoint")
    payload = sealed.get("payload")
    if not isinstance(payload, torch.Tensor) or payload.dtype != torch.uint8:
        raise CheckpointError(f"{path} is damaged: its payload is missing")
    data = payload.numpy().tobytes()
    if hashlib.sha256(data).hexdigest() != sealed.get("sha256"):
        raise CheckpointError(
            f"{path} is corrupt: its SHA-256 digest does not match its contents (the seal "
            f"detects corruption, not tampering)"
        )
    try:
        state = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"cannot load checkpoint {path}: its payload holds objects that are not plain "
            f"tensors and containers, or is corrupt ({_reason(exc)}); it is not loaded"
        ) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} does not hold a convnas checkpoint (a dict)")
    return state


def _reason(exc: BaseException) -> str:
    """The first line of a loader error, without PyTorch's advice to load with
    ``weights_only=False`` (which would execute whatever the file holds)."""
    lines = [
        line.strip()
        for line in str(exc).splitlines()
        if line.strip() and "weights_only" not in line and "torch.serialization" not in line
    ]
    return f"{type(exc).__name__}: {lines[0][:200]}" if lines else type(exc).__name__
