"""What makes a directory a convnas run directory, and who may write into it.

- **Marker.** :data:`MARKER` (``.convnas-run``, JSON) is written when convnas creates a run
  directory. convnas writes into an existing non-empty directory only when it carries the marker
  (or is a run directory of a convnas version before the marker: a ``run_info.json`` naming the
  convnas and torch versions, which is then adopted), so ``--name notes`` never overwrites a
  directory of someone else's files.
- **Lock.** :func:`run_lock` holds an ``flock`` on :data:`LOCK` for the whole search: exclusive
  for DARTS, shared for Optuna (the workers and nodes of one study share its run directory by
  design). A second search that cannot take it stops with a message naming the holder (pid,
  host, start time, as the holder wrote them into the lock file). The kernel drops the lock when
  its holder dies, so a killed search never leaves a stale lock.
- **Deleting.** :func:`remove_written` deletes only regular files convnas recorded writing (the
  marker's ``written`` list), never through a symbolic link.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import pathlib
import socket
from collections.abc import Iterable, Iterator
from typing import Any

from convnas.errors import ConfigError
from convnas.io import write_json

__all__ = [
    "LOCK",
    "MARKER",
    "check_writable_run_dir",
    "create_run_dir",
    "forget_written",
    "is_run_dir",
    "record_written",
    "remove_written",
    "run_lock",
    "written_files",
]

MARKER = ".convnas-run"
LOCK = ".convnas-lock"
MARKER_FORMAT = "convnas/run/v1"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _read_marker(run_dir: pathlib.Path) -> dict[str, Any] | None:
    path = run_dir / MARKER
    if path.is_symlink() or not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == MARKER_FORMAT else None


def _is_legacy_run(run_dir: pathlib.Path) -> bool:
    """A run directory written before the marker existed: its run_info.json names versions."""
    info = run_dir / "run_info.json"
    if info.is_symlink() or not info.is_file():
        return False
    try:
        data = json.loads(info.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "convnas" in data and "torch" in data


def is_run_dir(run_dir: str | os.PathLike[str]) -> bool:
    """Whether ``run_dir`` carries the marker (or is a run directory of an older convnas)."""
    run_dir = pathlib.Path(run_dir)
    return _read_marker(run_dir) is not None or _is_legacy_run(run_dir)


def check_writable_run_dir(run_dir: pathlib.Path) -> None:
    """Refuse a path that exists but is not a directory, a symbolic link, or a non-empty
    directory convnas did not create. Writes nothing.

    Raises:
        ConfigError: naming the directory and the fix.
    """
    fix = "choose another run name (--name) or output root (--set output.root=DIR)"
    if run_dir.is_symlink():
        raise ConfigError(
            f"{run_dir} is a symbolic link; convnas does not write run files through links: {fix}",
            key="output.run_dir",
        )
    if not run_dir.exists():
        for parent in run_dir.parents:
            if parent.exists() and not parent.is_dir():
                raise ConfigError(
                    f"{parent} is a file, not a directory, so the run directory {run_dir} "
                    f"cannot be created: {fix}",
                    key="output.root",
                )
        return
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir} exists and is not a directory: {fix}", key="output.run_dir")
    if any(not _own(p.name) for p in run_dir.iterdir()) and not is_run_dir(run_dir):
        raise ConfigError(
            f"{run_dir} is a non-empty directory that is not a convnas run directory (it has no "
            f"{MARKER} file); convnas will not write into it: {fix}",
            key="output.run_dir",
        )
    arch = run_dir / "architectures"
    if arch.is_symlink():
        raise ConfigError(
            f"{arch} is a symbolic link; convnas does not write or delete through links: "
            f"remove the link, or {fix}",
            key="output.run_dir",
        )


# What a search starting at the same moment may already have put there (the lock files, the
# marker while it is being written atomically as ".NAME.XXXX.tmp").
_OWN = (MARKER, LOCK, ".study.lock", ".evaluator.lock")


def _own(name: str) -> bool:
    return name in _OWN or (name.startswith(".") and name.endswith(".tmp"))


def create_run_dir(run_dir: pathlib.Path) -> None:
    """Create ``run_dir`` (checked by :func:`check_writable_run_dir`) and write its marker."""
    run_dir.mkdir(parents=True, exist_ok=True)
    if _read_marker(run_dir) is None:
        write_json(run_dir / MARKER, {"format": MARKER_FORMAT, "created": _now(), "written": []})


def written_files(run_dir: pathlib.Path) -> list[str]:
    """The paths (relative to ``run_dir``) convnas recorded writing there."""
    marker = _read_marker(run_dir)
    files = (marker or {}).get("written") or []
    return [f for f in files if isinstance(f, str)]


def _update(run_dir: pathlib.Path, files: list[str]) -> None:
    # A directory a library caller handed to a strategy becomes a run directory here.
    marker = _read_marker(run_dir) or {"format": MARKER_FORMAT, "created": _now()}
    marker["written"] = sorted(set(files))
    write_json(run_dir / MARKER, marker)


def record_written(run_dir: pathlib.Path, paths: Iterable[pathlib.Path]) -> None:
    """Record files convnas wrote under ``run_dir`` (so that it may replace them later)."""
    rel = [os.path.relpath(p, run_dir) for p in paths]
    _update(run_dir, [*written_files(run_dir), *rel])


def forget_written(run_dir: pathlib.Path, paths: Iterable[str]) -> None:
    gone = set(paths)
    _update(run_dir, [f for f in written_files(run_dir) if f not in gone])


def remove_written(run_dir: pathlib.Path, rel_path: str) -> bool:
    """Delete ``run_dir/rel_path`` if convnas recorded writing it and it is a regular file
    reached without following a symbolic link; True when it was deleted."""
    if rel_path not in written_files(run_dir):
        return False
    path = run_dir / rel_path
    for part in [path, *path.relative_to(run_dir).parents]:
        if (run_dir / part).is_symlink():
            return False
    if not path.is_file():
        return False
    path.unlink(missing_ok=True)
    return True


def _holder(handle: Any) -> str:
    handle.seek(0)
    try:
        info = json.loads(handle.read() or "{}")
    except ValueError:
        info = {}
    if not isinstance(info, dict) or "pid" not in info:
        return "another process"
    return (
        f"{info.get('command', 'a search')} (pid {info.get('pid')} on host "
        f"{info.get('host')}, started {info.get('started')})"
    )


@contextlib.contextmanager
def run_lock(run_dir: pathlib.Path, *, shared: bool, what: str = "search") -> Iterator[None]:
    """Hold the run directory's lock (see the module docstring) while the block runs.

    Raises:
        ConfigError: another search holds it; the message names the holder.
    """
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; the resume rule still applies
        yield
        return
    path = run_dir / LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    with os.fdopen(fd, "r+", encoding="utf-8") as handle:
        try:
            fcntl.flock(
                handle.fileno(), (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB
            )
        except BlockingIOError:
            raise ConfigError(
                f"{run_dir} is in use by {_holder(handle)}; wait for it to finish (or stop it), "
                f"or choose another run name (--name)",
                key="output.run_dir",
            ) from None
        try:
            info = {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "started": _now(),
                "command": f"convnas {what}",
            }
            with contextlib.suppress(OSError):
                handle.seek(0)
                handle.truncate()
                handle.write(json.dumps(info))
                handle.flush()
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
