"""The process-wide switch for custom kernels: a getter, a context manager, an env variable.

``CONVNAS_KERNELS`` (default on) decides whether the operators route CUDA tensors through the
custom ops of :mod:`convnas.kernels`. ``use_kernels(flag)`` overrides it for a block of code; the
override lives in a :class:`contextvars.ContextVar`, so it is local to the thread (and asyncio
task) that set it, and nothing else in the package holds mutable state about kernels.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator

from convnas.errors import ConfigError

__all__ = ["ENV_VAR", "kernels_enabled", "use_kernels"]

ENV_VAR = "CONVNAS_KERNELS"
_TRUE = frozenset({"", "1", "true", "on", "yes"})
_FALSE = frozenset({"0", "false", "off", "no"})
_OVERRIDE: contextvars.ContextVar[bool | None] = contextvars.ContextVar(
    "convnas_kernels_override", default=None
)


def kernels_enabled() -> bool:
    """Whether kernels are on: the innermost ``use_kernels`` block, else ``$CONVNAS_KERNELS``.

    Under ``torch.compile`` the value is read once, at trace time, and baked into the graph
    (so a compiled model keeps the routing it was compiled with).

    Raises:
        ConfigError: the environment variable holds a value other than 0/1/true/false/on/off/yes/no.
    """
    override = _OVERRIDE.get()
    if override is not None:
        return override
    raw = os.environ.get(ENV_VAR, "1").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ConfigError(
        f"must be one of 0/1/true/false/on/off/yes/no, but got {raw!r}; "
        f"unset it or set {ENV_VAR}=0 to turn the custom kernels off",
        key=ENV_VAR,
    )


# What torch.compiler.assume_constant_result(kernels_enabled) does, without importing
# torch._dynamo (and with it triton) at import time: dynamo reads the switch at trace time
# instead of breaking the graph on ContextVar.get.
kernels_enabled._dynamo_marked_constant = True  # type: ignore[attr-defined]


@contextlib.contextmanager
def use_kernels(flag: bool) -> Iterator[None]:
    """Turn custom kernels on or off inside the ``with`` block (this thread/task only)."""
    token = _OVERRIDE.set(bool(flag))
    try:
        yield
    finally:
        _OVERRIDE.reset(token)
