"""Where a study lives: SQLite in the run directory, any Optuna RDB URL, or a Journal file."""

from __future__ import annotations

import contextlib
import pathlib
from collections.abc import Iterator
from typing import Any

from convnas.errors import ConfigError, OptionalDependencyError
from convnas.strategies.optuna.settings import OptunaSettings, import_optuna

__all__ = ["file_lock", "make_storage"]


def make_storage(url: str, settings: OptunaSettings) -> Any:
    """An Optuna storage for ``url``: a plain ``RDBStorage`` (compare-and-set on SQLite too) or,
    for ``journal:PATH``, a plain ``JournalStorage`` whose file backend survives torn lines.

    Heartbeats and stale-trial retry are convnas's own and work the same on every kind (see
    :mod:`convnas.strategies.heartbeat`); Optuna's native heartbeat is left off.
    """
    import_optuna()
    from convnas.strategies import heartbeat

    if url.startswith("journal:"):
        path = pathlib.Path(url[len("journal:") :]).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        return heartbeat.journal_storage(path, lock_grace_period=max(3, settings.grace_period))
    if "://" not in url:
        raise ConfigError(
            f"expected an Optuna storage URL (sqlite:///PATH, postgresql://..., mysql://...) or "
            f"journal:PATH, but got {url!r}",
            key="strategy.storage",
        )
    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None
    try:
        return heartbeat.rdb_storage(url, engine_kwargs=engine_kwargs)
    except ImportError as exc:
        raise OptionalDependencyError(
            _DRIVERS.get(url.split(":", 1)[0].split("+", 1)[0], "a database driver"),
            f"the storage {url.split('://', 1)[0]}://",
        ) from exc


_DRIVERS = {"postgresql": "psycopg2-binary", "mysql": "pymysql"}


@contextlib.contextmanager
def file_lock(path: pathlib.Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (a no-op where ``fcntl`` is unavailable)."""
    try:
        import fcntl
    except ImportError:  # Windows: workers on one machine then rely on the storage's retries
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
