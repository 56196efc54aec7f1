"""The exception hierarchy of convnas.

Every error raised on bad user input derives from :class:`ConvNASError`, and also from the
builtin exception that matches its meaning, so ``except ValueError`` keeps working for callers
that do not know convnas.
"""

from __future__ import annotations

__all__ = [
    "ArchitectureError",
    "CheckpointError",
    "ConfigError",
    "ConvNASError",
    "DatasetError",
    "DuplicateNameError",
    "OperatorArgumentError",
    "TrainingDivergedError",
    "OptionalDependencyError",
    "SearchFailedError",
    "UnknownNameError",
    "UnknownOperatorError",
]


class ConvNASError(Exception):
    """Base class of all errors raised by convnas."""


class ConfigError(ConvNASError, ValueError):
    """A configuration value is missing, unknown or out of range.

    Args:
        message: what rule was broken, with the offending value.
        key: the dotted key of the configuration entry, when there is one.
    """

    def __init__(self, message: str, *, key: str | None = None) -> None:
        self.key = key
        super().__init__(f"{key}: {message}" if key else message)


class UnknownNameError(ConvNASError, KeyError):
    """A name was looked up in a registry that does not hold it."""

    def __str__(self) -> str:  # KeyError quotes its argument; show the message as written
        return str(self.args[0]) if self.args else ""


class UnknownOperatorError(UnknownNameError):
    """An operator name is not registered."""


class DuplicateNameError(ConvNASError, ValueError):
    """A name is registered twice without ``replace=True``."""


class ArchitectureError(ConvNASError, ValueError):
    """An architecture description is malformed or does not match the registry."""


class CheckpointError(ConvNASError, RuntimeError):
    """A checkpoint is missing, truncated, tampered with or from another configuration."""


class OptionalDependencyError(ConvNASError, ImportError):
    """An optional dependency needed for the requested feature is not installed."""

    def __init__(self, package: str, feature: str, extra: str | None = None) -> None:
        hint = f'pip install "convnas[{extra}]"' if extra else f"pip install {package}"
        super().__init__(f"{feature} needs the package '{package}', which is not installed: {hint}")


class OperatorArgumentError(ConvNASError, ValueError):
    """An operator was asked for with arguments it does not support."""


class DatasetError(ConvNASError, OSError):
    """Dataset files are missing, incomplete, corrupt, unsafe to load, or failed to download."""


class SearchFailedError(ConvNASError, RuntimeError):
    """A search ended without a single successfully evaluated architecture."""


class TrainingDivergedError(ConvNASError, FloatingPointError):
    """A loss became NaN or infinite."""
