"""The build context: modules that the layers of one network share.

The associative convolution (CSG) generates every layer's kernel from one slice generator per
network. The network owns that generator; layers reach it through the context they were built
with and keep an unregistered reference, so the generator's parameters appear once in the
network's ``parameters()`` and ``state_dict()``.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from torch import nn

__all__ = ["BuildContext", "SharedModules", "attach_shared"]


class SharedModules(nn.ModuleDict):
    """The container a network registers to own the modules of its :class:`BuildContext`.

    :func:`convnas.fold` empties it once every layer has been folded, since folded layers no
    longer read the shared modules.
    """


class BuildContext:
    """Holds the modules shared by the layers of one network.

    The network that creates the context must register :attr:`modules` as one of its
    submodules (``self.shared = context.modules``) so that it owns them.
    """

    def __init__(self) -> None:
        self.modules = SharedModules()

    def shared(self, key: str, factory: Callable[[], nn.Module]) -> nn.Module:
        """Return the module stored under ``key``, creating it with ``factory`` the first time."""
        safe = re.sub(r"[^0-9A-Za-z_]", "_", key)
        if safe not in self.modules:
            self.modules[safe] = factory()
        return self.modules[safe]

    def __len__(self) -> int:
        return len(self.modules)

    def __repr__(self) -> str:
        return f"BuildContext(shared={list(self.modules.keys())})"


def attach_shared(owner: nn.Module, name: str, module: nn.Module) -> None:
    """Give ``owner`` a reference to ``module`` without making it a submodule of ``owner``."""
    object.__setattr__(owner, name, module)
