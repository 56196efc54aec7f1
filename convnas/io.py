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


def read_yaml(path: PathLike) -> Any:
    """Parse a YAML (or JSON) file with ``yaml.safe_load``; errors name the file and line."""
    path = pathlib.Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"file not found: {path}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text: {exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None


def save_checkpoint(path: PathLike, state: dict[str, Any]) -> None:
    """Serialise ``state`` with ``torch.save``, seal it with a SHA-256 digest, write atomically.

    The file holds ``{"format": ..., "sha256": digest, "payload": bytes of torch.save(state)}``
    so that truncation or tampering anywhere is detected on load.
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
        CheckpointError: the file is missing, truncated, tampered with or not a checkpoint.
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
            f"are not plain tensors and containers ({type(exc).__name__}: {exc})"
        ) from None
    if not isinstance(sealed, dict) or sealed.get("format") != _CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} does not hold a convnas checkpoint")
    payload = sealed.get("payload")
    if not isinstance(payload, torch.Tensor) or payload.dtype != torch.uint8:
        raise CheckpointError(f"{path} is damaged: its payload is missing")
    data = payload.numpy().tobytes()
    if hashlib.sha256(data).hexdigest() != sealed.get("sha256"):
        raise CheckpointError(
            f"{path} is damaged or was modified: its SHA-256 digest does not match its contents"
        )
    try:
        state = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"cannot load checkpoint {path}: {type(exc).__name__}: {exc}"
        ) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} does not hold a convnas checkpoint (a dict)")
    return state
