"""One generic registry for operators, search spaces, strategies and datasets.

Modelled on timm's model registry, with two changes: registering a name twice is an error
unless ``replace=True``, and looking up an unknown name raises an error that lists close
matches instead of a bare ``KeyError``.
"""

from __future__ import annotations

import contextlib
import difflib
import fnmatch
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

from convnas.errors import ConfigError, DuplicateNameError, UnknownNameError

__all__ = ["Registry", "check_keywords"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> entry mapping with helpful errors and lazy population.

    Args:
        kind: what the registry holds, used in messages ("operator", "search space", ...).
        loader: called once before the first lookup; imports the modules that register the
            built-in entries.
        entry_point_group: the ``importlib.metadata`` entry-point group that third-party packages
            use to add entries. Each entry point is loaded (imported) once, after ``loader``.
        error_type: the exception raised for unknown names.
    """

    def __init__(
        self,
        kind: str,
        *,
        loader: Callable[[], None] | None = None,
        entry_point_group: str | None = None,
        error_type: type[UnknownNameError] = UnknownNameError,
    ) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._loader = loader
        self._entry_point_group = entry_point_group
        self._error_type = error_type
        self._builtin_loaded = False
        self._loaded = False
        self._lock = threading.RLock()
        self.entry_point_errors: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"Registry(kind={self.kind!r}, entries={len(self._entries)})"

    def _ensure_builtin(self) -> None:
        if self._builtin_loaded:
            return
        with self._lock:
            if self._builtin_loaded:
                return
            self._builtin_loaded = True
            if self._loader is not None:
                self._loader()

    def _ensure_loaded(self) -> None:
        # Plugins load on the first lookup, never on a registration: built-in entries register
        # while convnas itself is being imported, when a plugin's `import convnas` would fail.
        if self._loaded:
            return
        self._ensure_builtin()
        with self._lock:
            if self._loaded:
                return
            self._loaded = True
            if self._entry_point_group is not None:
                self._load_entry_points(self._entry_point_group)

    def _load_entry_points(self, group: str) -> None:
        from importlib.metadata import entry_points

        for ep in entry_points(group=group):
            try:
                target = ep.load()
            except Exception as exc:  # a broken plugin must not break convnas itself
                self.entry_point_errors[ep.name] = f"{type(exc).__name__}: {exc}"
                logger.warning("could not load %s plugin %r: %s", self.kind, ep.name, exc)
                continue
            if callable(target) and not isinstance(target, type):
                # An entry point may name a module (registering on import) or a function that
                # registers when called with this registry.
                target(self)

    def add(self, name: str, entry: T, *, replace: bool = False) -> T:
        """Store ``entry`` under ``name``.

        Raises:
            DuplicateNameError: ``name`` is taken and ``replace`` is False.
        """
        self._ensure_builtin()
        if not isinstance(name, str) or not name:
            raise DuplicateNameError(f"{self.kind} names must be non-empty strings, got {name!r}")
        with self._lock:
            if name in self._entries and not replace:
                raise DuplicateNameError(
                    f"{self.kind} {name!r} is already registered; pass replace=True to override it"
                )
            self._entries[name] = entry
        return entry

    def remove(self, name: str) -> T:
        """Remove and return the entry ``name``."""
        self._ensure_loaded()
        with self._lock:
            if name not in self._entries:
                raise self._unknown(name)
            return self._entries.pop(name)

    def get(self, name: str) -> T:
        """Return the entry ``name``.

        Raises:
            UnknownNameError: no such entry; the message lists close matches.
        """
        self._ensure_loaded()
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise self._unknown(name) from None

    def construct(self, name: str, /, **settings: Any) -> Any:
        """Call the entry ``name`` (a class or factory) with keyword ``settings``, after
        checking them against its signature (or its ``settings_class``'s, when it has one).

        Raises:
            UnknownNameError: no such entry.
            ConfigError: a setting it does not accept, or an invalid value.
        """
        factory: Any = self.get(name)
        check_keywords(
            getattr(factory, "settings_class", None) or factory, settings, f"{self.kind} {name!r}"
        )
        return factory(**settings)

    def _unknown(self, name: object) -> UnknownNameError:
        known = sorted(self._entries)
        close = difflib.get_close_matches(str(name), known, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        listing = ", ".join(known) if len(known) <= 40 else f"{len(known)} names"
        return self._error_type(f"unknown {self.kind} {name!r}{hint} (registered: {listing})")

    def names(self, pattern: str = "*") -> list[str]:
        """Sorted names matching the shell-style ``pattern`` (``*``, ``?``, ``[ab]``)."""
        self._ensure_loaded()
        return sorted(n for n in self._entries if fnmatch.fnmatchcase(n, pattern))

    def items(self) -> list[tuple[str, T]]:
        self._ensure_loaded()
        return sorted(self._entries.items())

    def __contains__(self, name: object) -> bool:
        self._ensure_loaded()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self._ensure_loaded()
        return len(self._entries)

    @contextlib.contextmanager
    def temporary(self) -> Iterator[Registry[T]]:
        """Undo every registration and removal made inside the ``with`` block (for tests)."""
        self._ensure_loaded()
        with self._lock:
            saved = dict(self._entries)
        try:
            yield self
        finally:
            with self._lock:
                self._entries = saved


def check_keywords(factory: Callable[..., Any], kwargs: Mapping[str, Any], what: str) -> None:
    """Raise a :class:`ConfigError` naming every keyword ``factory`` does not accept.

    Checking the signature up front (instead of catching ``TypeError`` from the call) keeps a
    bug inside a constructor a bug, not a "configuration error".
    """
    import inspect

    params = inspect.signature(factory).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return
    accepted = [
        p.name
        for p in params
        if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        and p.name != "self"
    ]
    for key in kwargs:
        if key not in accepted:
            close = difflib.get_close_matches(key, accepted, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; it accepts {sorted(accepted)}"
            raise ConfigError(f"{what} has no setting {key!r}{hint}", key=key)
